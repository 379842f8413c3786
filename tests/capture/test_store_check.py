"""check(), startup_check(), stats(), thumbnails and the ``partrig dataset`` commands."""

from __future__ import annotations

import io
import os
import random
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


# --- damaged pages and leftovers of interrupted writes ------------------------------------------


def _real_store(root: Path, shots: int = 120) -> Path:
    """A store with enough shots that the shots table spans many pages; closed, WAL folded in."""
    with DatasetStore.open(root) as s:
        run_id = s.create_run("r", "", "{}", shots)
        for i in range(shots):
            _shot(s, run_id, i, label=f"l{i % 7}")
        s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return root


def _table_leaf_pages(data: bytes, page_size: int, page: int) -> list[int]:
    """The leaf pages of the table b-tree rooted at ``page``, read from the file format.

    NOTE: not SQLite's ``dbstat`` table: whether it exists depends on which libsqlite3 the
    process loaded first (another extension's copy may lack it).
    """
    base = (page - 1) * page_size
    head = base + (100 if page == 1 else 0)
    kind = data[head]
    if kind == 0x0D:
        return [page]
    assert kind == 0x05, f"page {page} is not a table b-tree page ({kind:#x})"
    cells = int.from_bytes(data[head + 3 : head + 5], "big")
    children = [int.from_bytes(data[head + 8 : head + 12], "big")]
    for i in range(cells):
        at = int.from_bytes(data[head + 12 + 2 * i : head + 14 + 2 * i], "big")
        children.append(int.from_bytes(data[base + at : base + at + 4], "big"))
    return [leaf for child in children for leaf in _table_leaf_pages(data, page_size, child)]


def _damage_two_shot_pages(db: Path) -> list[int]:
    import sqlite3

    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'shots'").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    pages = sorted(_table_leaf_pages(db.read_bytes(), page_size, root))
    hit = [pages[len(pages) // 3], pages[2 * len(pages) // 3]]
    noise = random.Random(7)  # NOTE: seeded: the same damage every run
    with open(db, "r+b") as f:
        for n in hit:
            f.seek((n - 1) * page_size)
            f.write(noise.randbytes(page_size))
    return hit


def _leave_leftovers(root: Path) -> dict[str, int]:
    """What a crash can leave: a big unfinished snapshot, a model upload, partial downloads,
    a store temporary; returns path -> bytes."""
    snap = root / "snapshots" / "snap-0007.tmp" / "webdataset"
    snap.mkdir(parents=True)
    (snap / "train-000000.tar").write_bytes(b"\0" * 3_000_000)
    upload = root / "models" / ".upload-0a1b2c.tmp"
    upload.mkdir(parents=True)
    (upload / "model.tflite").write_bytes(b"x" * 1000)
    (root / "snapshots" / "manifest.json.part").write_bytes(b"{")
    temp = root / "images" / "1" / ".000099.jpg.3f2a.partrig-tmp"
    temp.write_bytes(b"half")
    assert is_temp_name(temp.name)
    return {
        "snapshots/snap-0007.tmp": 3_000_000,
        "models/.upload-0a1b2c.tmp": 1000,
        "snapshots/manifest.json.part": 1,
        "images/1/.000099.jpg.3f2a.partrig-tmp": 4,
    }


def test_check_reports_leftovers_with_sizes_and_the_store_is_not_clean(store: DatasetStore) -> None:
    expected = _leave_leftovers(store.data_dir)
    report = store.check()
    assert not report.ok
    assert report.temp_leftovers == ["images/1/.000099.jpg.3f2a.partrig-tmp"]
    assert {x.path: x.size for x in report.leftovers} == {
        k: v for k, v in expected.items() if not k.endswith("partrig-tmp")
    }
    text = "\n".join(report.problems())
    assert "snapshots/snap-0007.tmp (3.0 MB)" in text and "unfinished snapshot" in text
    assert sorted(report.removable()) == sorted(expected)


def test_a_snapshot_folder_the_database_never_recorded_is_a_leftover(store: DatasetStore) -> None:
    (store.data_dir / "snapshots" / "snap-0003").mkdir(parents=True)
    (store.data_dir / "snapshots" / ".lock").write_bytes(b"")
    report = store.check()
    assert [x.path for x in report.leftovers] == ["snapshots/snap-0003"]
    assert "never recorded" in report.leftovers[0].kind


def test_leftover_names_agree_with_the_writers_that_make_them() -> None:
    from capture.snapshots import build as snapshot
    from capture.store import leftovers, models
    from classify import registry

    assert leftovers.SNAPSHOTS_DIR == snapshot.SNAPSHOTS_DIR
    assert leftovers.SNAPSHOT_TMP_SUFFIX == snapshot.TMP_SUFFIX
    assert leftovers.SNAPSHOT_ID_RE.pattern == snapshot.SNAPSHOT_ID_RE.pattern
    assert leftovers.MODELS_DIR == models.MODELS_DIR
    assert leftovers.MODEL_STAGING_PREFIX == registry.STAGING_PREFIX


def test_dataset_check_removes_leftovers_only_when_asked_and_then_checks_clean(
    store: DatasetStore,
) -> None:
    _leave_leftovers(store.data_dir)
    runner = CliRunner()
    listed = runner.invoke(dataset_app, ["check", "--data", str(store.data_dir)])
    assert listed.exit_code == 1, listed.output
    assert "snap-0007.tmp" in listed.output and "--remove-temporaries" in listed.output
    assert (store.data_dir / "snapshots" / "snap-0007.tmp").is_dir()
    fixed = runner.invoke(
        dataset_app, ["check", "--data", str(store.data_dir), "--remove-temporaries"]
    )
    assert fixed.exit_code == 0, fixed.output
    assert "removed 4 leftover(s)" in fixed.output and "3.0 MB" in fixed.output
    assert not (store.data_dir / "snapshots" / "snap-0007.tmp").exists()
    assert not (store.data_dir / "models" / ".upload-0a1b2c.tmp").exists()
    assert store.check().ok


def test_dataset_check_refuses_to_remove_leftovers_while_another_process_owns_the_folder(
    store: DatasetStore,
) -> None:
    from rig.owner import DataFolderLock

    _leave_leftovers(store.data_dir)
    with DataFolderLock(store.data_dir, "serve", url="http://127.0.0.1:8000"):
        result = CliRunner().invoke(
            dataset_app, ["check", "--data", str(store.data_dir), "--remove-temporaries"]
        )
    assert result.exit_code == 2, result.output
    assert "partrig serve" in result.output and "http://127.0.0.1:8000" in result.output
    assert (store.data_dir / "snapshots" / "snap-0007.tmp").is_dir()


def test_dataset_check_on_two_damaged_pages_exits_2_with_the_repair_steps(tmp_path: Path) -> None:
    root = _real_store(tmp_path / "data")
    _damage_two_shot_pages(root / "partrig.db")
    _leave_leftovers(root)
    result = CliRunner().invoke(dataset_app, ["check", "--data", str(root)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "partrig.db is damaged" in result.output and "What to do" in result.output
    assert "sqlite3 partrig.db .dump" in result.output
    # NOTE: the files are checked even though the rows cannot be trusted.
    assert "snapshots/snap-0007.tmp (3.0 MB)" in result.output


def test_the_printed_repair_steps_salvage_a_damaged_database(tmp_path: Path) -> None:
    """Run the salvage commands exactly as ``dataset check`` prints them."""
    import shutil
    import subprocess

    from capture.store.base import damaged_db_steps

    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command-line shell is not installed (apt install sqlite3)")
    root = _real_store(tmp_path / "data")
    _damage_two_shot_pages(root / "partrig.db")
    lines = damaged_db_steps(root / "partrig.db").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("cd "))
    end = next(i for i, line in enumerate(lines) if line.strip().startswith("4."))
    salvage = "\n".join(line.strip() for line in lines[start + 1 : end])
    check = next(line for line in lines if line.strip().startswith("4."))
    check = check.strip()[3:].split("(must print")[0]
    move = next(line for line in lines if line.strip().startswith("5.")).strip()[3:]
    subprocess.run(["bash", "-c", salvage], cwd=root, check=True, timeout=60)
    out = subprocess.run(
        ["bash", "-c", check], cwd=root, check=True, timeout=60, capture_output=True, text=True
    )
    assert out.stdout.strip() == "ok"
    subprocess.run(["bash", "-c", move], cwd=root, check=True, timeout=60)
    result = CliRunner().invoke(dataset_app, ["check", "--data", str(root)])
    # NOTE: the shots on the two damaged pages are gone; their image files are orphans now.
    assert result.exit_code == 1, result.output
    assert "orphan file" in result.output and "damaged" not in result.output
    with DatasetStore.open(root) as s:
        kept = s.scalar("SELECT COUNT(*) FROM shots")
    orphans = [line for line in result.output.splitlines() if "orphan file" in line]
    assert 0 < kept < 120
    assert len([o for o in orphans if "images/" in o]) == 120 - kept


def test_dataset_check_on_a_database_it_cannot_even_open_exits_2_with_the_steps(
    tmp_path: Path,
) -> None:
    root = _real_store(tmp_path / "data")
    with open(root / "partrig.db", "r+b") as f:
        f.write(b"this is not an SQLite header" * 4)  # page 1: the header and the schema
    result = CliRunner().invoke(dataset_app, ["check", "--data", str(root)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "partrig.db is damaged" in result.output and "What to do" in result.output
