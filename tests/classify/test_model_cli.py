"""``partrig model push`` speaks in sentences; ``partrig model activate`` uses the operator key."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from classify.activate_remote import activate_remotely
from rig.errors import NotFound
from web.cli import app

runner = CliRunner()
VALIDATED = {
    "id": "model-0003",
    "state": "validated",
    "validation": {"accuracy": 0.9583, "test_shots": 24, "snapshot": "snap-0001",
                   "required_accuracy": 0.8, "checks": []},
}  # fmt: skip
REJECTED = {
    "id": "model-0004",
    "state": "rejected",
    "validation": {"reason": "snap-0009 has no test shots on this rig", "checks": []},
}


def _push_answering(monkeypatch, answer):
    monkeypatch.setattr("classify.push.push", lambda url, model_dir, key: answer)


def test_a_validated_push_prints_a_sentence_with_the_measured_accuracy(monkeypatch, tmp_path):
    _push_answering(monkeypatch, VALIDATED)
    out = runner.invoke(app, ["model", "push", "http://rig", str(tmp_path), "--key", "k"])
    assert out.exit_code == 0, out.output
    flat = " ".join(out.output.split())
    assert "model-0003 validated on the rig: accuracy 0.958 on 24 held-out test shots" in flat
    assert "partrig model activate model-0003" in flat
    assert "{" not in flat


def test_a_rejected_push_says_why_and_exits_1(monkeypatch, tmp_path):
    _push_answering(monkeypatch, REJECTED)
    out = runner.invoke(app, ["model", "push", "http://rig", str(tmp_path), "--key", "k"])
    assert out.exit_code == 1
    assert "model-0004: snap-0009 has no test shots on this rig" in " ".join(out.output.split())


def test_json_prints_the_whole_answer(monkeypatch, tmp_path):
    _push_answering(monkeypatch, VALIDATED)
    out = runner.invoke(app, ["model", "push", "http://rig", str(tmp_path), "--key", "k", "--json"])
    assert out.exit_code == 0
    assert json.loads(out.output) == VALIDATED


def _rig(models, seen):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("x-api-key")))
        if request.method == "GET":
            return httpx.Response(200, json={"items": models, "active": None})
        return httpx.Response(
            200, json={"model_id": request.url.path.split("/")[3], "previous_model_id": None}
        )

    return httpx.MockTransport(handler)


def test_activate_without_an_id_takes_the_newest_validated_model(tmp_path):
    config = tmp_path / "partrig.toml"
    config.write_text('[auth]\noperator_keys = ["op-key-1"]\n')
    seen: list = []
    models = [{"id": "model-0005", "state": "rejected"}, {"id": "model-0004", "state": "validated"},
              {"id": "model-0002", "state": "validated"}]  # fmt: skip
    record = activate_remotely(None, "http://rig", config, transport=_rig(models, seen))
    assert record["model_id"] == "model-0004"
    assert seen == [("GET", "/api/models", "op-key-1"),
                    ("POST", "/api/models/model-0004/activate", "op-key-1")]  # fmt: skip


def test_activate_with_nothing_validated_says_to_push_one(tmp_path):
    config = tmp_path / "partrig.toml"
    config.write_text('[auth]\noperator_keys = ["op-key-1"]\n')
    with pytest.raises(NotFound, match="partrig model push"):
        activate_remotely(None, "http://rig", config, transport=_rig([], []))
