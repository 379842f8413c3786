"""Write-behind: each full stretch of a download is handed to the disk while the rest arrives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capture.pull.writebehind import _RANGE_SYNC, WRITE, WriteBehind


class Recorder:
    def __init__(self, answer: int = 0) -> None:
        self.calls: list[tuple[int, int, int, int]] = []
        self.answer = answer

    def __call__(self, fd: int, offset: int, nbytes: int, flags: int) -> int:
        self.calls.append((fd, offset, nbytes, flags))
        return self.answer


def test_each_full_stretch_is_handed_to_the_disk_once_in_order() -> None:
    calls = Recorder()
    behind = WriteBehind(7, 0, stretch=100, range_sync=calls)
    for length in (60, 120, 150, 230, 260, 330):
        behind.wrote(length)
    assert calls.calls == [(7, 0, 120, WRITE), (7, 120, 110, WRITE), (7, 230, 100, WRITE)]


def test_a_resumed_download_starts_at_the_bytes_it_already_had() -> None:
    calls = Recorder()
    behind = WriteBehind(3, 500, stretch=100, range_sync=calls)
    behind.wrote(550)
    behind.wrote(610)
    assert calls.calls == [(3, 500, 110, WRITE)]


def test_a_file_system_that_refuses_the_call_is_not_asked_again() -> None:
    calls = Recorder(answer=-1)
    behind = WriteBehind(3, 0, stretch=10, range_sync=calls)
    behind.wrote(20)
    behind.wrote(40)
    assert calls.calls == [(3, 0, 20, WRITE)]


@pytest.mark.skipif(_RANGE_SYNC is None, reason="sync_file_range is Linux only")
def test_the_real_call_leaves_the_bytes_as_written(tmp_path: Path) -> None:
    path = tmp_path / "shard.tar.part"
    blob = os.urandom(64 * 1024)
    with open(path, "wb") as f:
        behind = WriteBehind(f.fileno(), 0, stretch=16 * 1024)
        for at in range(0, len(blob), 8192):
            f.write(blob[at : at + 8192])
            f.flush()
            behind.wrote(at + 8192)
        assert behind.range_sync is not None and behind.started == len(blob)
    assert path.read_bytes() == blob
