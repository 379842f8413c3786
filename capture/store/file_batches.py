"""Many files made durable together: one ``syncfs`` for the whole batch, not one fsync each.

Why: a small file's fsync costs a journal commit and a disk flush (≈ 0.5 ms on an SSD, several
ms on an SD card), so a burst of shots was bound by that latency.  ``syncfs(2)`` makes every file
written on one file system durable with one commit and one flush; Linux documents it as giving
the guarantees of an fsync of each file, and from 5.8 on it reports the write-back errors that
happened since its descriptor was opened (see :func:`~capture.store.files.load_syncfs`).

The order stays, for every file: data durable (the syncfs), rename, folder fsynced, and only
then may a row name the file.  Where syncfs is not safe to rely on, each file is fsynced before
its rename instead, as :func:`~capture.store.files.write_durably` does.

NOTE: syncfs also writes back what other programs left dirty on the same file system, so its
cost grows with their writes; the rig's data disk holds little else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from capture.store.files import (
    REAL_FS,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    FileSystem,
    discard,
    ensure_dir,
    fsync_dir,
    os_error,
    write_all,
    write_durably,
)

_Job = TypeVar("_Job")
_Result = TypeVar("_Result")


def write_many_durably(
    files: Sequence[tuple[Path, bytes]], fs: FileSystem = REAL_FS, *, workers: int = 1
) -> list[str]:
    """Write several files durably, sharing one file-system sync; their sha256s, in order.

    Every file gets the guarantee of :func:`write_durably`, folder fsync included: when this
    returns, each file is complete under its final name and survives a power cut.  Order:
    open one descriptor per file system, write every temporary file (``workers`` threads),
    ``syncfs`` each file system once, rename every file, fsync each folder once.  On a failure
    the temporary files are removed; files already renamed stay (durable, named by no row),
    as after a crash between rename and commit.  Without a safe ``syncfs`` each file is
    fsynced before its rename instead.
    """
    digests, renamed = write_and_rename(files, fs, workers=workers)
    sync_folders(renamed, fs)
    return digests


def write_and_rename(
    files: Sequence[tuple[Path | str, bytes]],
    fs: FileSystem = REAL_FS,
    *,
    workers: int = 1,
    renamed_before: Mapping[str, int] | None = None,
) -> tuple[list[str], dict[str, int]]:
    """:func:`write_many_durably` up to the renames; the sha256s and the folders left to sync.

    The folders come with their file system's device number.  The caller must sync them
    (:func:`sync_folders`) before a row names any of the files.  ``renamed_before`` are the
    folders an earlier call returned and that were not synced yet: the one ``syncfs`` of this
    call makes those names durable too (it commits the whole file system, directories
    included), and any that ``syncfs`` cannot cover (another file system, or no safe
    ``syncfs``) are fsynced explicitly before this returns.  So a writer that keeps up a stream
    of batches pays one file-system sync per batch: the sync of batch *k*'s data is also the
    folder sync of batch *k - 1*'s names.
    """
    before = renamed_before or {}
    if not fs.can_sync_filesystem():
        digests = _map(
            lambda job: write_durably(Path(job[0]), job[1], fs, sync_dir=False), files, workers
        )
        sync_folders(before, fs)
        folders = dict.fromkeys(os.path.dirname(os.fspath(target)) for target, _ in files)
        return digests, {folder: os.stat(folder).st_dev for folder in folders}
    # NOTE: plain strings from here on: pathlib cost ~15 µs per file, a tenth of the whole path.
    targets = [os.fspath(target) for target, _ in files]
    devices = _folder_devices(targets, fs)
    # NOTE: opened BEFORE the writes: syncfs reports the write-back errors that happened since
    # its descriptor was opened, so a descriptor opened later could miss one of ours.
    anchors = _open_anchors(devices, fs)
    uncovered = [folder for folder, device in before.items() if device not in anchors]
    temps: list[str | None] = [None] * len(files)
    try:
        jobs = [
            (i, target, data)
            for i, (target, (_, data)) in enumerate(zip(targets, files, strict=True))
        ]
        digests = _map(lambda job: _write_temp(fs, *job, temps), jobs, workers)
        try:
            for fd in anchors.values():
                fs.sync_filesystem(fd)
            for i, target in enumerate(targets):
                temp = temps[i]
                assert temp is not None
                fs.rename(temp, target)
                temps[i] = None
        except OSError as exc:
            raise os_error(exc, f"syncing and renaming {len(files)} files", targets[0]) from None
    finally:
        for fd in anchors.values():
            with contextlib.suppress(OSError):
                fs.close(fd)
        for temp in temps:
            if temp is not None:
                discard(fs, -1, temp)
    sync_folders(uncovered, fs)
    return digests, devices


def _folder_devices(targets: list[str], fs: FileSystem) -> dict[str, int]:
    """Each target's folder (created, durably, when missing) and its file system's device."""
    devices: dict[str, int] = {}
    for folder in dict.fromkeys(os.path.dirname(target) for target in targets):
        try:
            devices[folder] = os.stat(folder).st_dev
        except FileNotFoundError:
            ensure_dir(Path(folder), fs)
            devices[folder] = os.stat(folder).st_dev
        except OSError as exc:
            raise os_error(exc, "opening a folder", folder) from None
    return devices


def sync_folders(folders: Iterable[str], fs: FileSystem = REAL_FS) -> None:
    """fsync each folder, so the names renamed into it survive a power cut."""
    for folder in folders:
        try:
            fsync_dir(Path(folder), fs)
        except OSError as exc:
            raise os_error(exc, "syncing a folder", folder) from None


def _open_anchors(devices: Mapping[str, int], fs: FileSystem) -> dict[int, int]:
    """One open folder per file system the batch writes to (a folder may be a mount point)."""
    anchors: dict[int, int] = {}
    try:
        for folder, device in devices.items():
            if device not in anchors:
                anchors[device] = fs.open_dir(folder)
    except OSError as exc:
        for fd in anchors.values():
            with contextlib.suppress(OSError):
                fs.close(fd)
        raise os_error(exc, "opening a folder", folder) from None
    return anchors


def _write_temp(
    fs: FileSystem, index: int, target: str, data: bytes, temps: list[str | None]
) -> str:
    """Write ``data`` to a new temporary name beside ``target`` (not synced); its sha256.

    The name goes into ``temps[index]`` before the file exists, so a failure anywhere later
    still finds it to remove.
    """
    folder, name = os.path.split(target)
    temp = os.path.join(folder, f"{TEMP_PREFIX}{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    temps[index] = temp
    fd = -1
    try:
        fd = fs.open_new(temp)
        write_all(fs, fd, data)
        # NOTE: forget the descriptor before closing: Linux frees it even when close fails,
        # and closing the number again could close another thread's file.
        closing, fd = fd, -1
        fs.close(closing)
    except OSError as exc:
        raise os_error(exc, f"writing {name}", folder) from None
    finally:
        # NOTE: the temporary file itself is removed by the caller, with the rest of the batch.
        if fd >= 0:
            with contextlib.suppress(OSError):
                fs.close(fd)
    return hashlib.sha256(data).hexdigest()


def _map(fn: Callable[[_Job], _Result], jobs: Sequence[_Job], workers: int) -> list[_Result]:
    """``fn`` over ``jobs`` in order, in ``workers`` threads when that is more than one."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        return list(pool.map(fn, jobs))
