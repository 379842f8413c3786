"""check(), startup_check(), stats(), thumbnails and the ``partrig dataset`` commands."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from capture.dataset_cli import dataset_app
from capture.store import DatasetStore, ShotRecord
from capture.store.files import FileSystem, is_temp_name
from rig.errors import StoreError


def _shot(store: DatasetStore, run_id: int, index: int, label: str = "3001", bg: int = 1) -> int:
    stored = store.write_file(f"images/{run_id}/{index:06d}.jpg", b"img %d" % index)
    thumb = store.write_file(f"thumbs/{run_id}/{index:06d}.jpg", b"thumb")
    return store.add_shot(
        ShotRecord(
            label=label,
            instance_id=f"{label}-a",
            run_id=run_id,
            shot_index=index,
            path=stored.path,
            sha256=stored.sha256,
            size=stored.size,
            background_id=bg,
            thumb_path=thumb.path,
        )
    )


@pytest.fixture
def store(tmp_path: Path):
    with DatasetStore.open(tmp_path) as s:
        run_id = s.create_run("r", "", "{}", 4)
        for i in range(3):
            _shot(s, run_id, i)
        yield s


def test_a_clean_store_checks_ok(store: DatasetStore) -> None:
    report = store.check()
    assert report.ok and report.problems() == []
    assert report.files_checked == 6


def test_check_finds_orphans_both_ways_and_checksum_mismatches(store: DatasetStore) -> None:
    (store.data_dir / "images/1/000001.jpg").unlink()  # row, no file
    (store.data_dir / "masks").mkdir()
    (store.data_dir / "masks/stray.png").write_bytes(b"no row")  # file, no row
    (store.data_dir / "images/1/000002.jpg").write_bytes(b"edited by hand")
    report = store.check()
    assert report.missing_files == ["images/1/000001.jpg"]
    assert report.orphan_files == ["masks/stray.png"]
    assert report.checksum_mismatches == ["images/1/000002.jpg"]
    assert not report.ok and len(report.problems()) == 3


def test_a_crash_before_the_rename_leaves_only_a_temp_that_no_row_names(
    store: DatasetStore,
) -> None:
    class CrashBeforeRename(FileSystem):
        def rename(self, src: str, dst: str) -> None:
            raise SystemExit("killed")  # NOTE: stands in for SIGKILL: no clean-up code runs

    real = FileSystem.unlink
    store.fs = CrashBeforeRename()
    FileSystem.unlink = lambda self, p: None  # type: ignore[method-assign]
    try:
        with pytest.raises(SystemExit):
            store.write_file("images/1/000003.jpg", b"half")
    finally:
        FileSystem.unlink = real  # type: ignore[method-assign]
        store.fs = FileSystem()
    names = os.listdir(store.data_dir / "images/1")
    temps = [n for n in names if is_temp_name(n)]
    assert len(temps) == 1 and "000003.jpg" not in names
    assert store.done_shot_indices(1) == {0, 1, 2}
    assert store.check().temp_leftovers == [f"images/1/{temps[0]}"]
    report = store.startup_check()
    assert report.removed_temp_files == [f"images/1/{temps[0]}"] and report.ok
    assert store.check().ok


def test_a_crash_after_the_rename_leaves_an_orphan_that_the_resumed_shot_replaces(
    store: DatasetStore,
) -> None:
    store.write_file("images/1/000003.jpg", b"first attempt")  # killed before add_shot
    assert store.check().orphan_files == ["images/1/000003.jpg"]
    assert 3 not in store.done_shot_indices(1)
    _shot(store, 1, 3)  # resume re-shoots the missing index to the same path
    assert store.check().ok


def test_startup_check_records_an_incident_for_missing_files(store: DatasetStore) -> None:
    (store.data_dir / "images/1/000000.jpg").unlink()
    report = store.startup_check()
    assert report.missing_files == ["images/1/000000.jpg"]
    [incident] = store.list_incidents()
    assert incident["kind"] == "store_missing_files" and "000000.jpg" in incident["message"]


def test_stats_count_per_class_background_run_instance_and_grid(store: DatasetStore) -> None:
    _shot(store, 1, 3, label="3002", bg=2)
    store.delete_shot(1, "x")
    s = store.stats()
    assert (s.total, s.deleted) == (3, 1)
    assert s.by_label == {"3001": 2, "3002": 1}
    assert s.by_background == {"1": 2, "2": 1}
    assert s.by_run == {"1": 3}
    assert s.by_instance == {"3001-a": 2, "3002-a": 1}
    assert s.by_label_background == {"3001": {"1": 2}, "3002": {"2": 1}}


def test_make_thumbnail_keeps_the_aspect_with_the_longest_side_limited(tmp_path: Path) -> None:
    with DatasetStore.open(tmp_path, thumbnail_px=64) as store:
        buf = io.BytesIO()
        Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(buf, "PNG")
        stored = store.write_file("images/9/000001.png", buf.getvalue())
        run_id = store.create_run("r", "", "{}", 1)
        store.add_shot(
            ShotRecord(
                label="a",
                instance_id="a1",
                run_id=run_id,
                shot_index=1,
                path=stored.path,
                sha256=stored.sha256,
                size=stored.size,
            )
        )
        thumb = store.make_thumbnail(stored.path)
        assert thumb == "thumbs/9/000001.jpg"
        with Image.open(store.data_dir / thumb) as im:
            assert im.size == (64, 48)
        assert store.get_shot(1)["thumb_path"] == thumb
        with pytest.raises(StoreError, match="not in"):
            store.make_thumbnail("images/none.jpg")


# --- the CLI --------------------------------------------------------------------------------------


def test_dataset_check_exits_0_when_clean_and_1_listing_problems(store: DatasetStore) -> None:
    runner = CliRunner()
    result = runner.invoke(dataset_app, ["check", "--data", str(store.data_dir)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
    (store.data_dir / "images/1/000000.jpg").unlink()
    result = runner.invoke(dataset_app, ["check", "--data", str(store.data_dir)])
    assert result.exit_code == 1
    assert "missing file" in result.output and "images/1/000000.jpg" in result.output


def test_dataset_stats_prints_the_tables(store: DatasetStore) -> None:
    result = CliRunner().invoke(dataset_app, ["stats", "--data", str(store.data_dir)])
    assert result.exit_code == 0, result.output
    assert "per class" in result.output and "3001" in result.output
    assert "class x background" in result.output


def test_dataset_commands_refuse_a_missing_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(dataset_app, ["check", "--data", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a directory" in result.output
