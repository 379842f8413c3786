"""The contract's write order, end to end through the store: file durable, THEN the row commits."""

from __future__ import annotations

import os
from pathlib import Path

from capture.store import DatasetStore, ShotRecord
from capture.store.files import FileSystem, is_temp_name


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


def test_save_shots_makes_every_file_and_folder_durable_before_the_one_commit(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    with DatasetStore.open(tmp_path) as store:
        run_id = store.create_run("r", "", "{}", 20)
        store.fs = LoggingFS(log)
        store.db.conn.set_trace_callback(lambda sql: log.append(sql.split()[0].upper()))
        items = [
            (
                f"images/{run_id}/{i:06d}.jpg",
                b"img %d" % i,
                ShotRecord(
                    label="3001",
                    instance_id="a",
                    run_id=run_id,
                    shot_index=i,
                    path="",
                    sha256="",
                    size=0,
                ),
            )
            for i in range(20)
        ]
        ids = store.save_shots(items, workers=4)
        store.db.conn.set_trace_callback(None)
        assert len(ids) == 20 and store.done_shot_indices(run_id) == set(range(20))
        assert store.check().ok
    assert log.count("rename") == 20 and log.count("fsync file") == 20
    last_rename = max(i for i, e in enumerate(log) if e == "rename")
    last_dir_sync = max(i for i, e in enumerate(log) if e == "fsync dir")
    assert last_rename < last_dir_sync < log.index("BEGIN")
    assert log.count("BEGIN") == 1 and log[-1] == "COMMIT"
