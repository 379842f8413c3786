"""The contract's write order, end to end through the store: file durable, THEN the row commits."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from capture.store import DatasetStore, ShotFiles, ShotRecord
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


def test_a_one_file_shot_writes_fsyncs_renames_fsyncs_the_dir_and_only_then_commits(
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
        store.save_shots([(f"images/{run_id}/000000.jpg", b"jpeg bytes", record)])
        store.db.conn.set_trace_callback(None)
        assert store.done_shot_indices(run_id) == {0}

    # NOTE: INSERTs for the part, instance and background precede the shot's; only order matters.
    compact = [entry for i, entry in enumerate(log) if entry != "INSERT" or log[i - 1] != "INSERT"]
    synced = "syncfs" if FileSystem().can_sync_filesystem() else "fsync file"
    assert compact == [
        "open temp",
        "write",
        synced,
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


def _writer_shots(run_id: int, first: int, n: int) -> list[ShotFiles]:
    """Shots as the capture writer hands them over: image, mask and thumbnail each."""
    out = []
    for i in range(first, first + n):
        stem = f"{run_id}/{i:06d}"
        record = ShotRecord(
            label="3001", instance_id="a", run_id=run_id, shot_index=i, path="", sha256="", size=0
        )
        out.append(
            ShotFiles(
                record,
                (f"images/{stem}.jpg", b"jpeg %d" % i),
                mask=(f"masks/{stem}.png", b"mask %d" % i),
                thumb=(f"thumbs/{stem}.jpg", b"thumb %d" % i),
            )
        )
    return out


def _make_folders(root: Path, run_id: int) -> None:
    """The run's folders exist already (creating one fsyncs its parent, which is not the point)."""
    for top in ("images", "masks", "thumbs"):
        (root / top / str(run_id)).mkdir(parents=True)


def _trace(store: DatasetStore, log: list[str]) -> None:
    store.db.conn.set_trace_callback(
        lambda sql: (
            log.append(sql.split()[0].upper())
            if sql.split()[0].upper() in ("BEGIN", "INSERT", "COMMIT")
            else None
        )
    )


@pytest.mark.skipif(not FileSystem().can_sync_filesystem(), reason="no syncfs (Linux >= 5.8)")
def test_a_writer_shot_makes_its_three_files_durable_and_named_before_its_row_commits(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    with DatasetStore.open(tmp_path) as store:
        run_id = store.create_run("r", "", "{}", 1)
        _make_folders(tmp_path, run_id)
        store.fs = LoggingFS(log)
        _trace(store, log)
        [shot_id] = store.save_shots(_writer_shots(run_id, 0, 1))
        store.db.conn.set_trace_callback(None)
        row = store.get_shot(shot_id)
        assert (row["path"], row["mask_path"], row["thumb_path"]) == (
            f"images/{run_id}/000000.jpg",
            f"masks/{run_id}/000000.png",
            f"thumbs/{run_id}/000000.jpg",
        )
        assert (tmp_path / row["thumb_path"]).read_bytes() == b"thumb 0"
        assert store.check().ok
    compact = [e for i, e in enumerate(log) if e != "INSERT" or log[i - 1] != "INSERT"]
    assert compact == [
        *["open temp", "write"] * 3,
        "syncfs",
        *["rename"] * 3,
        *["fsync dir"] * 3,
        "BEGIN",
        "INSERT",
        "COMMIT",
    ]


@pytest.mark.parametrize("fs_class", [LoggingFS, LoggingNoSyncfsFS])
def test_a_stream_of_batches_commits_each_batch_only_after_its_names_are_durable(
    tmp_path: Path, fs_class: type[LoggingFS]
) -> None:
    """Batch 1's folders are synced by batch 2's sync (or explicitly), THEN batch 1 commits."""
    if fs_class is LoggingFS and not FileSystem().can_sync_filesystem():
        pytest.skip("no syncfs (Linux >= 5.8)")
    log: list[str] = []
    with DatasetStore.open(tmp_path) as store:
        run_id = store.create_run("r", "", "{}", 6)
        _make_folders(tmp_path, run_id)
        store.fs = fs_class(log)
        _trace(store, log)
        batches = store.shot_batches()
        assert batches.add(_writer_shots(run_id, 0, 3)) == []
        assert batches.pending == 3 and store.done_shot_indices(run_id) == set()
        first = batches.add(_writer_shots(run_id, 3, 3))
        assert len(first) == 3 and store.done_shot_indices(run_id) == {0, 1, 2}
        second = batches.flush()
        assert len(second) == 3 and batches.pending == 0 and batches.flush() == []
        store.db.conn.set_trace_callback(None)
        assert store.done_shot_indices(run_id) == set(range(6))
        assert store.get_run(run_id)["shots_done"] == 6
        assert store.check().ok
    begins = [i for i, e in enumerate(log) if e == "BEGIN"]
    renames = [i for i, e in enumerate(log) if e == "rename"]
    assert len(begins) == 2 and len(renames) == 18
    # Batch 1: its 9 renames, then a sync that covers their folders, then its rows.
    sync = "syncfs" if fs_class is LoggingFS else "fsync dir"
    synced_after_renames = [i for i, e in enumerate(log) if e == sync and renames[8] < i]
    assert synced_after_renames and synced_after_renames[0] < begins[0]
    # Batch 2 (flushed): its renames, each folder fsynced, then its rows.
    dir_syncs = [i for i, e in enumerate(log) if e == "fsync dir"]
    assert max(renames) < dir_syncs[-1] < begins[1]
    assert log[-1] == "COMMIT"
    if fs_class is LoggingFS:
        # NOTE: one file-system sync per batch; the folder fsyncs only for the last batch.
        assert log.count("syncfs") == 2 and log.count("fsync dir") == 3


@pytest.mark.parametrize(
    "relpath",
    ["../outside.jpg", "images/../../x.jpg", "/abs/x.jpg", "trash/x.jpg", "partrig.db-wal",
     "images/.a.jpg.1234.partrig-tmp", "images/"],
)  # fmt: skip
def test_a_batch_with_a_path_outside_the_data_folder_or_reserved_is_refused(
    tmp_path: Path, relpath: str
) -> None:
    with DatasetStore.open(tmp_path) as store:
        run_id = store.create_run("r", "", "{}", 1)
        record = ShotRecord(
            label="3001", instance_id="a", run_id=run_id, shot_index=0, path="", sha256="", size=0
        )
        with pytest.raises(StoreError):
            store.save_shots([ShotFiles(record, (relpath, b"x"))])
        assert store.done_shot_indices(run_id) == set()
    assert not (tmp_path.parent / "outside.jpg").exists()
