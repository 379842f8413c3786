"""Shots: the durable write path, keyset-paged queries, and recorded relabels and deletes.

Why keyset pagination: a browse page deep into a million shots must cost the same as the first
one.  ``OFFSET`` would scan and discard every earlier row; a cursor holding the last row's
``(captured_at, id)`` lets the partial index on (filter columns, captured_at, id) jump straight
to the next page.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from capture.store.base import Repository, StoreBase
from capture.store.catalogue import attribute_filter_sql
from capture.store.file_store import TRASH_DIR, WRITE_WORKERS, FileStore
from capture.store.files import move_durably
from capture.store.measure_schema import size_filter_sql
from capture.store.records import (
    ShotPage,
    ShotRecord,
    decode_cursor,
    decode_one,
    encode_cursor,
    lastrowid,
    normalise_time,
    to_json,
    utc_now,
)
from capture.store.runs import ensure_catalogue
from capture.store.shot_batches import ShotBatches, ShotFiles, ShotItem
from rig.errors import NotFound, QueryError, StoreError

__all__ = ["MAX_PAGE", "TRASH_DIR", "ShotFiles", "ShotItem", "Shots"]

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


#: Catalogue keys known to exist, per table: "label", "instance" and "sheet".
Known = dict[str, set[Any]]


def _ensure_catalogue_of(
    conn: sqlite3.Connection, records: Sequence[ShotRecord], known: Known | None = None
) -> Known:
    """Create the parts, instances and backgrounds the records name that do not exist yet.

    Returns the keys that exist once the transaction commits; a stream of batches passes them
    back as ``known`` so that keys it has already committed are not looked up again.

    NOTE: one lookup per table per batch, then ensure_catalogue only for what is missing:
    three statements per row (~15 µs each) were a third of the row cost, and a batch mostly
    names parts that exist already.  Inside the write transaction, so nothing changes between.
    """
    known = known or {"label": set(), "instance": set(), "sheet": set()}
    wanted: Known = {
        "label": {r.label for r in records} - known["label"],
        "instance": {r.instance_id for r in records} - known["instance"],
        "sheet": {r.background_id for r in records if r.background_id is not None} - known["sheet"],
    }
    have = {
        "label": known["label"] | _existing(conn, "parts", "label", wanted["label"]),
        "instance": known["instance"]
        | _existing(conn, "part_instances", "instance_id", wanted["instance"]),
        "sheet": known["sheet"] | _existing(conn, "backgrounds", "sheet_id", wanted["sheet"]),
    }
    for label, instance_id, source, sheet in dict.fromkeys(
        (r.label, r.instance_id, r.source, r.background_id) for r in records
    ):
        if (
            label in have["label"]
            and instance_id in have["instance"]
            and (sheet is None or sheet in have["sheet"])
        ):
            continue
        ensure_catalogue(
            conn, label=label, instance_id=instance_id, source=source, background_id=sheet
        )
        have["label"].add(label)
        have["instance"].add(instance_id)
        have["sheet"].add(sheet)
    return have


def _existing(conn: sqlite3.Connection, table: str, column: str, keys: set[Any]) -> set[Any]:
    """Which of ``keys`` are in ``table.column`` (a constant, never user input)."""
    found: set[Any] = set()
    ordered = list(keys)
    # NOTE: chunks stay under SQLite's oldest limit of 999 parameters per statement.
    for start in range(0, len(ordered), 900):
        chunk = ordered[start : start + 900]
        marks = ", ".join("?" * len(chunk))
        sql = f'SELECT {column} FROM "{table}" WHERE {column} IN ({marks})'
        found.update(row[0] for row in conn.execute(sql, chunk))
    return found


class Shots(Repository):
    """Shot rows: the durable batched write path, keyset-paged queries, relabels and deletes."""

    def __init__(self, base: StoreBase, files: FileStore) -> None:
        super().__init__(base)
        self.files = files

    # --- the durable write path ------------------------------------------------------------------

    def save_shots(self, items: Sequence[ShotItem], *, workers: int = WRITE_WORKERS) -> list[int]:
        """Store shots: every file durable, THEN all their rows in one transaction; their ids.

        One batch of :class:`~capture.store.shot_batches.ShotBatches`, flushed at once: each
        file is written to a temporary name, made durable (one ``syncfs`` for the batch, or an
        fsync per file where syncfs cannot be relied on), renamed, and its folder fsynced
        before any row names it; then the rows commit together.
        """
        if not items:
            return []
        batches = self.batches(workers=workers)
        batches.add(items)
        return batches.flush()

    def batches(self, *, workers: int = WRITE_WORKERS) -> ShotBatches:
        """A stream of batches for one writer thread (the capture writer's durable path)."""
        return ShotBatches(self.files, self, workers=workers)

    def commit_durable(self, records: list[ShotRecord], *, known: Known) -> list[int]:
        """Commit rows whose files :class:`ShotBatches` has just made durable; their ids.

        ``known`` holds the catalogue keys this stream has committed already; they are not
        looked up again, and this batch's keys join them once it has committed.
        """
        ids, have = self._commit(records, files_checked=True, known=known)
        for table, keys in have.items():
            known.setdefault(table, set()).update(keys)
        return ids

    def _require_files(self, record: ShotRecord) -> None:
        for rel in (record.path, record.mask_path, record.thumb_path):
            if rel is not None and not os.path.exists(self.data_dir / rel):
                raise StoreError(
                    f"shot file {rel} is not in {self.data_dir}: store it with write_file() "
                    "before adding its row, or use save_shots()"
                )

    def add_shot(self, record: ShotRecord) -> int:
        """Commit one shot row (and bump its run's shots_done) in one transaction; its id."""
        return self.add_shots([record])[0]

    def add_shots(self, records: Iterable[ShotRecord]) -> list[int]:
        """Commit several shot rows in one transaction (group commit); their ids, in order.

        Every file must already be durable (write_file returned); all rows commit or none.
        """
        return self._commit(list(records), files_checked=False)[0]

    def _commit(
        self,
        records: list[ShotRecord],
        *,
        files_checked: bool,
        known: Known | None = None,
    ) -> tuple[list[int], Known]:
        for record in records:
            record.validate()
            if not files_checked:
                self._require_files(record)
        per_run = Counter(r.run_id for r in records if r.run_id is not None)
        ids: list[int] = []
        with self.transaction() as conn:
            have = _ensure_catalogue_of(conn, records, known)
            for record in records:
                cur = conn.execute(_INSERT_SQL, _shot_values(record))
                ids.append(lastrowid(cur))
            for run_id, done in per_run.items():
                conn.execute(
                    "UPDATE runs SET shots_done = shots_done + ? WHERE id = ?", (done, run_id)
                )
        return ids, have

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
        return decode_one(rows[0])

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
        attributes: Mapping[str, object] | None = None,
        **size_bounds: float | None,
    ) -> ShotPage:
        """One page of shots, newest first (captured_at desc, id desc), and the next cursor.

        ``attributes`` keeps shots whose attribute (the part's, or the shot's override) equals
        each value; ``size_bounds`` (``min_length_mm``, ``max_width_mm``, ...) keeps measured
        shots within them (:func:`capture.store.measure_schema.size_filter_sql`).
        """
        if not 1 <= int(limit) <= MAX_PAGE:
            raise QueryError(f"limit {limit} must be between 1 and {MAX_PAGE}")
        where: list[str] = [] if include_deleted else ["deleted_at IS NULL"]
        params: list[Any] = []
        for clauses, values in (
            size_filter_sql(size_bounds),
            attribute_filter_sql(attributes or {}),
        ):
            where += clauses
            params += values
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
        return ShotPage([decode_one(r) for r in rows], nxt)

    def shot_edits(self, shot_id: int) -> list[dict[str, Any]]:
        """The field-level edit history of a shot (relabel, delete, accept, ...), oldest first."""
        return self.query("SELECT * FROM shot_edits WHERE shot_id = ? ORDER BY id", (int(shot_id),))

    # --- curation --------------------------------------------------------------------------------

    def relabel(self, shot_id: int, label: str, who: str) -> dict[str, Any]:
        """Give a shot another label, recording who changed it from what."""
        if not label or not label.strip():
            raise QueryError("the new label is empty: give the part number, e.g. 3001")
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT label, deleted_at FROM shots WHERE id = ?", (int(shot_id),)
            ).fetchone()
            if row is None or row[1] is not None:
                raise NotFound(f"shot {shot_id} does not exist or was deleted")
            ensure_catalogue(conn, label=label)
            conn.execute("UPDATE shots SET label = ? WHERE id = ?", (label, int(shot_id)))
            conn.execute(
                "INSERT INTO shot_edits(shot_id, action, field, old, new, who, at)"
                " VALUES (?, 'relabel', 'label', ?, ?, ?, ?)",
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
            now = utc_now()
            conn.execute("UPDATE shots SET deleted_at = ? WHERE id = ?", (now, int(shot_id)))
            conn.execute(
                "INSERT INTO shot_edits(shot_id, action, field, old, new, who, at)"
                " VALUES (?, 'delete', 'deleted_at', NULL, ?, ?, ?)",
                (int(shot_id), now, who, now),
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
