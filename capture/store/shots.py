"""Shots: the durable write path, keyset-paged queries, and recorded relabels and deletes.

Why keyset pagination: a browse page deep into a million shots must cost the same as the first
one.  ``OFFSET`` would scan and discard every earlier row; a cursor holding the last row's
``(captured_at, id)`` lets the partial index on (filter columns, captured_at, id) jump straight
to the next page.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from capture.store.base import StoreBase
from capture.store.files import (
    StoredFile,
    check_relpath,
    fsync_dir,
    move_durably,
    os_error,
    write_durably,
)
from capture.store.records import (
    ShotPage,
    ShotRecord,
    decode_cursor,
    decode_row,
    encode_cursor,
    normalise_time,
    to_json,
    utc_now,
)
from capture.store.runs import ensure_catalogue
from rig.errors import NotFound, QueryError, StoreError

TRASH_DIR = "trash"
MAX_PAGE = 1000
_INSERT_COLUMNS = [f.name for f in dataclasses.fields(ShotRecord)]
_INSERT_SQL = (
    f"INSERT INTO shots({', '.join(_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_INSERT_COLUMNS))})"
)


def _shot_values(record: ShotRecord) -> tuple[Any, ...]:
    # NOTE: getattr, not dataclasses.asdict: asdict deep-copies every value, which dominated
    # the bulk insert time.
    values = {c: getattr(record, c) for c in _INSERT_COLUMNS}
    values["colour_gains"] = to_json(record.colour_gains)
    values["colour_matrix"] = to_json(record.colour_matrix)
    values["captured_at"] = normalise_time(record.captured_at)
    return tuple(values[c] for c in _INSERT_COLUMNS)


class ShotsMixin(StoreBase):
    # --- the durable write path ------------------------------------------------------------------

    def write_file(self, relpath: str, data: bytes) -> StoredFile:
        """Write a file under the data directory durably (temp, fsync, rename, fsync dir).

        Raises DiskFull on a full disk (the temporary file removed, nothing stored touched) and
        StoreError for an unwritable directory.  Only after this returns may a row name the file.
        """
        return self._write_file(relpath, data, sync_dir=True)

    def _write_file(self, relpath: str, data: bytes, *, sync_dir: bool) -> StoredFile:
        rel = check_relpath(relpath)
        if rel.parts[0].startswith(self.db_path.name) or rel.parts[0] == TRASH_DIR:
            raise StoreError(f"{rel} is reserved for the store itself; choose another path")
        sha = write_durably(self.data_dir / rel, bytes(data), self.fs, sync_dir=sync_dir)
        return StoredFile(str(rel), sha, len(data))

    def save_shot(self, relpath: str, data: bytes, record: ShotRecord) -> int:
        """The whole per-shot write path in its required order: durable file, THEN the row."""
        stored = self.write_file(relpath, data)
        record = dataclasses.replace(
            record, path=stored.path, sha256=stored.sha256, size=stored.size
        )
        return self.add_shot(record)

    def save_shots(
        self, items: Sequence[tuple[str, bytes, ShotRecord]], *, workers: int = 8
    ) -> list[int]:
        """Several shots: files made durable in parallel, THEN all their rows in one transaction.

        Each file is fsynced and renamed, and its folder fsynced, before any row names it, as
        in :meth:`save_shot`; only the waiting is shared: files are written by ``workers``
        threads and each folder is fsynced once after all its renames.  NOTE: flash and SSDs
        complete concurrent fsyncs nearly as fast as one, so a burst (the sorter's log, an
        import) is bound by the disk's queue, not by one fsync's latency.
        """
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
            stored = list(
                pool.map(lambda item: self._write_file(item[0], item[1], sync_dir=False), items)
            )
            folders = {(self.data_dir / f.path).parent for f in stored}
            list(pool.map(self._sync_folder, folders))
        records = [
            dataclasses.replace(rec, path=f.path, sha256=f.sha256, size=f.size)
            for (_, _, rec), f in zip(items, stored, strict=True)
        ]
        return self.add_shots(records)

    def _sync_folder(self, folder: Path) -> None:
        try:
            fsync_dir(folder, self.fs)
        except OSError as exc:
            raise os_error(exc, "syncing a folder", folder) from None

    def _require_files(self, record: ShotRecord) -> None:
        for rel in (record.path, record.mask_path, record.thumb_path):
            if rel is not None and not os.path.exists(self.data_dir / rel):
                raise StoreError(
                    f"shot file {rel} is not in {self.data_dir}: store it with write_file() "
                    "before adding its row"
                )

    def add_shot(self, record: ShotRecord) -> int:
        """Commit one shot row (and bump its run's shots_done) in one transaction; its id."""
        return self.add_shots([record])[0]

    def add_shots(self, records: Iterable[ShotRecord]) -> list[int]:
        """Commit several shot rows in one transaction (group commit); their ids, in order.

        Every file must already be durable (write_file returned); all rows commit or none.
        """
        records = list(records)
        for record in records:
            record.validate()
            self._require_files(record)
        ids: list[int] = []
        with self.transaction() as conn:
            for record in records:
                ensure_catalogue(
                    conn,
                    label=record.label,
                    instance_id=record.instance_id,
                    source=record.source,
                    background_id=record.background_id,
                )
                cur = conn.execute(_INSERT_SQL, _shot_values(record))
                ids.append(int(cur.lastrowid))  # type: ignore[arg-type]
                if record.run_id is not None:
                    conn.execute(
                        "UPDATE runs SET shots_done = shots_done + 1 WHERE id = ?", (record.run_id,)
                    )
        return ids

    def done_shot_indices(self, run_id: int) -> set[int]:
        """The shot indices of a run already committed: resume continues with the rest."""
        rows = self.db.execute(
            "SELECT shot_index FROM shots WHERE run_id = ? AND shot_index IS NOT NULL",
            (int(run_id),),
        ).fetchall()
        return {int(r[0]) for r in rows}

    # --- reading ---------------------------------------------------------------------------------

    def get_shot(self, shot_id: int) -> dict[str, Any]:
        rows = self.query("SELECT * FROM shots WHERE id = ?", (int(shot_id),))
        if not rows:
            raise NotFound(f"shot {shot_id} does not exist")
        return decode_row(rows[0])  # type: ignore[return-value]

    def query_shots(
        self,
        label: str | None = None,
        background: int | None = None,
        run: int | None = None,
        instance: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        *,
        source: str | None = None,
        include_deleted: bool = False,
    ) -> ShotPage:
        """One page of shots, newest first (captured_at desc, id desc), and the next cursor."""
        if not 1 <= int(limit) <= MAX_PAGE:
            raise QueryError(f"limit {limit} must be between 1 and {MAX_PAGE}")
        where: list[str] = [] if include_deleted else ["deleted_at IS NULL"]
        params: list[Any] = []
        for column, value in (
            ("label", label),
            ("background_id", background),
            ("run_id", run),
            ("instance_id", instance),
            ("source", source),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if cursor:
            at, after_id = decode_cursor(cursor)
            where.append("(captured_at, id) < (?, ?)")
            params += [at, after_id]
        sql = "SELECT * FROM shots"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY captured_at DESC, id DESC LIMIT ?"
        rows = self.query(sql, (*params, int(limit) + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = encode_cursor(rows[-1]["captured_at"], rows[-1]["id"]) if more and rows else None
        return ShotPage([decode_row(r) for r in rows], nxt)  # type: ignore[misc]

    def shot_edits(self, shot_id: int) -> list[dict[str, Any]]:
        """The relabel/delete history of a shot, oldest first."""
        return self.query("SELECT * FROM shot_edits WHERE shot_id = ? ORDER BY id", (int(shot_id),))

    # --- curation --------------------------------------------------------------------------------

    def relabel(self, shot_id: int, label: str, who: str) -> dict[str, Any]:
        """Give a shot another label, recording who changed it from what."""
        if not label or not label.strip():
            raise StoreError("the new label is empty: give the part number, e.g. 3001")
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT label, deleted_at FROM shots WHERE id = ?", (int(shot_id),)
            ).fetchone()
            if row is None or row[1] is not None:
                raise NotFound(f"shot {shot_id} does not exist or was deleted")
            ensure_catalogue(conn, label=label)
            conn.execute("UPDATE shots SET label = ? WHERE id = ?", (label, int(shot_id)))
            conn.execute(
                "INSERT INTO shot_edits(shot_id, action, old, new, who, at)"
                " VALUES (?, 'relabel', ?, ?, ?, ?)",
                (int(shot_id), row[0], label, who, utc_now()),
            )
        return self.get_shot(shot_id)

    def delete_shot(self, shot_id: int, who: str) -> None:
        """Mark a shot deleted (recorded) and move its files to data/trash/, never destroying them.

        NOTE: the row is marked first, then the files move.  A crash in between leaves a
        deleted row whose files are still in place; check() accepts that and startup_check()
        finishes the move, so no order of events loses a file or leaves a live row dangling.
        """
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT label, deleted_at FROM shots WHERE id = ?", (int(shot_id),)
            ).fetchone()
            if row is None or row[1] is not None:
                raise NotFound(f"shot {shot_id} does not exist or was already deleted")
            conn.execute("UPDATE shots SET deleted_at = ? WHERE id = ?", (utc_now(), int(shot_id)))
            conn.execute(
                "INSERT INTO shot_edits(shot_id, action, old, new, who, at)"
                " VALUES (?, 'delete', ?, NULL, ?, ?)",
                (int(shot_id), row[0], who, utc_now()),
            )
        self._trash_files(self.get_shot(shot_id))

    def _trash_files(self, shot: dict[str, Any]) -> None:
        for key in ("path", "mask_path", "thumb_path"):
            rel = shot.get(key)
            if not rel:
                continue
            src = self.data_dir / rel
            if src.exists():
                move_durably(src, self.data_dir / TRASH_DIR / rel, self.fs)

    def finish_pending_deletes(self) -> int:
        """Move files of deleted shots still in place to the trash (after a crash); how many."""
        moved = 0
        for shot in self.query("SELECT * FROM shots WHERE deleted_at IS NOT NULL"):
            if any(
                shot.get(k) and (self.data_dir / shot[k]).exists()
                for k in ("path", "mask_path", "thumb_path")
            ):
                self._trash_files(shot)
                moved += 1
        return moved
