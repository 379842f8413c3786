"""`partrig train` from the command line: clear errors, and the figures (or their absence)."""

from __future__ import annotations

from typer.testing import CliRunner

from web.cli import app

runner = CliRunner()


def test_a_folder_that_is_not_a_snapshot_is_refused_saying_so(tmp_path):
    out = runner.invoke(
        app,
        ["train", "--dataset", str(tmp_path), "--out", str(tmp_path / "m"), "--weights", "none"],
        terminal_width=200,
    )
    assert out.exit_code == 2
    assert "manifest.json" in out.output
    assert not (tmp_path / "m").exists()


def test_a_snapshot_without_test_shots_gets_a_warning_not_a_none(tmp_path, monkeypatch):
    import classify.train as train_mod

    (tmp_path / "manifest.json").write_text("{}")
    metrics = {
        "snapshot": "snap-0001",
        "float_accuracy": None,
        "int8_accuracy": None,
        "int8_drop": None,
        "runtime": None,
    }
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: metrics)
    out = runner.invoke(
        app,
        ["train", "--dataset", str(tmp_path), "--out", str(tmp_path / "m"), "--weights", "none"],
        terminal_width=200,
    )
    assert out.exit_code == 0, out.output
    assert "has no test split" in out.output and "None" not in out.output
