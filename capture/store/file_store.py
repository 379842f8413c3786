"""The store's files: every file a row will name is written here, durably, before the row.

Why one place: the crash-safety contract (write the file, fsync, rename, fsync the directory,
then commit) holds for shots, references, thumbnails and sorter crops alike; the repositories
that commit rows take this object and never write files by other means.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from capture.store.base import Repository
from capture.store.file_batches import write_and_rename, write_many_durably
from capture.store.files import StoredFile, check_relpath, write_durably
from rig.errors import StoreError

#: Deleted shots' files move here; never a target of a write.
TRASH_DIR = "trash"
#: Threads that write a batch's temporary files: one was fastest for small files (benchmarks.md).
WRITE_WORKERS = 1
#: A relative path of plain names: no segment starts with a dot, so none is ``..`` or temporary.
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


class FileStore(Repository):
    """Durable writes of files under the data directory (see :mod:`capture.store.files`)."""

    def write_file(self, relpath: str, data: bytes) -> StoredFile:
        """Write a file under the data directory durably (temp, fsync, rename, fsync dir).

        Raises DiskFull on a full disk (the temporary file removed, nothing stored touched) and
        StoreError for an unwritable directory.  Only after this returns may a row name the file.
        """
        rel = self.checked_path(relpath)
        sha = write_durably(self.data_dir / rel, bytes(data), self.fs, sync_dir=True)
        return StoredFile(str(rel), sha, len(data))

    def checked_path(self, relpath: str) -> PurePosixPath:
        """``relpath`` checked (relative, no ``..``) and outside the store's own names."""
        rel = check_relpath(relpath)
        if rel.parts[0].startswith(self.db_path.name) or rel.parts[0] == TRASH_DIR:
            raise StoreError(f"{rel} is reserved for the store itself; choose another path")
        return rel

    def _checked_text(self, relpath: str) -> str:
        """:meth:`checked_path` as text; plain names (the writer's own) skip the path objects.

        NOTE: building and checking a PurePosixPath cost ~70 µs per file, a fifth of the
        writer's CPU per shot; a path of plain names cannot hold ``..`` or a temporary name.
        """
        if _PLAIN.fullmatch(relpath):
            top = relpath.split("/", 1)[0]
            if top != TRASH_DIR and not top.startswith(self.db_path.name):
                return relpath
        return str(self.checked_path(relpath))

    def write_files(
        self, files: Sequence[tuple[str, bytes]], *, workers: int = WRITE_WORKERS
    ) -> list[StoredFile]:
        """Several files made durable together (one file-system sync for all); in order.

        Each file is complete under its final name, and its folder fsynced, when this returns,
        exactly as after :meth:`write_file`; see :mod:`capture.store.file_batches`.
        """
        rels = [self.checked_path(relpath) for relpath, _ in files]
        if len(set(rels)) != len(rels):
            raise StoreError("the same file path appears twice in one batch; give each its own")
        if len(files) == 1:
            return [self.write_file(str(rels[0]), files[0][1])]
        blobs = [bytes(data) for _, data in files]
        targets = [(self.data_dir / rel, blob) for rel, blob in zip(rels, blobs, strict=True)]
        digests = write_many_durably(targets, self.fs, workers=workers)
        return [
            StoredFile(str(rel), sha, len(blob))
            for rel, sha, blob in zip(rels, digests, blobs, strict=True)
        ]

    def write_and_rename(
        self,
        files: Sequence[tuple[str, bytes]],
        *,
        renamed_before: Mapping[str, int] | None = None,
        workers: int = WRITE_WORKERS,
    ) -> tuple[list[StoredFile], dict[str, int]]:
        """:meth:`write_files` without the final folder sync: the files and the folders to sync.

        For a stream of batches (:class:`capture.store.shot_batches.ShotBatches`): this
        batch's file-system sync also makes ``renamed_before`` (the folders the previous batch
        renamed into, with their devices) durable.  No row may name these files before their
        folders are synced.
        """
        rels = [self._checked_text(relpath) for relpath, _ in files]
        if len(set(rels)) != len(rels):
            raise StoreError("the same file path appears twice in one batch; give each its own")
        blobs = [bytes(data) for _, data in files]
        root = os.fspath(self.data_dir)
        targets: list[tuple[Path | str, bytes]] = [
            (f"{root}/{rel}", blob) for rel, blob in zip(rels, blobs, strict=True)
        ]
        digests, folders = write_and_rename(
            targets, self.fs, workers=workers, renamed_before=renamed_before
        )
        stored = [
            StoredFile(str(rel), sha, len(blob))
            for rel, sha, blob in zip(rels, digests, blobs, strict=True)
        ]
        return stored, folders
