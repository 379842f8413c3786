"""The durable file writer: its exact order of OS calls, and its failures, with a recording fake."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from capture.store.files import (
    FileSystem,
    check_relpath,
    is_temp_name,
    write_durably,
)
from rig.errors import DiskFull, StoreError


class RecordingFS(FileSystem):
    """The real OS calls, each recorded as (name, path or fd kind) in order; can inject errors."""

    def __init__(self, fail: dict[str, int] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail or {}
        self.kinds: dict[int, str] = {}

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
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
