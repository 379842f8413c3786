"""The migration for the labelling station: a field-level ``shot_edits`` log, the label queue,
undoable actions and each person's place in the queue.

Why a module of its own, importing nothing from the store: :mod:`capture.store.schema` appends
:func:`v_label_station` to ``MIGRATIONS`` without importing the store's mixins.

- ``shot_edits`` becomes field-level: every row names the ``field`` it changed (``label``,
  ``deleted_at``) with its ``old`` and ``new`` value, the actions widen to relabel, delete,
  restore, accept, discard and set_attribute, and ``action_id`` ties the rows of one labelling
  action together so an undo can restore exactly what that action changed.
- ``label_queue``: one row per shot or sorter review item that needs a label or a check, with
  the model's top-k and its margin (top-1 minus top-2), so the least certain come first.
- ``label_actions``: what one key press or click did (``detail`` holds every touched item's
  state before and after), ``done``, ``undone`` or ``dropped`` (an undone action that a newer
  action made impossible to redo).
- ``label_cursors``: the queue item each person was last on, so the station resumes there.

NOTE: the first migration wrote ``CHECK (action IN ('relabel', 'delete'))``.  SQLite cannot alter
a CHECK; widening the list changes no stored byte, the case SQLite documents for editing the
schema text in place (as :mod:`capture.store.imports_schema` does for ``source``).
"""

from __future__ import annotations

from sqlite_utils import Database

EDIT_ACTIONS = ("relabel", "delete", "restore", "accept", "discard", "set_attribute")
QUEUE_STATES = ("open", "accepted", "discarded")
ACTION_STATES = ("done", "undone", "dropped")

OLD_CHECK = "action IN ('relabel', 'delete')"
NEW_CHECK = "action IN (" + ", ".join(f"'{a}'" for a in EDIT_ACTIONS) + ")"
_ACTION_STATES_SQL = ", ".join(f"'{s}'" for s in ACTION_STATES)
_QUEUE_STATES_SQL = ", ".join(f"'{s}'" for s in QUEUE_STATES)

_DDL = (
    f"""
    CREATE TABLE label_actions (
        id INTEGER PRIMARY KEY,
        who TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('accept', 'discard')),
        state TEXT NOT NULL DEFAULT 'done' CHECK (state IN ({_ACTION_STATES_SQL})),
        detail TEXT NOT NULL,
        at TEXT NOT NULL,
        undone_at TEXT
    )
    """,
    "CREATE INDEX label_actions_by_who ON label_actions(who, state, id)",
    "ALTER TABLE shot_edits ADD COLUMN field TEXT",
    "ALTER TABLE shot_edits ADD COLUMN action_id INTEGER REFERENCES label_actions(id)",
    # NOTE: the old rows in field-level form: a relabel changed the label; a delete set
    # deleted_at (its old label stays readable on the shot itself).
    "UPDATE shot_edits SET field = 'label' WHERE action = 'relabel'",
    "UPDATE shot_edits SET field = 'deleted_at', old = NULL, new = at WHERE action = 'delete'",
    f"""
    CREATE TABLE label_queue (
        id INTEGER PRIMARY KEY,
        shot_id INTEGER UNIQUE REFERENCES shots(id),
        review_item_id INTEGER UNIQUE REFERENCES review_items(id),
        top_k TEXT NOT NULL DEFAULT '[]',
        margin REAL,
        model_id TEXT,
        state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ({_QUEUE_STATES_SQL})),
        created_at TEXT NOT NULL,
        resolved_at TEXT,
        resolved_by TEXT,
        CHECK (shot_id IS NOT NULL OR review_item_id IS NOT NULL)
    )
    """,
    "CREATE INDEX label_queue_by_margin ON label_queue(state, margin, id)",
    """
    CREATE TABLE label_cursors (
        who TEXT PRIMARY KEY,
        queue_id INTEGER REFERENCES label_queue(id),
        at TEXT NOT NULL
    )
    """,
)


def v_label_station(db: Database) -> None:
    """Widen ``shot_edits``' actions, make it field-level, add the queue, actions and cursors."""
    conn = db.conn
    version = int(conn.execute("PRAGMA schema_version").fetchone()[0])
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?) "
            "WHERE type = 'table' AND name = 'shot_edits'",
            (OLD_CHECK, NEW_CHECK),
        )
        conn.execute(f"PRAGMA schema_version = {version + 1:d}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    conn.execute("SELECT action FROM shot_edits LIMIT 0").fetchall()
    for statement in _DDL:
        conn.execute(statement)
