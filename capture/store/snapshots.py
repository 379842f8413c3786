"""Snapshot rows: recording a frozen dataset version, and the split memory across versions.

Why the store remembers splits: a part instance must keep its split in every later snapshot, or
a model trained on version 2 would be tested on parts it saw in version 1's training set.  The
assignment of every group is recorded with its snapshot, and :meth:`previous_splits` hands the
latest one back to :func:`capture.snapshots.splits.assign_splits`.

The files of a snapshot are written and renamed into place by :mod:`capture.snapshots.build` before
:meth:`record_snapshot` commits its rows (the same order as shots: durable files, then rows).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from capture.store.base import Repository
from rig.errors import NotFound


class Snapshots(Repository):
    """Recorded snapshots, their groups and shots, and the split memory across versions."""

    def snapshot_ids(self) -> list[str]:
        """Every recorded snapshot id, oldest first."""
        return [r["id"] for r in self.query("SELECT id FROM snapshots ORDER BY id")]

    def previous_splits(self, group_by: str) -> dict[str, str]:
        """The latest recorded split of every group key, from snapshots grouped the same way."""
        rows = self.query(
            "SELECT si.group_key, si.split FROM snapshot_instances si"
            " JOIN snapshots s ON s.id = si.snapshot_id WHERE s.group_by = ? ORDER BY s.id",
            (group_by,),
        )
        # NOTE: ordered by snapshot id, so a later snapshot's entry overwrites an earlier one.
        return {r["group_key"]: r["split"] for r in rows}

    def record_snapshot(
        self,
        manifest: dict[str, Any],
        groups: Iterable[tuple[str, str, str, int]],
        shot_splits: Iterable[tuple[int, str]],
    ) -> None:
        """Commit a snapshot, its groups ``(key, label, split, shots)`` and its shots, at once."""
        rules = manifest["rules"]
        size = sum(int(f["size"]) for f in manifest["files"])
        sid = manifest["id"]
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO snapshots(id, created_at, group_by, seed, weaker, shots, bytes,"
                " manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sid,
                    manifest["created_at"],
                    rules["group_by"],
                    int(rules["seed"]),
                    int(bool(rules["weaker"])),
                    int(manifest["counts"]["total"]),
                    size,
                    json.dumps(manifest, separators=(",", ":")),
                ),
            )
            conn.executemany(
                "INSERT INTO snapshot_instances(snapshot_id, group_key, label, split, shots)"
                " VALUES (?, ?, ?, ?, ?)",
                ((sid, key, label, split, int(n)) for key, label, split, n in groups),
            )
            conn.executemany(
                "INSERT INTO snapshot_shots(snapshot_id, shot_id, split) VALUES (?, ?, ?)",
                ((sid, int(shot_id), split) for shot_id, split in shot_splits),
            )

    def snapshot_rows(self) -> list[dict[str, Any]]:
        """One summary per snapshot (no manifest), oldest first."""
        rows = self.query(
            "SELECT id, created_at, group_by, seed, weaker, shots, bytes FROM snapshots ORDER BY id"
        )
        for row in rows:
            row["weaker"] = bool(row["weaker"])
        return rows

    def snapshot_manifest(self, snapshot_id: str) -> dict[str, Any]:
        """The manifest recorded with a snapshot."""
        raw = self.scalar("SELECT manifest FROM snapshots WHERE id = ?", (snapshot_id,))
        if raw is None:
            raise NotFound(
                f"snapshot {snapshot_id} does not exist: list them with `partrig dataset snapshots`"
            )
        return json.loads(raw)

    def snapshot_shot_ids(self, snapshot_id: str, split: str) -> list[int]:
        """The shot ids of one split of a snapshot, ascending."""
        self.snapshot_manifest(snapshot_id)  # NOTE: raises NotFound for an unknown id
        rows = self.db.execute(
            "SELECT shot_id FROM snapshot_shots WHERE snapshot_id = ? AND split = ?"
            " ORDER BY shot_id",
            (snapshot_id, split),
        ).fetchall()
        return [int(r[0]) for r in rows]
