"""The durable file writers: their exact order of OS calls, and their failures, with a fake.

``write_durably`` (one file, fsynced) and ``write_many_durably`` (a batch, one syncfs for all).
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

from capture.store.file_batches import write_many_durably
from capture.store.files import (
    FileSystem,
    check_relpath,
    is_temp_name,
    load_syncfs,
    write_durably,
)
from rig.errors import DiskFull, StoreError


class RecordingFS(FileSystem):
    """The real OS calls, each recorded as (name, path or fd kind) in order; can inject errors."""

    def __init__(self, fail: dict[str, int] | None = None, *, fail_after: int = 0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail or {}
        self.fail_after = fail_after  # NOTE: how many calls of a failing step succeed first
        self.kinds: dict[int, str] = {}

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail and sum(c[0] == name for c in self.calls) > self.fail_after:
            raise OSError(self.fail[name], os.strerror(self.fail[name]))

    def open_new(self, path: str) -> int:
        self.calls.append(("open_new", Path(path).name))
        self._maybe_fail("open_new")
        fd = super().open_new(path)
        self.kinds[fd] = "file"
        return fd

    def write(self, fd: int, data: memoryview) -> int:
        self.calls.append(("write", self.kinds[fd]))
        self._maybe_fail("write")
        # NOTE: short writes on purpose, so the loop that finishes a partial write is exercised.
        return super().write(fd, data[:3])

    def fsync(self, fd: int) -> None:
        self.calls.append(("fsync", self.kinds[fd]))
        if self.kinds[fd] == "file":
            self._maybe_fail("fsync")
        super().fsync(fd)

    def close(self, fd: int) -> None:
        self.calls.append(("close", self.kinds.pop(fd)))
        super().close(fd)

    def rename(self, src: str, dst: str) -> None:
        self.calls.append(("rename", Path(dst).name))
        self._maybe_fail("rename")
        super().rename(src, dst)

    def open_dir(self, path: str) -> int:
        self.calls.append(("open_dir", Path(path).name))
        fd = super().open_dir(path)
        self.kinds[fd] = "dir"
        return fd

    def unlink(self, path: str) -> None:
        self.calls.append(("unlink", "temp" if is_temp_name(Path(path).name) else Path(path).name))
        super().unlink(path)

    def sync_filesystem(self, fd: int) -> None:
        self.calls.append(("syncfs", self.kinds[fd]))
        self._maybe_fail("syncfs")
        super().sync_filesystem(fd)


class NoSyncfsFS(RecordingFS):
    """A system without a safe syncfs (kernel before 5.8, not Linux): the per-file fallback."""

    def can_sync_filesystem(self) -> bool:
        return False


needs_syncfs = pytest.mark.skipif(
    not FileSystem().can_sync_filesystem(), reason="no syncfs that reports errors (Linux >= 5.8)"
)


def _compact(calls: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Collapse repeated writes into one step, so the order reads as the contract states it."""
    out: list[tuple[str, str]] = []
    for call in calls:
        if not out or call != out[-1] or call[0] != "write":
            out.append(call)
    return out


def test_write_durably_writes_temp_fsyncs_renames_then_fsyncs_the_directory(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    fs = RecordingFS()
    sha = write_durably(tmp_path / "images" / "a.jpg", b"0123456789", fs)
    assert sha == hashlib.sha256(b"0123456789").hexdigest()
    assert _compact(fs.calls)[1:] == [
        ("write", "file"),
        ("fsync", "file"),
        ("close", "file"),
        ("rename", "a.jpg"),
        ("open_dir", "images"),
        ("fsync", "dir"),
        ("close", "dir"),
    ]
    opened = fs.calls[0]
    assert opened[0] == "open_new" and is_temp_name(opened[1]), "must write to a temporary name"
    assert (tmp_path / "images" / "a.jpg").read_bytes() == b"0123456789"
    assert os.listdir(tmp_path / "images") == ["a.jpg"]


def test_write_durably_makes_new_folders_durable_in_their_parents(tmp_path: Path) -> None:
    fs = RecordingFS()
    write_durably(tmp_path / "images" / "7" / "x.png", b"png", fs)
    dir_syncs = [c for c in fs.calls if c[0] == "open_dir"]
    # images/ made durable in tmp_path, images/7 in images/, then the file's rename in images/7.
    assert dir_syncs == [("open_dir", tmp_path.name), ("open_dir", "images"), ("open_dir", "7")]


@pytest.mark.parametrize("step", ["write", "fsync", "open_new", "rename"])
def test_enospc_at_any_step_raises_disk_full_removes_the_temp_and_keeps_the_old_file(
    tmp_path: Path, step: str
) -> None:
    target = tmp_path / "a.jpg"
    target.write_bytes(b"old")
    fs = RecordingFS(fail={step: errno.ENOSPC})
    with pytest.raises(DiskFull) as info:
        write_durably(target, b"new contents", fs)
    assert "no space left" in str(info.value) and "data.dir" in str(info.value)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.jpg"], "the temporary file must be removed"


def test_permission_denied_raises_store_error_saying_what_to_fix(tmp_path: Path) -> None:
    fs = RecordingFS(fail={"open_new": errno.EACCES})
    with pytest.raises(StoreError) as info:
        write_durably(tmp_path / "a.jpg", b"x", fs)
    assert not isinstance(info.value, DiskFull)
    assert "writable" in str(info.value) and "data.dir" in str(info.value)


def test_other_exceptions_during_the_write_also_remove_the_temp(tmp_path: Path) -> None:
    class Interrupting(RecordingFS):
        def fsync(self, fd: int) -> None:
            if self.kinds[fd] == "file":
                raise KeyboardInterrupt
            super().fsync(fd)

    with pytest.raises(KeyboardInterrupt):
        write_durably(tmp_path / "a.jpg", b"x", Interrupting())
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x.jpg", "images/../../x", "images/"])
def test_relative_paths_outside_the_data_dir_are_refused(bad: str) -> None:
    with pytest.raises(StoreError, match="relative to the data directory"):
        check_relpath(bad)


def test_temporary_names_cannot_be_stored_as_final_files() -> None:
    with pytest.raises(StoreError, match="reserved"):
        check_relpath("images/.a.jpg.1234.partrig-tmp")


# --- many files at once ---------------------------------------------------------------------------


def _batch(folder: Path, n: int) -> list[tuple[Path, bytes]]:
    return [(folder / f"{i:03d}.jpg", b"shot %d" % i) for i in range(n)]


@needs_syncfs
def test_a_batch_writes_every_temp_then_one_syncfs_then_renames_then_fsyncs_the_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "images").mkdir()
    files = _batch(tmp_path / "images", 3)
    fs = RecordingFS()
    digests = write_many_durably(files, fs)
    assert digests == [hashlib.sha256(data).hexdigest() for _, data in files]
    steps = _compact(fs.calls)
    temps = [name for op, name in steps if op == "open_new"]
    assert len(temps) == 3 and all(is_temp_name(t) for t in temps)
    steps = [("open_new", "temp") if op == "open_new" else (op, name) for op, name in steps]
    written = [("open_new", "temp"), ("write", "file"), ("close", "file")]
    assert steps == [
        ("open_dir", "images"),  # NOTE: the syncfs descriptor is opened before any write
        *written * 3,
        ("syncfs", "dir"),
        ("rename", "000.jpg"),
        ("rename", "001.jpg"),
        ("rename", "002.jpg"),
        ("close", "dir"),
        ("open_dir", "images"),
        ("fsync", "dir"),
        ("close", "dir"),
    ]
    assert sorted(os.listdir(tmp_path / "images")) == ["000.jpg", "001.jpg", "002.jpg"]
    assert all(target.read_bytes() == data for target, data in files)


@needs_syncfs
def test_a_batch_in_several_folders_syncs_once_and_fsyncs_each_folder_after_the_renames(
    tmp_path: Path,
) -> None:
    files = _batch(tmp_path / "images" / "1", 2) + _batch(tmp_path / "masks" / "1", 2)
    fs = RecordingFS()
    write_many_durably(files, fs, workers=4)
    ops = [op for op, _ in fs.calls]
    assert ops.count("syncfs") == 1 and ops.count("rename") == 4 and "fsync" in ops
    assert max(i for i, op in enumerate(ops) if op == "open_new") < ops.index("syncfs")
    last_rename = max(i for i, op in enumerate(ops) if op == "rename")
    assert ops.index("syncfs") < ops.index("rename") and last_rename < len(ops) - 1
    folder_syncs = [fs.calls[i - 1][1] for i, c in enumerate(fs.calls) if c == ("fsync", "dir")]
    # images/, masks/ and the two 1/ folders are new: each is made durable in its parent first.
    assert folder_syncs[-2:] == ["1", "1"]
    assert not any(c == ("fsync", "file") for c in fs.calls), "syncfs replaces per-file fsyncs"
    assert all(target.read_bytes() == data for target, data in files)


def test_without_syncfs_each_file_is_fsynced_before_its_rename(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    fs = NoSyncfsFS()
    write_many_durably(_batch(tmp_path / "images", 2), fs)
    steps = [(op, name) for op, name in _compact(fs.calls) if op != "open_new"]
    one_file = [("write", "file"), ("fsync", "file"), ("close", "file")]
    assert steps == [
        *one_file,
        ("rename", "000.jpg"),
        *one_file,
        ("rename", "001.jpg"),
        ("open_dir", "images"),
        ("fsync", "dir"),
        ("close", "dir"),
    ]
    assert not any(op == "syncfs" for op, _ in fs.calls)


@needs_syncfs
def test_a_failed_syncfs_renames_nothing_removes_every_temp_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "001.jpg").write_bytes(b"old")
    fs = RecordingFS(fail={"syncfs": errno.EIO})
    with pytest.raises(StoreError, match="syncing and renaming 3 files") as info:
        write_many_durably(_batch(tmp_path / "images", 3), fs)
    assert not isinstance(info.value, DiskFull)
    assert not any(op == "rename" for op, _ in fs.calls)
    assert os.listdir(tmp_path / "images") == ["001.jpg"]
    assert (tmp_path / "images" / "001.jpg").read_bytes() == b"old"


@needs_syncfs
@pytest.mark.parametrize("step", ["open_new", "write"])
def test_a_full_disk_midway_through_a_batch_raises_disk_full_and_leaves_no_temp(
    tmp_path: Path, step: str
) -> None:
    (tmp_path / "images").mkdir()
    fs = RecordingFS(fail={step: errno.ENOSPC}, fail_after=4)
    with pytest.raises(DiskFull, match="no space left"):
        write_many_durably(_batch(tmp_path / "images", 6), fs, workers=3)
    assert os.listdir(tmp_path / "images") == [], "no temp left, nothing renamed"
    assert not any(op in ("syncfs", "rename") for op, _ in fs.calls)


def test_an_interrupt_during_a_batch_removes_its_temps(tmp_path: Path) -> None:
    class Interrupting(RecordingFS):
        def close(self, fd: int) -> None:
            super().close(fd)
            if sum(op == "close" for op, _ in self.calls) == 2:
                raise KeyboardInterrupt

    (tmp_path / "images").mkdir()
    with pytest.raises(KeyboardInterrupt):
        write_many_durably(_batch(tmp_path / "images", 4), Interrupting())
    assert os.listdir(tmp_path / "images") == []


@needs_syncfs
def test_a_batch_spanning_two_file_systems_syncs_each_of_them(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second file system (/dev/shm) beside the test directory")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        files = _batch(tmp_path, 2) + _batch(Path(other), 2)
        fs = RecordingFS()
        write_many_durably(files, fs)
        assert sum(op == "syncfs" for op, _ in fs.calls) == 2
        assert all(target.read_bytes() == data for target, data in files)


@pytest.mark.parametrize(
    ("system", "release"),
    [("linux", "5.7.19"), ("linux", "4.19.66-v7+"), ("linux", "garbage"), ("darwin", "23.1.0")],
)
def test_syncfs_is_not_relied_on_where_it_cannot_report_write_back_errors(
    system: str, release: str
) -> None:
    assert load_syncfs(system, release) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs is Linux's")
def test_syncfs_is_used_from_linux_5_8_on() -> None:
    assert load_syncfs("linux", "5.8.0") is not None
    assert load_syncfs("linux", "6.1.0-rpi7-rpi-v8") is not None
