"""Write-behind for a download: start writing its bytes to disk while the rest still arrives.

Why: a pulled file must be durable (fsync) before it is renamed, and Linux keeps written pages
dirty in memory until about a tenth of RAM is dirty or 30 s pass.  Left alone, a 2 GB pull
therefore receives everything first and then waits for the disk to write all of it in the
final fsyncs: network, then disk, one after the other.  Asking the kernel to start writing each
finished stretch (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which does not wait for the
disk) overlaps the two, so the fsync before the rename has little left to do.  It does not wait
for a stretch to be written either: measured on the loaded 2-core build machine, waiting for the
previous stretch (to bound dirty memory) stalled downloads behind the disk and was slower than
letting the kernel's own dirty limits do that.  This is not a durability guarantee by itself
(it does not flush the disk's cache or the metadata): the fsync before the rename still gives
that, as before.

Linux only; elsewhere (or where libc lacks the call) :class:`WriteBehind` does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

#: How many bytes each write-behind stretch holds: large enough that the disk sees big writes,
#: small enough that the disk starts early in every file.
STRETCH_BYTES = 8 * 1024 * 1024

#: sync_file_range(2)'s SYNC_FILE_RANGE_WRITE: start writing the range's dirty pages, no wait.
WRITE = 2

#: ``sync_file_range(fd, offset, nbytes, flags)`` returning 0, or -1 with errno set.
RangeSync = Callable[[int, int, int, int], int]


def load_sync_file_range() -> RangeSync | None:
    """libc's ``sync_file_range``, or ``None`` where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    # NOTE: ctypes' function pointer is callable with exactly this signature.
    range_sync: RangeSync = call
    return range_sync


_RANGE_SYNC = load_sync_file_range()


class WriteBehind:
    """Write-behind for one file opened for writing, whose bytes are appended in order.

    Call :meth:`wrote` with the file's length after each write.  Failures are ignored: the
    fsync before the rename reports any write error, and a file system that refuses the call
    (some network mounts) only loses the overlap.
    """

    def __init__(
        self,
        fd: int,
        start: int,
        *,
        stretch: int = STRETCH_BYTES,
        range_sync: RangeSync | None = _RANGE_SYNC,
    ) -> None:
        self.fd = fd
        self.stretch = stretch
        self.range_sync = range_sync
        self.started = start  # bytes before this offset have been handed to the disk

    def wrote(self, length: int) -> None:
        """The file now holds ``length`` bytes: start writing a full stretch if there is one."""
        if self.range_sync is None or length - self.started < self.stretch:
            return
        if self.range_sync(self.fd, self.started, length - self.started, WRITE) != 0:
            self.range_sync = None  # NOTE: EINVAL/ESPIPE/ENOSYS: this file system will not
            return
        self.started = length
