"""The migration that adds the snapshot tables.

Why a module of its own, importing nothing from the store: :mod:`capture.store.schema` appends
this function to ``MIGRATIONS`` at import time, and the mixin in :mod:`capture.store.snapshots`
imports the store's base (which imports the schema); keeping the DDL here breaks that cycle.

Tables:

- ``snapshots``: one row per frozen dataset version, with its whole manifest as JSON.
- ``snapshot_instances``: the split each group (a part instance, or an instance's session or
  pose for a weaker split) got in each snapshot; the next snapshot keeps these, so an instance
  never moves between splits across versions.
- ``snapshot_shots``: which shot is in which split of which snapshot; model validation reads the
  held-out test split from here.  NOTE: its columns are declared in primary-key order:
  SQLite 3.40's ``quick_check`` wrongly reports NULLs in a WITHOUT ROWID table otherwise.
"""

from __future__ import annotations

from sqlite_utils import Database

_DDL = (
    """
    CREATE TABLE snapshots (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        group_by TEXT NOT NULL,
        seed INTEGER NOT NULL,
        weaker INTEGER NOT NULL DEFAULT 0,
        shots INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        manifest TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE snapshot_instances (
        snapshot_id TEXT NOT NULL REFERENCES snapshots(id),
        group_key TEXT NOT NULL,
        label TEXT NOT NULL,
        split TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
        shots INTEGER NOT NULL,
        PRIMARY KEY (snapshot_id, group_key)
    )
    """,
    "CREATE INDEX snapshot_instances_by_key ON snapshot_instances(group_key, snapshot_id)",
    """
    CREATE TABLE snapshot_shots (
        snapshot_id TEXT NOT NULL REFERENCES snapshots(id),
        split TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
        shot_id INTEGER NOT NULL REFERENCES shots(id),
        PRIMARY KEY (snapshot_id, split, shot_id)
    ) WITHOUT ROWID
    """,
)


def v_snapshots(db: Database) -> None:
    """Snapshots, the split of every group in each, and the shots of each split."""
    for statement in _DDL:
        db.conn.execute(statement)
