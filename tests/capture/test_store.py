"""The dataset store: migrations, runs, the shot write path, curation, incidents and faults."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from capture.store import DB_NAME, MIGRATIONS, DatasetStore, ShotRecord
from capture.store.schema import migrate
from rig.errors import DiskFull, NotFound, StoreError


@pytest.fixture
def store(tmp_path: Path):
    with DatasetStore.open(tmp_path / "data") as s:
        yield s


def shot(store: DatasetStore, run_id: int | None, index: int | None, **kw) -> int:
    """Write a small file and its row, the way the run engine does."""
    rel = kw.pop("path", f"images/{run_id}/{index:06d}.jpg" if run_id else f"images/s/{index}.jpg")
    stored = store.write_file(rel, kw.pop("data", f"jpeg {run_id} {index}".encode()))
    fields = {"label": "3001", "instance_id": "3001-a", "background_id": 1, "angle_cmd": 10.0}
    fields.update(kw)
    record = ShotRecord(
        run_id=run_id,
        shot_index=index,
        path=stored.path,
        sha256=stored.sha256,
        size=stored.size,
        **fields,
    )
    return store.add_shot(record)


# --- migrations -----------------------------------------------------------------------------------


def test_open_creates_the_schema_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    with DatasetStore.open(tmp_path / "new" / "data") as store:
        assert store.scalar("PRAGMA user_version") == len(MIGRATIONS)
        assert store.scalar("PRAGMA journal_mode") == "wal"
        assert store.scalar("PRAGMA foreign_keys") == 1
        assert store.scalar("PRAGMA synchronous") == 2  # FULL
        tables = set(store.db.table_names())
    assert {"parts", "part_instances", "backgrounds", "runs", "references", "shots"} <= tables
    assert {"shot_edits", "incidents", "faults"} <= tables


def test_reopening_is_idempotent_and_keeps_the_data(tmp_path: Path) -> None:
    with DatasetStore.open(tmp_path) as store:
        run_id = store.create_run("r", "", "{}", 2)
        shot(store, run_id, 0)
    for _ in range(2):
        with DatasetStore.open(tmp_path) as store:
            assert store.scalar("PRAGMA user_version") == len(MIGRATIONS)
            assert store.done_shot_indices(run_id) == {0}


def test_migrations_apply_only_the_missing_ones_each_in_a_transaction(tmp_path: Path) -> None:
    applied: list[str] = []
    extra = len(MIGRATIONS) + 1

    def v_extra(db) -> None:
        applied.append("extra")
        db.execute("CREATE TABLE extra_table (id INTEGER PRIMARY KEY)")

    def v_broken(db) -> None:
        db.execute("CREATE TABLE half (id INTEGER)")
        raise sqlite3.OperationalError("boom")

    with DatasetStore.open(tmp_path) as store:
        assert migrate(store.db, [*MIGRATIONS, v_extra]) == extra
        assert migrate(store.db, [*MIGRATIONS, v_extra]) == extra and applied == ["extra"]
        with pytest.raises(StoreError, match="v_broken"):
            migrate(store.db, [*MIGRATIONS, v_extra, v_broken])
        assert store.scalar("PRAGMA user_version") == extra
        assert "half" not in store.db.table_names(), "a failed migration must roll back"


def test_a_database_newer_than_the_software_is_refused(tmp_path: Path) -> None:
    DatasetStore.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="upgrade partrig"):
        DatasetStore.open(tmp_path)


def test_an_unwritable_data_dir_is_a_store_error_saying_what_to_fix(
    tmp_path: Path, monkeypatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError):
        DatasetStore.open(blocker / "data")
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m: False if Path(p) == tmp_path else real_access(p, m)
    )
    with pytest.raises(StoreError, match="writable"):
        DatasetStore.open(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_a_read_only_data_dir_is_refused_on_open(tmp_path: Path) -> None:
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="writable"):
            DatasetStore.open(tmp_path)
    finally:
        tmp_path.chmod(0o755)


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = DatasetStore.open(tmp_path)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_runs()


# --- runs -----------------------------------------------------------------------------------------


def test_run_state_prompt_and_times_are_persisted(store: DatasetStore) -> None:
    run_id = store.create_run("bricks", "name = 'x'", '{"name": "x"}', 72)
    assert store.get_run(run_id)["state"] == "pending"
    store.set_run_state(run_id, "running")
    store.set_run_state(
        run_id,
        "awaiting_operator",
        prompt="Install sheet 3",
        action={"kind": "install", "sheet": 3},
    )
    run = store.get_run(run_id)
    assert run["prompt"] == "Install sheet 3" and run["action"] == {"kind": "install", "sheet": 3}
    assert run["started_at"] and run["ended_at"] is None
    store.set_run_state(run_id, "failed", reason="disk full")
    run = store.get_run(run_id)
    assert (run["state"], run["reason"], run["prompt"]) == ("failed", "disk full", None)
    assert run["ended_at"] and run["shots_total"] == 72
    with pytest.raises(StoreError, match="not one of"):
        store.set_run_state(run_id, "exploded")
    with pytest.raises(NotFound):
        store.get_run(999)


def test_live_runs_are_marked_interrupted_at_start_up(tmp_path: Path) -> None:
    with DatasetStore.open(tmp_path) as store:
        ids = [store.create_run(f"r{i}", "", "{}", 1) for i in range(5)]
        for run_id, state in zip(
            ids[:4], ["running", "awaiting_operator", "paused", "completed"], strict=True
        ):
            store.set_run_state(run_id, state, prompt="p" if state == "awaiting_operator" else None)
    with DatasetStore.open(tmp_path) as store:
        assert sorted(store.mark_running_runs_interrupted()) == ids[:3]
        states = [store.get_run(i)["state"] for i in ids]
        assert states == ["interrupted"] * 3 + ["completed", "pending"]
        assert store.get_run(ids[1])["prompt"] is None


def test_references_are_kept_per_run_and_background(store: DatasetStore) -> None:
    run_id = store.create_run("r", "", "{}", 1)
    stored = store.write_file("references/1/sheet003.png", b"png")
    store.add_reference(
        run_id,
        3,
        path=stored.path,
        sha256=stored.sha256,
        colour_matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        exposure={"exposure_us": 9000},
    )
    ref = store.reference_for(run_id, 3)
    assert ref["path"] == "references/1/sheet003.png" and ref["colour_matrix"][0] == [1, 0, 0]
    assert ref["exposure"] == {"exposure_us": 9000}
    assert store.reference_for(run_id, 4) is None


# --- shots ----------------------------------------------------------------------------------------


def test_add_shot_records_the_row_and_bumps_shots_done(store: DatasetStore) -> None:
    run_id = store.create_run("r", "", "{}", 3)
    shot_id = shot(
        store,
        run_id,
        0,
        colour_matrix=[[1.0, 0.0], [0.0, 1.0]],
        bbox_x=1,
        bbox_y=2,
        bbox_w=3,
        bbox_h=4,
        captured_at="2025-01-02T03:04:05Z",
    )
    row = store.get_shot(shot_id)
    assert row["colour_matrix"] == [[1.0, 0.0], [0.0, 1.0]]
    assert (row["bbox_x"], row["bbox_h"]) == (1, 4)
    assert row["captured_at"] == "2025-01-02T03:04:05.000000+00:00"
    assert store.get_run(run_id)["shots_done"] == 1
    assert store.list_parts()[0]["label"] == "3001"


def test_done_shot_indices_lists_exactly_the_committed_shots(store: DatasetStore) -> None:
    a, b = store.create_run("a", "", "{}", 5), store.create_run("b", "", "{}", 5)
    for i in (0, 1, 4):
        shot(store, a, i)
    shot(store, b, 2)
    store.write_file("images/1/000003.jpg", b"orphan: file durable, row never committed")
    assert store.done_shot_indices(a) == {0, 1, 4}
    assert store.done_shot_indices(b) == {2}


def test_a_shot_index_is_stored_at_most_once_per_run(store: DatasetStore) -> None:
    run_id = store.create_run("r", "", "{}", 2)
    shot(store, run_id, 0)
    with pytest.raises(StoreError, match="UNIQUE"):
        shot(store, run_id, 0, path="images/1/again.jpg")
    assert store.get_run(run_id)["shots_done"] == 1


def test_add_shots_is_atomic_all_rows_or_none(store: DatasetStore) -> None:
    run_id = store.create_run("r", "", "{}", 3)
    records = []
    for i in range(3):
        f = store.write_file(f"images/1/{i}.jpg", b"x%d" % i)
        records.append(
            ShotRecord(
                label="3001",
                instance_id="a",
                run_id=run_id,
                shot_index=i,
                path=f.path,
                sha256=f.sha256,
                size=f.size,
            )
        )
    records[2].shot_index = 0  # the third row violates the unique index: nothing may commit
    with pytest.raises(StoreError):
        store.add_shots(records)
    assert store.done_shot_indices(run_id) == set()
    assert store.get_run(run_id)["shots_done"] == 0


def test_a_row_is_refused_when_its_file_was_never_written(store: DatasetStore) -> None:
    run_id = store.create_run("r", "", "{}", 1)
    record = ShotRecord(
        label="3001",
        instance_id="a",
        run_id=run_id,
        shot_index=0,
        path="images/1/ghost.jpg",
        sha256="0" * 64,
        size=1,
    )
    with pytest.raises(StoreError, match="write_file"):
        store.add_shot(record)


def test_sorter_shots_need_no_run_background_angle_or_mask(store: DatasetStore) -> None:
    shot_id = shot(
        store, None, 1, source="sorter", instance_id="sorter-1", background_id=None, angle_cmd=None
    )
    row = store.get_shot(shot_id)
    assert row["source"] == "sorter" and row["run_id"] is None and row["background_id"] is None


def test_bad_records_are_refused_naming_the_field(store: DatasetStore) -> None:
    run_id = store.create_run("r", "", "{}", 1)
    with pytest.raises(StoreError, match="angle_measured"):
        shot(store, run_id, 0, angle_measured=float("nan"))
    with pytest.raises(StoreError, match="run_id and shot_index"):
        shot(store, None, 3)


def test_disk_full_while_writing_raises_disk_full_and_leaves_nothing(
    store: DatasetStore, monkeypatch
) -> None:
    run_id = store.create_run("r", "", "{}", 2)
    shot(store, run_id, 0)

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(DiskFull):
        shot(store, run_id, 1)
    monkeypatch.undo()
    assert sorted(os.listdir(store.data_dir / "images" / "1")) == ["000000.jpg"]
    assert store.done_shot_indices(run_id) == {0}
    assert store.check().ok


def test_writer_thread_and_reader_thread_share_the_store(store: DatasetStore) -> None:
    run_id = store.create_run("r", "", "{}", 60)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(60):
                shot(store, run_id, i)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    seen = 0
    while thread.is_alive() or seen < 60:
        seen = len(store.done_shot_indices(run_id))
        store.query_shots(run=run_id, limit=10)
        if not thread.is_alive():
            seen = len(store.done_shot_indices(run_id))
            break
    thread.join()
    assert not errors and seen == 60


# --- curation -------------------------------------------------------------------------------------


def test_relabel_is_recorded_with_who_and_the_old_label(store: DatasetStore) -> None:
    run_id = store.create_run("r", "", "{}", 1)
    shot_id = shot(store, run_id, 0)
    assert store.relabel(shot_id, "3002", "alice")["label"] == "3002"
    edits = store.shot_edits(shot_id)
    assert [(e["action"], e["old"], e["new"], e["who"]) for e in edits] == [
        ("relabel", "3001", "3002", "alice")
    ]
    assert store.stats().by_label == {"3002": 1}


def test_delete_moves_the_files_to_trash_and_is_recorded(store: DatasetStore) -> None:
    run_id = store.create_run("r", "", "{}", 2)
    mask = store.write_file("masks/1/000000.png", b"mask")
    shot_id = shot(store, run_id, 0, mask_path=mask.path)
    keep = shot(store, run_id, 1)
    store.delete_shot(shot_id, "bob")
    assert not (store.data_dir / "images/1/000000.jpg").exists()
    assert (store.data_dir / "trash/images/1/000000.jpg").read_bytes() == b"jpeg 1 0"
    assert (store.data_dir / "trash/masks/1/000000.png").read_bytes() == b"mask"
    assert [s["id"] for s in store.query_shots().items] == [keep]
    assert store.get_shot(shot_id)["deleted_at"]
    assert store.shot_edits(shot_id)[0]["who"] == "bob"
    assert store.check().ok
    with pytest.raises(NotFound):
        store.delete_shot(shot_id, "bob")


def test_a_delete_interrupted_before_the_move_is_finished_at_start_up(
    store: DatasetStore, monkeypatch
) -> None:
    run_id = store.create_run("r", "", "{}", 1)
    shot_id = shot(store, run_id, 0)
    monkeypatch.setattr(store.shots, "_trash_files", lambda s: None)  # the crash
    store.delete_shot(shot_id, "bob")
    monkeypatch.undo()
    assert store.check().ok, "a deleted row whose file is still in place is not a problem"
    store.startup_check()
    assert (store.data_dir / "trash/images/1/000000.jpg").exists()
    assert not (store.data_dir / "images/1/000000.jpg").exists()


# --- incidents and faults -------------------------------------------------------------------------


def test_faults_and_incidents_survive_a_reopen(tmp_path: Path) -> None:
    with DatasetStore.open(tmp_path) as store:
        run_id = store.create_run("r", "", "{}", 1)
        store.latch_fault("firmware halted")
        store.latch_fault("a later reason does not replace the first")
        incident = store.add_incident("capture_failed", "disk full", run_id=run_id)
    with DatasetStore.open(tmp_path) as store:
        assert store.active_fault()["reason"] == "firmware halted"
        [row] = store.list_incidents(unacknowledged=True)
        assert (row["id"], row["kind"], row["run_id"]) == (incident, "capture_failed", run_id)
        store.acknowledge_incident(incident, "carol")
        assert store.clear_fault("carol") is True
        assert store.clear_fault("carol") is False
    with DatasetStore.open(tmp_path) as store:
        assert store.active_fault() is None
        assert store.list_incidents(unacknowledged=True) == []
        assert store.list_incidents()[0]["acknowledged_by"] == "carol"
        assert store.fault_history()[0]["cleared_by"] == "carol"
        with pytest.raises(NotFound):
            store.acknowledge_incident(999, "carol")
