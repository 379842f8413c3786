"""The contract's write order, end to end through the store: file durable, THEN the row commits."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from capture.store import DatasetStore, ShotRecord
from capture.store.files import FileSystem, is_temp_name
from rig.errors import StoreError


class LoggingFS(FileSystem):
    """Real OS calls, logged into a list shared with the SQL trace."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.dirs: set[int] = set()

    def open_new(self, path: str) -> int:
        self.log.append("open temp" if is_temp_name(Path(path).name) else "open FINAL")
        return super().open_new(path)

    def write(self, fd: int, data: memoryview) -> int:
        if not self.log or self.log[-1] != "write":
            self.log.append("write")
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        self.log.append("fsync dir" if fd in self.dirs else "fsync file")
        super().fsync(fd)

    def close(self, fd: int) -> None:
        self.dirs.discard(fd)
        super().close(fd)

    def rename(self, src: str, dst: str) -> None:
        self.log.append("rename")
        super().rename(src, dst)

    def open_dir(self, path: str) -> int:
        fd = super().open_dir(path)
        self.dirs.add(fd)
        return fd

    def sync_filesystem(self, fd: int) -> None:
        self.log.append("syncfs")
        super().sync_filesystem(fd)


class LoggingNoSyncfsFS(LoggingFS):
    """A system where syncfs cannot be relied on: the batch fsyncs each file instead."""

    def can_sync_filesystem(self) -> bool:
        return False


def _shots(run_id: int, n: int, **fields: object) -> list[tuple[str, bytes, ShotRecord]]:
    base = {"label": "3001", "instance_id": "a", "run_id": run_id}
    return [
        (
            f"images/{run_id}/{i:06d}.jpg",
            b"img %d" % i,
            ShotRecord(**{**base, **fields, "shot_index": i, "path": "", "sha256": "", "size": 0}),
        )
        for i in range(n)
    ]


def test_save_shot_writes_fsyncs_renames_fsyncs_the_dir_and_only_then_commits(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    with DatasetStore.open(tmp_path) as store:
        run_id = store.create_run("r", "", "{}", 1)
        os.makedirs(tmp_path / "images" / str(run_id))
        store.fs = LoggingFS(log)
        store.db.conn.set_trace_callback(
            lambda sql: (
                log.append(sql.split()[0].upper())
                if sql.split()[0].upper() in ("BEGIN", "INSERT", "COMMIT")
                else None
            )
        )
        record = ShotRecord(
            label="3001", instance_id="a", run_id=run_id, shot_index=0, path="", sha256="", size=0
        )
        store.save_shot(f"images/{run_id}/000000.jpg", b"jpeg bytes", record)
        store.db.conn.set_trace_callback(None)
        assert store.done_shot_indices(run_id) == {0}

    # NOTE: INSERTs for the part, instance and background precede the shot's; only order matters.
    compact = [entry for i, entry in enumerate(log) if entry != "INSERT" or log[i - 1] != "INSERT"]
    assert compact == [
        "open temp",
        "write",
        "fsync file",
        "rename",
        "fsync dir",
        "BEGIN",
        "INSERT",
        "COMMIT",
    ]


def test_the_engine_style_sequence_write_file_then_add_shot_commits_after_the_dir_fsync(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    with DatasetStore.open(tmp_path) as store:
        run_id = store.create_run("r", "", "{}", 1)
        store.fs = LoggingFS(log)
        store.db.conn.set_trace_callback(lambda sql: log.append(sql.split()[0].upper()))
        stored = store.write_file("images/1/000000.jpg", b"img")
        mask = store.write_file("masks/1/000000.png", b"mask")
        store.add_shot(
            ShotRecord(
                label="3001",
                instance_id="a",
                run_id=run_id,
                shot_index=0,
                path=stored.path,
                sha256=stored.sha256,
                size=stored.size,
                mask_path=mask.path,
            )
        )
        store.db.conn.set_trace_callback(None)
    last_dir_sync = max(i for i, e in enumerate(log) if e == "fsync dir")
    assert log.index("BEGIN") > last_dir_sync
    assert log[-1] == "COMMIT"
    assert log.count("fsync file") == 2


@pytest.mark.skipif(not FileSystem().can_sync_filesystem(), reason="no syncfs (Linux >= 5.8)")
def test_save_shots_writes_all_then_one_syncfs_renames_fsyncs_the_folder_and_only_then_commits(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    with DatasetStore.open(tmp_path) as store:
        run_id = store.create_run("r", "", "{}", 20)
        store.fs = LoggingFS(log)
        store.db.conn.set_trace_callback(lambda sql: log.append(sql.split()[0].upper()))
        ids = store.save_shots(_shots(run_id, 20), workers=4)
        store.db.conn.set_trace_callback(None)
        assert len(ids) == 20 and store.done_shot_indices(run_id) == set(range(20))
        assert store.get_run(run_id)["shots_done"] == 20
        assert store.check().ok
    syncfs = log.index("syncfs")
    renames = [i for i, e in enumerate(log) if e == "rename"]
    dir_syncs = [i for i, e in enumerate(log) if e == "fsync dir"]
    writes = [i for i, e in enumerate(log) if e in ("open temp", "write")]
    assert log.count("open temp") == 20 and len(renames) == 20
    assert log.count("syncfs") == 1 and log.count("fsync file") == 0
    assert max(writes) < syncfs < min(renames), "every file's data durable before any rename"
    assert max(renames) < max(dir_syncs) < log.index("BEGIN"), "folder durable before the rows"
    assert log.count("BEGIN") == 1 and log[-1] == "COMMIT"
    assert all(
        e in ("BEGIN", "SELECT", "INSERT", "UPDATE", "COMMIT") for e in log[log.index("BEGIN") :]
    )


def test_save_shots_without_syncfs_fsyncs_each_file_before_its_rename_then_commits_once(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    with DatasetStore.open(tmp_path) as store:
        run_id = store.create_run("r", "", "{}", 20)
        store.fs = LoggingNoSyncfsFS(log)
        store.db.conn.set_trace_callback(lambda sql: log.append(sql.split()[0].upper()))
        ids = store.save_shots(_shots(run_id, 20), workers=4)
        store.db.conn.set_trace_callback(None)
        assert len(ids) == 20 and store.done_shot_indices(run_id) == set(range(20))
        assert store.check().ok
    assert log.count("rename") == 20 and log.count("fsync file") == 20
    assert "syncfs" not in log
    last_rename = max(i for i, e in enumerate(log) if e == "rename")
    last_dir_sync = max(i for i, e in enumerate(log) if e == "fsync dir")
    assert last_rename < last_dir_sync < log.index("BEGIN")
    assert log.count("BEGIN") == 1 and log[-1] == "COMMIT"


def test_save_shots_creates_missing_catalogue_rows_once_and_counts_each_run(
    tmp_path: Path,
) -> None:
    with DatasetStore.open(tmp_path) as store:
        run_a = store.create_run("a", "", "{}", 3)
        run_b = store.create_run("b", "", "{}", 2)
        store.upsert_part("3001")
        batch = _shots(run_a, 3, background_id=4) + _shots(
            run_b, 2, label="3002", instance_id="b", background_id=5
        )
        inserts: list[str] = []
        store.db.conn.set_trace_callback(
            lambda sql: inserts.append(sql) if sql.startswith("INSERT OR IGNORE") else None
        )
        store.save_shots(batch)
        store.db.conn.set_trace_callback(None)
        assert store.get_run(run_a)["shots_done"] == 3
        assert store.get_run(run_b)["shots_done"] == 2
        assert store.scalar("SELECT COUNT(*) FROM parts WHERE label IN ('3001', '3002')") == 2
        instances = store.query("SELECT instance_id, label FROM part_instances ORDER BY 1")
        assert [(r["instance_id"], r["label"]) for r in instances] == [
            ("a", "3001"),
            ("b", "3002"),
        ]
        assert store.scalar("SELECT COUNT(*) FROM backgrounds WHERE sheet_id IN (4, 5)") == 2
        # NOTE: one ensure (3 statements) per distinct (part, instance, sheet), not per row.
        assert len(inserts) == 6
        # A second batch naming only known rows inserts no catalogue rows at all.
        inserts.clear()
        again = [
            (f"images/{run_a}/more{i}.jpg", b"more", dataclasses.replace(rec, shot_index=3 + i))
            for i, (_, _, rec) in enumerate(batch[:2])
        ]
        store.db.conn.set_trace_callback(
            lambda sql: inserts.append(sql) if sql.startswith("INSERT OR IGNORE") else None
        )
        store.save_shots(again)
        store.db.conn.set_trace_callback(None)
        assert inserts == []
        assert store.get_run(run_a)["shots_done"] == 5


def test_a_batch_naming_one_path_twice_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    with DatasetStore.open(tmp_path) as store:
        run_id = store.create_run("r", "", "{}", 2)
        batch = _shots(run_id, 2)
        batch[1] = (batch[0][0], batch[1][1], batch[1][2])
        with pytest.raises(StoreError, match="twice"):
            store.save_shots(batch)
        assert not (tmp_path / "images").exists()
        assert store.done_shot_indices(run_id) == set()
