"""Checking files against rows, counting the dataset, and making thumbnails.

Why a check in both directions: the write order guarantees that no row names a file that is
not durable, but a crash between the rename and the commit leaves a file no row names (an
orphan, re-written when the run resumes), a person may delete or edit files by hand, and a
disk may rot.  ``check`` finds all of these; ``startup_check`` also removes temporary leftovers,
which by construction no row ever referred to.  ``check`` also lists the other leftovers of
interrupted writes (:mod:`capture.store.leftovers`: unfinished snapshot folders, model uploads,
partial downloads) with their sizes, and survives damaged pages: it reports them instead of
raising, so ``partrig dataset check`` can say what to do.
"""

from __future__ import annotations

import io
import logging
import os
import sqlite3
from pathlib import Path, PurePosixPath
from typing import Any

from capture.store.base import (
    DB_NAME,
    Repository,
    StoreBase,
    damaged_db_message,
    db_error,
    is_damage,
)
from capture.store.events import Events
from capture.store.file_store import TRASH_DIR, FileStore
from capture.store.files import check_relpath, is_temp_name, sha256_file
from capture.store.leftovers import find_leftovers, remove_leftovers
from capture.store.records import CheckReport, DatasetStats
from capture.store.shots import Shots
from rig.errors import StoreError

log = logging.getLogger("capture.store")

#: Folders under the data directory whose files must each be named by a row.
MANAGED_DIRS = ["images", "masks", "thumbs", "references"]
#: Queries returning (path, sha256 or NULL) for every live file a row refers to.  A later
#: migration that adds a table with files appends its query here.
REFERENCED_FILE_QUERIES = [
    "SELECT path, sha256 FROM shots WHERE deleted_at IS NULL",
    "SELECT mask_path, NULL FROM shots WHERE deleted_at IS NULL AND mask_path IS NOT NULL",
    "SELECT thumb_path, NULL FROM shots WHERE deleted_at IS NULL AND thumb_path IS NOT NULL",
    'SELECT path, sha256 FROM "references"',
]
#: Files of deleted shots: expected in the trash (or still in place after a crash mid-delete).
TRASHED_FILE_QUERY = (
    "SELECT path FROM shots WHERE deleted_at IS NOT NULL UNION ALL "
    "SELECT mask_path FROM shots WHERE deleted_at IS NOT NULL AND mask_path IS NOT NULL UNION ALL "
    "SELECT thumb_path FROM shots WHERE deleted_at IS NOT NULL AND thumb_path IS NOT NULL"
)


def _files_under(root: Path, top: str) -> list[str]:
    """Relative POSIX paths of every regular file under ``root/top``."""
    out: list[str] = []
    base = root / top
    for dirpath, _dirs, names in os.walk(base):
        rel_dir = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        out.extend(str(rel_dir / n) for n in names)
    return out


class Audit(Repository):
    """The check of files against rows, start-up recovery, statistics and thumbnails."""

    def __init__(self, base: StoreBase, files: FileStore, shots: Shots, events: Events) -> None:
        super().__init__(base)
        self.files = files
        self.shots = shots
        self.events = events

    def check(self, *, verify_checksums: bool = True, integrity: bool = True) -> CheckReport:
        """Orphan files, missing files, checksum mismatches, leftovers, database integrity.

        Never raises for damaged pages: the report says ``database_damaged`` (and what
        ``quick_check`` or the failing query said), and still lists every leftover of an
        interrupted write, because those are found from the files alone.
        """
        report = CheckReport()
        if integrity:
            try:
                rows = self.db.execute("PRAGMA quick_check").fetchall()
                report.integrity = "; ".join(str(r[0]) for r in rows) or "ok"
            except sqlite3.DatabaseError as exc:
                self._damaged(report, exc)
            report.database_damaged = report.database_damaged or report.integrity != "ok"
        referenced: dict[str, str | None] | None = None
        trashed: set[str] = set()
        recorded: set[str] | None = None
        if not report.database_damaged:
            try:
                referenced = {}
                for sql in REFERENCED_FILE_QUERIES:
                    for path, sha in self.db.execute(sql):
                        referenced[path] = sha
                trashed = {r[0] for r in self.db.execute(TRASHED_FILE_QUERY)}
                recorded = {r[0] for r in self.db.execute("SELECT id FROM snapshots")}
            except sqlite3.DatabaseError as exc:
                self._damaged(report, exc)
                referenced, recorded = None, None
        on_disk: set[str] = set()
        for top in MANAGED_DIRS:
            for rel in _files_under(self.data_dir, top):
                if is_temp_name(PurePosixPath(rel).name):
                    report.temp_leftovers.append(rel)
                else:
                    on_disk.add(rel)
        report.temp_leftovers += [
            r for r in _files_under(self.data_dir, TRASH_DIR) if is_temp_name(PurePosixPath(r).name)
        ]
        report.temp_leftovers.sort()
        report.leftovers = find_leftovers(self.data_dir, recorded)
        report.files_checked = len(on_disk)
        if referenced is None:
            return report
        report.rows_checked = len(referenced) + len(trashed)
        report.orphan_files = sorted(on_disk - referenced.keys() - trashed)
        report.missing_files = sorted(
            p for p in referenced if p not in on_disk and not self._exists(p)
        )
        report.missing_files += sorted(
            p for p in trashed if p not in on_disk and not (self.data_dir / TRASH_DIR / p).exists()
        )
        if verify_checksums:
            for path, sha in sorted(referenced.items()):
                present = path in on_disk or self._exists(path)
                if sha and present and sha256_file(self.data_dir / path) != sha:
                    report.checksum_mismatches.append(path)
        return report

    def _damaged(self, report: CheckReport, exc: sqlite3.DatabaseError) -> None:
        """Record damaged pages in the report; any other database error is raised as usual."""
        if not is_damage(exc):
            raise db_error(exc, self.data_dir) from None
        report.database_damaged = True
        if report.integrity == "ok":
            report.integrity = str(exc)

    def remove_temporaries(self, report: CheckReport) -> list[str]:
        """Delete what ``report`` lists as leftovers of interrupted writes; the paths removed.

        Only for the data folder's owner: a snapshot or upload in progress elsewhere would be
        deleted under its writer (``partrig dataset check --remove-temporaries`` takes the
        data-folder lock first).
        """
        removed: list[str] = []
        for rel in report.temp_leftovers:
            try:
                (self.data_dir / rel).unlink(missing_ok=True)
                removed.append(rel)
            except OSError as exc:
                log.warning("could not remove temporary file %s: %s", rel, exc)
        removed += [x.path for x in remove_leftovers(self.data_dir, report.leftovers)]
        return sorted(removed)

    def _exists(self, rel: str) -> bool:
        # NOTE: rows may name files outside the managed folders (a later table's exports).
        return (self.data_dir / rel).is_file()

    def startup_check(self) -> CheckReport:
        """At start-up: remove temp leftovers, finish interrupted deletes, report the rest.

        Missing files are data loss and are also recorded as an incident; orphans are the
        normal trace of a crash before a commit and are only reported.
        """
        removed: list[str] = []
        for top in [*MANAGED_DIRS, TRASH_DIR]:
            for rel in _files_under(self.data_dir, top):
                if is_temp_name(PurePosixPath(rel).name):
                    try:
                        (self.data_dir / rel).unlink()
                        removed.append(rel)
                    except OSError as exc:
                        log.warning("could not remove temporary file %s: %s", rel, exc)
        self.shots.finish_pending_deletes()
        report = self.check(verify_checksums=False, integrity=False)
        if report.database_damaged:
            raise StoreError(damaged_db_message(self.db_path, report.integrity))
        report.removed_temp_files = removed
        if report.missing_files:
            shown = ", ".join(report.missing_files[:5])
            more = len(report.missing_files) - 5
            self.events.add_incident(
                "store_missing_files",
                f"{len(report.missing_files)} stored file(s) are missing: {shown}"
                + (f" and {more} more" if more > 0 else "")
                + "; restore them from a backup or delete their shots",
            )
        for line in report.problems():
            log.warning("dataset store: %s", line)
        return report

    def stats(self) -> DatasetStats:
        """Live shot counts per class, background, run, instance, source and class x background."""
        live = "FROM shots WHERE deleted_at IS NULL"

        def counts(column: str) -> dict[str, int]:
            rows = self.db.execute(
                f"SELECT {column}, COUNT(*) {live} GROUP BY 1 ORDER BY 1"
            ).fetchall()
            return {("none" if k is None else str(k)): int(n) for k, n in rows}

        grid: dict[str, dict[str, int]] = {}
        for label, bg, n in self.db.execute(
            f"SELECT label, background_id, COUNT(*) {live} GROUP BY 1, 2 ORDER BY 1, 2"
        ):
            grid.setdefault(str(label), {})["none" if bg is None else str(bg)] = int(n)
        return DatasetStats(
            total=int(self.scalar(f"SELECT COUNT(*) {live}")),
            deleted=int(self.scalar("SELECT COUNT(*) FROM shots WHERE deleted_at IS NOT NULL")),
            by_label=counts("label"),
            by_background=counts("background_id"),
            by_run=counts("run_id"),
            by_instance=counts("instance_id"),
            by_label_background=grid,
            by_source=counts("source"),
        )

    def make_thumbnail(self, path: str) -> str:
        """Make (durably) the browse thumbnail of a stored image; returns its relative path.

        The longest side becomes ``thumbnail_px`` (data.thumbnail_px); the aspect is kept.
        Pillow is used because it decodes JPEG and PNG and resizes with a good filter in a few
        lines, without dragging OpenCV into the browse path.
        """
        from PIL import Image, ImageOps

        rel = check_relpath(path)
        source = self.data_dir / rel
        try:
            with Image.open(source) as opened:
                small = ImageOps.exif_transpose(opened).convert("RGB")
                small.thumbnail((self.thumbnail_px, self.thumbnail_px), Image.Resampling.LANCZOS)
                buf = io.BytesIO()
                small.save(buf, "JPEG", quality=85)
        except FileNotFoundError:
            raise StoreError(f"cannot make a thumbnail: {rel} is not in {self.data_dir}") from None
        except OSError as exc:
            raise StoreError(
                f"cannot make a thumbnail of {rel}: not a readable image ({exc})"
            ) from None
        parts = rel.parts[1:] if rel.parts[0] == "images" and len(rel.parts) > 1 else rel.parts
        thumb = PurePosixPath("thumbs", *parts).with_suffix(".jpg")
        stored = self.files.write_file(str(thumb), buf.getvalue())
        with self.transaction() as conn:
            conn.execute("UPDATE shots SET thumb_path = ? WHERE path = ?", (stored.path, str(rel)))
        return stored.path

    def db_files(self) -> list[Any]:
        """The database's own files (for backups): the main file, WAL and shared memory."""
        return [
            p
            for p in (self.data_dir / n for n in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"))
            if p.exists()
        ]
