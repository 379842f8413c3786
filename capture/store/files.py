"""The durable file writer: a file is on disk for good before any row may name it.

Why this order (temporary name in the same directory, write, fsync the file, rename, fsync the
directory): a crash at any moment then leaves either the old state or the complete new file
under its final name, never a torn file under a name the database knows.  ``rename`` is atomic
only within one file system, hence the temporary name sits in the target directory; the
directory fsync makes the rename itself durable, since the new name lives in the directory.
Only after :func:`write_durably` returns may the caller commit the row that refers to the file.

Many files at once share one file-system sync instead (``capture/store/file_batches.py``); the
:class:`FileSystem` offers ``syncfs`` for that, where it is safe to rely on.

All operating-system calls go through a :class:`FileSystem` object so the unit test can record
their order with a fake, and so errors map in one place: ``ENOSPC``/``EDQUOT`` become
:class:`~rig.errors.DiskFull` (the temporary file is removed, nothing stored is touched) and a
permission problem becomes :class:`~rig.errors.StoreError` saying what to fix.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import getpass
import hashlib
import os
import platform
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rig.errors import DiskFull, StoreError

#: Temporary files carry this suffix; check() reports leftovers and startup_check() removes them.
TEMP_SUFFIX = ".partrig-tmp"
TEMP_PREFIX = "."

_FULL = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


@dataclass(frozen=True)
class StoredFile:
    """A file made durable by the store: ``path`` is relative to the data directory."""

    path: str
    sha256: str
    size: int


#: syncfs reports write-back errors (errseq on the file system) only from this Linux release on.
SYNCFS_REPORTS_ERRORS = (5, 8)


def _kernel_release(release: str) -> tuple[int, int]:
    """``"6.1.0-13-arm64"`` -> ``(6, 1)``; ``(0, 0)`` when the text is not a release."""
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return 0, 0


def load_syncfs(
    system: str = sys.platform, release: str | None = None
) -> Callable[[int], int] | None:
    """libc's ``syncfs`` when it is safe to rely on, else ``None`` (the per-file fallback).

    NOTE: before Linux 5.8 syncfs returned 0 even when writing a file back had failed, so a
    batch could commit rows naming files that never reached the disk; there we refuse it.
    """
    if not system.startswith("linux"):
        return None
    if _kernel_release(release or platform.release()) < SYNCFS_REPORTS_ERRORS:
        return None
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs


_SYNCFS = load_syncfs()


class FileSystem:
    """The few OS calls the durable write needs; the unit test swaps in a recording fake."""

    def open_new(self, path: str) -> int:
        # NOTE: O_EXCL: the random temporary name must never clobber another writer's file.
        return os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644
        )

    def write(self, fd: int, data: memoryview) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def open_dir(self, path: str) -> int:
        return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def can_sync_filesystem(self) -> bool:
        """Whether :meth:`sync_filesystem` is available and reports write-back errors."""
        return _SYNCFS is not None

    def sync_filesystem(self, fd: int) -> None:
        """``syncfs(2)``: make every file written on ``fd``'s file system durable, or raise."""
        if _SYNCFS is None:
            raise OSError(errno.ENOSYS, "syncfs is not available on this system")
        if _SYNCFS(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))


REAL_FS = FileSystem()


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of our temporary names (never referenced by any row)."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def check_relpath(relpath: str | PurePosixPath) -> PurePosixPath:
    """Validate a path relative to the data directory: no absolute paths, no ``..``, no temps."""
    rel = PurePosixPath(str(relpath).replace("\\", "/"))
    text = str(relpath)
    bad = text in ("", ".") or text.endswith("/") or rel.is_absolute()
    if bad or ".." in rel.parts or rel.name in ("", "."):
        raise StoreError(
            f"file path {str(relpath)!r} must be relative to the data directory, "
            "without '..' (e.g. images/3/000001.jpg)"
        )
    if is_temp_name(rel.name):
        raise StoreError(f"file name {rel.name!r} is reserved for temporary files; rename it")
    return rel


def os_error(exc: OSError, what: str, where: Path | str) -> StoreError:
    """Turn an OSError into the store error that tells the operator what to do."""
    if exc.errno in _FULL:
        full = DiskFull(
            f"no space left while {what} in {where}: free space on that disk or point "
            "data.dir at a larger one; nothing already stored was changed"
        )
        full.errno = errno.ENOSPC
        return full
    if exc.errno in _DENIED:
        return StoreError(
            f"cannot write to {where} ({exc.strerror}) while {what}: make the data directory "
            f"writable by user {getpass.getuser()!r} (chown/chmod) or set data.dir to a "
            "writable directory"
        )
    return StoreError(f"file system error while {what} in {where}: {exc}")


def ensure_dir(directory: Path, fs: FileSystem = REAL_FS) -> None:
    """Create ``directory`` and missing parents, making each new directory entry durable."""
    if directory.is_dir():
        return
    ensure_dir(directory.parent, fs)
    try:
        fs.mkdir(str(directory))
    except FileExistsError:
        return
    except OSError as exc:
        raise os_error(exc, "creating a folder", directory) from None
    fsync_dir(directory.parent, fs)


def fsync_dir(directory: Path, fs: FileSystem = REAL_FS) -> None:
    """fsync a directory so the names created or renamed in it survive a power cut."""
    fd = fs.open_dir(str(directory))
    try:
        fs.fsync(fd)
    finally:
        fs.close(fd)


def write_all(fs: FileSystem, fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, continuing after short writes."""
    view = memoryview(data)
    while view:
        written = fs.write(fd, view)
        view = view[written:]


def write_durably(
    target: Path, data: bytes, fs: FileSystem = REAL_FS, *, sync_dir: bool = True
) -> str:
    """Write ``data`` to ``target`` durably and atomically; return its sha256 (hex).

    Order: temporary file in the same directory, write everything, fsync, close, rename over
    ``target``, fsync the directory.  On any failure the temporary file is removed and the old
    ``target`` (if any) is untouched.  ``sync_dir=False`` leaves the directory fsync to a caller
    that writes many files and then fsyncs each folder once, before any row names them.
    """
    directory = target.parent
    ensure_dir(directory, fs)
    temp = directory / f"{TEMP_PREFIX}{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    digest = hashlib.sha256(data).hexdigest()
    fd = -1
    try:
        fd = fs.open_new(str(temp))
        write_all(fs, fd, data)
        fs.fsync(fd)
        # NOTE: forget the descriptor before closing: Linux frees it even when close fails,
        # and closing the number again could close another thread's file.
        closing, fd = fd, -1
        fs.close(closing)
        fs.rename(str(temp), str(target))
    except OSError as exc:
        discard(fs, fd, temp)
        raise os_error(exc, f"writing {target.name}", directory) from None
    except BaseException:
        discard(fs, fd, temp)
        raise
    if not sync_dir:
        return digest
    try:
        fsync_dir(directory, fs)
    except OSError as exc:
        raise os_error(exc, f"syncing the folder of {target.name}", directory) from None
    return digest


def discard(fs: FileSystem, fd: int, temp: Path | str) -> None:
    """Best-effort clean-up of a failed write: close the descriptor, remove the temporary."""
    if fd >= 0:
        with contextlib.suppress(OSError):
            fs.close(fd)
    # NOTE: never created, or already gone; check() would report a survivor otherwise.
    with contextlib.suppress(OSError):
        fs.unlink(str(temp))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file on disk, read in chunks so large images need little memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def move_durably(src: Path, dst: Path, fs: FileSystem = REAL_FS) -> None:
    """Move a file within the data directory (to the trash) and make both folders durable."""
    ensure_dir(dst.parent, fs)
    try:
        fs.rename(str(src), str(dst))
        fsync_dir(dst.parent, fs)
        if src.parent != dst.parent:
            fsync_dir(src.parent, fs)
    except OSError as exc:
        raise os_error(exc, f"moving {src.name} to {dst.parent}", src.parent) from None
