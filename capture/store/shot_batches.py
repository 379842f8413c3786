"""The one durable write path of shots: batches of files made durable, then their rows.

Why batches, and why the next batch's sync finishes the previous one: the contract's order
for every file is write, sync, rename, sync the folder, and only then commit the row.  Done
per batch that is two file-system syncs plus the database's own commit; a writer that is
behind (the capture writer with frames queued, an import) would wait for three flushes per
batch where a bare loop waits for two.  Here a batch's files are written, synced and renamed;
their folders are synced by the next batch's data sync (``syncfs`` commits the whole file
system, names included) and only then do their rows commit.  :meth:`ShotBatches.flush`
finishes the last batch with an explicit folder sync when no next batch comes, so a writer
that keeps up pays the full order per batch and loses nothing by waiting.

The capture writer (``capture.runs.pipeline.ShotWriter``) and ``bench/store.py`` use this
class; :meth:`capture.store.shots.Shots.save_shots` is one batch flushed at once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from capture.store.file_batches import sync_folders
from capture.store.file_store import WRITE_WORKERS, FileStore
from capture.store.records import ShotRecord


@dataclass(frozen=True)
class ShotFiles:
    """One shot on the durable path: its files' bytes and its row.

    ``image`` (relative path, bytes) fills the record's ``path``, ``sha256`` and ``size``;
    ``mask`` and ``thumb``, when given, its ``mask_path`` and ``thumb_path``.
    """

    record: ShotRecord
    image: tuple[str, bytes]
    mask: tuple[str, bytes] | None = None
    thumb: tuple[str, bytes] | None = None

    def files(self) -> list[tuple[str, bytes]]:
        return [f for f in (self.image, self.mask, self.thumb) if f is not None]


#: A :class:`ShotFiles`, or ``(path, bytes, record)`` for a shot with an image only.
ShotItem = ShotFiles | tuple[str, bytes, ShotRecord]


def as_shot_files(item: ShotItem) -> ShotFiles:
    if isinstance(item, ShotFiles):
        return item
    relpath, data, record = item
    return ShotFiles(record, (relpath, data))


class ShotRows(Protocol):
    """Commits rows whose files are already durable (:class:`capture.store.shots.Shots`)."""

    def commit_durable(
        self, records: list[ShotRecord], *, known: dict[str, set[Any]]
    ) -> list[int]: ...


@dataclass
class _Pending:
    records: list[ShotRecord]
    folders: dict[str, int]


class ShotBatches:
    """A stream of shot batches, each durable before its rows; see the module docstring.

    Not thread-safe: one writer thread owns one instance.  A shot is stored when its id has
    been returned by :meth:`add` or :meth:`flush`; ids come back oldest first.
    """

    def __init__(self, files: FileStore, rows: ShotRows, *, workers: int = WRITE_WORKERS):
        self._files = files
        self._rows = rows
        self._workers = workers
        self._pending: _Pending | None = None
        #: Catalogue keys (per table) this stream has committed: their rows exist.
        self._known: dict[str, set[Any]] = {"label": set(), "instance": set(), "sheet": set()}

    @property
    def pending(self) -> int:
        """How many shots are durable on disk but not yet committed."""
        return 0 if self._pending is None else len(self._pending.records)

    def add(self, items: Sequence[ShotItem]) -> list[int]:
        """Write, sync and rename this batch's files; commit the previous batch's rows.

        Returns the ids committed by this call: the previous batch's, oldest first (none for
        the first batch).  Call :meth:`flush` when no batch follows soon.
        """
        shots = [as_shot_files(item) for item in items]
        for shot in shots:
            shot.record.validate_fields()
        before = self._pending.folders if self._pending is not None else None
        stored, folders = self._files.write_and_rename(
            [f for shot in shots for f in shot.files()],
            renamed_before=before,
            workers=self._workers,
        )
        # NOTE: the sync above made the previous batch's names durable: its rows may commit.
        committed = self._commit_pending()
        files = iter(stored)
        records = []
        for shot in shots:
            image = next(files)
            mask = next(files) if shot.mask is not None else None
            thumb = next(files) if shot.thumb is not None else None
            # NOTE: a shallow copy and three fields: dataclasses.replace re-ran __init__ over
            # all thirty fields, a tenth of the path's CPU per shot.
            record = copy.copy(shot.record)
            record.path, record.sha256, record.size = image.path, image.sha256, image.size
            if mask is not None:
                record.mask_path = mask.path
            if thumb is not None:
                record.thumb_path = thumb.path
            records.append(record)
        self._pending = _Pending(records, folders) if records else None
        return committed

    def flush(self) -> list[int]:
        """Sync the last batch's folders and commit its rows; their ids (none if none wait)."""
        if self._pending is None:
            return []
        sync_folders(self._pending.folders, self._files.fs)
        self._pending.folders = {}
        return self._commit_pending()

    def _commit_pending(self) -> list[int]:
        if self._pending is None:
            return []
        ids = self._rows.commit_durable(self._pending.records, known=self._known)
        self._pending = None
        return ids
