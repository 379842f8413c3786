"""Incidents and the latched rig fault, kept in the database so they survive a restart.

Why in the database: a fault latched just before a crash (or a power cut) must still block the
rig when it comes back, until an operator clears it; an incident must still be on the page for
someone to acknowledge.  Both are plain committed rows under ``synchronous=FULL``.
"""

from __future__ import annotations

from typing import Any

from capture.store.base import Repository
from capture.store.records import lastrowid, utc_now
from rig.errors import NotFound, StoreError


class Events(Repository):
    """Incidents for the operator and the latched rig fault."""

    # --- incidents -------------------------------------------------------------------------------

    def add_incident(self, kind: str, message: str, run_id: int | None = None) -> int:
        """Record something the operator should know about (a failed run, a full disk)."""
        if not kind:
            raise StoreError("incident kind is empty: say what happened, e.g. capture_failed")
        with self.transaction() as conn:
            if (
                run_id is not None
                and conn.execute("SELECT 1 FROM runs WHERE id = ?", (int(run_id),)).fetchone()
                is None
            ):
                run_id = None  # NOTE: an incident must never be lost for naming an unknown run.
            cur = conn.execute(
                "INSERT INTO incidents(at, kind, message, run_id) VALUES (?, ?, ?, ?)",
                (utc_now(), kind, str(message), run_id),
            )
            return lastrowid(cur)

    def list_incidents(
        self, *, unacknowledged: bool = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Incidents, newest first; only the open ones with ``unacknowledged=True``."""
        where = "WHERE acknowledged_at IS NULL" if unacknowledged else ""
        return self.query(
            f"SELECT * FROM incidents {where} ORDER BY id DESC LIMIT ?", (int(limit),)
        )

    def acknowledge_incident(self, incident_id: int, who: str) -> None:
        """Mark an incident seen by ``who``; acknowledging twice keeps the first."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT acknowledged_at FROM incidents WHERE id = ?", (int(incident_id),)
            ).fetchone()
            if row is None:
                raise NotFound(f"incident {incident_id} does not exist")
            if row[0] is None:
                conn.execute(
                    "UPDATE incidents SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
                    (utc_now(), who, int(incident_id)),
                )

    # --- the latched fault -----------------------------------------------------------------------

    def latch_fault(self, reason: str) -> dict[str, Any]:
        """Latch the rig fault; while one is latched the first reason stands and is returned."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT id FROM faults WHERE cleared_at IS NULL ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO faults(reason, since) VALUES (?, ?)",
                    (str(reason) or "fault", utc_now()),
                )
        fault = self.active_fault()
        if fault is None:
            raise StoreError("the fault just latched is not in the database")
        return fault

    def active_fault(self) -> dict[str, Any] | None:
        """The latched fault (id, reason, since), or None when the rig may run."""
        rows = self.query(
            "SELECT id, reason, since FROM faults WHERE cleared_at IS NULL ORDER BY id LIMIT 1"
        )
        return rows[0] if rows else None

    def clear_fault(self, who: str) -> bool:
        """Clear the latched fault, recording who did; False when none was latched."""
        if not who:
            raise StoreError("say who clears the fault: it is recorded")
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE faults SET cleared_at = ?, cleared_by = ? WHERE cleared_at IS NULL",
                (utc_now(), who),
            )
            return cur.rowcount > 0

    def fault_history(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM faults ORDER BY id DESC LIMIT ?", (int(limit),))
