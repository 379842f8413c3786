"""Runs, the catalogue (parts, instances, backgrounds) and per-run reference frames.

Why the store does not check run transitions: :mod:`capture.runs.state` owns that table and the
engine checks before it persists; the store only refuses state names it does not know, and
keeps the times (started, ended) consistent with the state written.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from capture.store.base import Repository
from capture.store.records import decode_one, lastrowid, to_json, utc_now
from capture.store.schema import END_RUN_STATES, LIVE_RUN_STATES, RUN_STATES
from rig.errors import NotFound, StoreError


def ensure_catalogue(
    conn: sqlite3.Connection,
    *,
    label: str,
    instance_id: str | None = None,
    source: str = "capture",
    background_id: int | None = None,
) -> None:
    """Insert the part, instance and background a row refers to, when they are not there yet.

    NOTE: the run engine records shots of plan labels and sheet ids without registering them
    first; creating them here keeps the foreign keys without an extra call per shot.
    """
    conn.execute("INSERT OR IGNORE INTO parts(label, name) VALUES (?, ?)", (label, label))
    if instance_id is not None:
        conn.execute(
            "INSERT OR IGNORE INTO part_instances(instance_id, label, source, created_at)"
            " VALUES (?, ?, ?, ?)",
            (instance_id, label, source, utc_now()),
        )
    if background_id is not None:
        conn.execute(
            "INSERT OR IGNORE INTO backgrounds(sheet_id, name) VALUES (?, ?)",
            (int(background_id), f"sheet {int(background_id)}"),
        )


class Runs(Repository):
    """Runs and their states, the catalogue (parts, instances, sheets) and reference frames."""

    # --- catalogue -------------------------------------------------------------------------------

    def upsert_part(
        self, label: str, name: str | None = None, meta: dict[str, Any] | None = None
    ) -> None:
        """Create or update a part class (its label is the class name the model learns).

        ``meta`` (the part's catalogue attributes, :mod:`capture.store.catalogue`) of None keeps
        the stored ones: a capture run registers every plan part and must not reset them.
        """
        if not label or not label.strip():
            raise StoreError("part label is empty: give the part number, e.g. 3001")
        given = None if meta is None else to_json(meta)
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO parts(label, name, meta) VALUES (?, ?, ?) ON CONFLICT(label) DO UPDATE"
                " SET name = excluded.name, meta = COALESCE(?, parts.meta)",
                (label, name or label, given or "{}", given),
            )

    def upsert_instance(self, instance_id: str, label: str, source: str = "capture") -> None:
        """Create or update a physical part instance (splits are grouped by it)."""
        if not instance_id:
            raise StoreError("instance id is empty: name the physical copy, e.g. 3001-a")
        with self.transaction() as conn:
            ensure_catalogue(conn, label=label)
            conn.execute(
                "INSERT INTO part_instances(instance_id, label, source, created_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(instance_id) DO UPDATE"
                " SET label = excluded.label, source = excluded.source",
                (instance_id, label, source, utc_now()),
            )

    def upsert_background(self, sheet_id: int, name: str, kind: str = "unknown") -> None:
        """Create or update a printed background sheet (its id is the ArUco marker id)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO backgrounds(sheet_id, name, kind) VALUES (?, ?, ?)"
                " ON CONFLICT(sheet_id) DO UPDATE SET name = excluded.name, kind = excluded.kind",
                (int(sheet_id), name, kind),
            )

    def list_parts(self) -> list[dict[str, Any]]:
        return [decode_one(r) for r in self.query("SELECT * FROM parts ORDER BY label")]

    # --- runs ------------------------------------------------------------------------------------

    def create_run(self, name: str, plan_toml: str, plan_json: str, shots_total: int) -> int:
        """Record a new run in state ``pending``; returns its id."""
        if int(shots_total) < 0:
            raise StoreError(f"shots_total {shots_total} must not be negative")
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO runs(name, plan_toml, plan_json, shots_total, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name or "run", plan_toml, to_json(plan_json) or "{}", int(shots_total), utc_now()),
            )
            return lastrowid(cur)

    def get_run(self, run_id: int) -> dict[str, Any]:
        """A run row (``action`` and ``exposure`` decoded); NotFound for an unknown id."""
        rows = self.query("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        if not rows:
            raise NotFound(f"run {run_id} does not exist; `partrig dataset stats` lists the runs")
        return decode_one(rows[0])

    def list_runs(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Runs, newest first, without the plan texts (fetch one with :meth:`get_run`)."""
        rows = self.query(
            "SELECT id, name, state, prompt, action, reason, shots_total, shots_done, created_at,"
            " started_at, ended_at FROM runs ORDER BY id DESC LIMIT ?",
            (int(limit),),
        )
        return [decode_one(r) for r in rows]

    def set_run_state(
        self,
        run_id: int,
        state: str,
        *,
        prompt: str | None = None,
        action: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        """Persist a run's state, its operator prompt and action, and the reason it ended."""
        state = str(getattr(state, "value", state))
        if state not in RUN_STATES:
            raise StoreError(f"run state {state!r} is not one of {', '.join(RUN_STATES)}")
        now = utc_now()
        ends = ", ".join("?" * len(END_RUN_STATES))
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET state = ?, prompt = ?, action = ?, reason = ?,"
                " started_at = CASE WHEN ? = 'running' AND started_at IS NULL"
                " THEN ? ELSE started_at END,"
                f" ended_at = CASE WHEN ? IN ({ends}) THEN ? ELSE NULL END WHERE id = ?",
                (
                    state,
                    prompt,
                    to_json(action),
                    reason,
                    state,
                    now,
                    state,
                    *END_RUN_STATES,
                    now,
                    int(run_id),
                ),
            )
            if cur.rowcount == 0:
                raise NotFound(f"run {run_id} does not exist")

    def set_run_exposure(self, run_id: int, exposure: dict[str, Any]) -> None:
        """Record the exposure and white balance locked for the run (metered once)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE runs SET exposure = ? WHERE id = ?", (to_json(exposure), int(run_id))
            )

    def mark_running_runs_interrupted(self) -> list[int]:
        """At start-up after a crash: runs a dead process left live become ``interrupted``."""
        marks = ", ".join("?" * len(LIVE_RUN_STATES))
        with self.transaction() as conn:
            ids = [
                int(r[0])
                for r in conn.execute(
                    f"SELECT id FROM runs WHERE state IN ({marks})", LIVE_RUN_STATES
                )
            ]
            conn.executemany(
                "UPDATE runs SET state = 'interrupted', prompt = NULL, action = NULL,"
                " reason = COALESCE(reason, 'the process stopped while the run was live')"
                " WHERE id = ?",
                [(i,) for i in ids],
            )
        return ids

    # --- references ------------------------------------------------------------------------------

    def add_reference(
        self,
        run_id: int,
        background_id: int,
        *,
        path: str,
        sha256: str,
        colour_matrix: Any = None,
        exposure: Any = None,
        pose: str | None = None,
    ) -> int:
        """Record a durable empty-turntable frame for a run's background (replacing older ones)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO backgrounds(sheet_id, name) VALUES (?, ?)",
                (int(background_id), f"sheet {int(background_id)}"),
            )
            conn.execute(
                'DELETE FROM "references" WHERE run_id = ? AND background_id = ? AND pose IS ?',
                (int(run_id), int(background_id), pose),
            )
            cur = conn.execute(
                'INSERT INTO "references"(run_id, background_id, pose, path, sha256, colour_matrix,'
                " exposure, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    int(run_id),
                    int(background_id),
                    pose,
                    path,
                    sha256,
                    to_json(colour_matrix),
                    to_json(exposure),
                    utc_now(),
                ),
            )
            return lastrowid(cur)

    def reference_for(
        self, run_id: int, background_id: int, pose: str | None = None
    ) -> dict[str, Any] | None:
        """The run's reference for a background (the pose's own one first), or None."""
        rows = self.query(
            'SELECT * FROM "references" WHERE run_id = ? AND background_id = ?'
            " AND (pose IS ? OR pose IS NULL) ORDER BY pose IS NULL, id DESC LIMIT 1",
            (int(run_id), int(background_id), pose),
        )
        return decode_one(rows[0]) if rows else None
