"""The pull client's local side: verified files on disk and the content-addressed object store.

Why an object store: a snapshot is immutable and every file in it is named by its sha256 in the
manifest, so a file that an earlier pull already verified never needs the network again.  Each
verified file is hard-linked as ``<dest>/.partrig/objects/<sha[:2]>/<sha256>``; a newer snapshot
that shares the file gets another hard link (no copy, no extra space).  Hard links share their
bytes, so a file edited in place would change its object too: an object is therefore re-hashed
before it is reused, and dropped when it no longer matches its name.

Files are made durable the way the store makes its own (capture/store/files.py): fsync the
file, rename it into place, fsync the directory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import threading
from pathlib import Path, PurePosixPath

from capture.units import human_bytes
from rig.errors import DiskFull, PullError

OBJECTS_DIR = ".partrig/objects"
PART_SUFFIX = ".part"
HASH_BLOCK = 1024 * 1024


def safe_relpath(text: str) -> PurePosixPath:
    """A manifest path checked before it names anything on this disk.

    The rig is trusted to send its own manifest, but a path such as ``../../.bashrc`` from a
    damaged or hostile server must never write outside the destination.
    """
    rel = PurePosixPath(text)
    # NOTE: split the text itself: PurePosixPath folds "a//b" and "./a" into tidier paths.
    if rel.is_absolute() or "\\" in text or any(p in ("", ".", "..") for p in text.split("/")):
        raise PullError(
            f"the manifest names an unsafe path {text!r} (absolute or with '..'): the rig's "
            "snapshot is damaged; refusing to write it"
        )
    if rel.name.endswith(PART_SUFFIX) or rel.parts[0] == ".partrig":
        raise PullError(f"the manifest names a reserved path {text!r}; refusing to write it")
    return rel


def sha256_file(path: Path, prefix: int | None = None) -> str:
    """The sha256 of a file, or of its first ``prefix`` bytes."""
    h = hashlib.sha256()
    left = prefix
    with open(path, "rb") as f:
        while left is None or left > 0:
            block = f.read(HASH_BLOCK if left is None else min(HASH_BLOCK, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h.hexdigest()


def hash_state(path: Path) -> tuple[hashlib._Hash, int]:
    """A running sha256 over a ``.part`` file's bytes so far, and their count (for a resume)."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
            n += len(block)
    return h, n


def is_verified(path: Path, sha256: str, size: int) -> bool:
    """Whether ``path`` holds exactly the expected bytes (size first: it is free)."""
    try:
        if path.stat().st_size != size:
            return False
    except FileNotFoundError:
        return False
    return sha256_file(path) == sha256


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, directory, 0) from None


def disk_error(exc: OSError, where: Path, needed: int) -> Exception:
    """ENOSPC/EDQUOT as :class:`DiskFull` saying how much is needed; others as PullError."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        full = DiskFull(
            f"no space left in {where}: this pull still needs {human_bytes(needed)}; free that "
            "much (or choose another --dest) and run the same command again to resume"
        )
        full.errno = errno.ENOSPC
        return full
    return PullError(f"cannot write {where}: {exc.strerror or exc}; check --dest is writable")


class NewNames:
    """Folders that got new names during a pull, each fsynced once before the manifest.

    Why not one folder fsync per file: the file's own fsync before its rename is what makes a
    name on disk mean a complete, correct file; the folder's fsync only makes the name itself
    survive a power cut.  A class folder of 2,000 images needs that once, not 2,000 times, and
    the manifest, written after :meth:`sync`, still means every name is durable.  A pull cut
    before then loses at most some names to a power cut, and the next run fetches them again.
    """

    def __init__(self) -> None:
        self._dirs: set[Path] = set()
        self._lock = threading.Lock()

    def add(self, directory: Path) -> None:
        with self._lock:
            self._dirs.add(directory)

    def sync(self) -> None:
        """fsync every folder recorded so far, once each."""
        with self._lock:
            dirs, self._dirs = sorted(self._dirs), set()
        for directory in dirs:
            fsync_dir(directory)


def finish_part(part: Path, final: Path, names: NewNames | None = None) -> None:
    """Make a verified ``.part`` file durable under its final name.

    The folder is fsynced now, or recorded in ``names`` to be fsynced once later.
    """
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, final)
    if names is None:
        fsync_dir(final.parent)
    else:
        names.add(final.parent)


class ObjectStore:
    """``<dest>/.partrig/objects``: one hard link per verified sha256 (see the module doc)."""

    def __init__(self, dest: Path) -> None:
        self.root = dest / OBJECTS_DIR
        self.enabled = True

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def add(self, file: Path, sha256: str) -> None:
        """Record a verified file; a file system without hard links simply has no store."""
        if not self.enabled:
            return
        obj = self.path(sha256)
        try:
            obj.parent.mkdir(parents=True, exist_ok=True)
            os.link(file, obj)
        except FileExistsError:
            return
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_error(exc, obj.parent, 0) from None
            # NOTE: FAT/exFAT and some network mounts refuse hard links: pulls still work,
            # only the cross-snapshot reuse is lost.
            self.enabled = False

    def reuse(self, sha256: str, size: int, final: Path, names: NewNames | None = None) -> bool:
        """Place a verified object at ``final``; False when there is none (or it is damaged).

        ``names`` as in :func:`finish_part`."""
        obj = self.path(sha256)
        if not self.enabled or not obj.exists():
            return False
        if not is_verified(obj, sha256, size):
            with contextlib.suppress(FileNotFoundError):
                obj.unlink()
            return False
        with contextlib.suppress(FileNotFoundError):
            final.unlink()
        try:
            os.link(obj, final)
        except OSError:
            part = final.with_name(final.name + PART_SUFFIX)
            try:
                shutil.copyfile(obj, part)
            except OSError as exc:
                raise disk_error(exc, final.parent, size) from None
            finish_part(part, final, names)
            return True
        if names is None:
            fsync_dir(final.parent)
        else:
            names.add(final.parent)
        return True
