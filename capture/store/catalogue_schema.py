"""The migration for the part catalogue's attributes, per-shot overrides and re-measure jobs.

Why this shape:

- A part's attributes (category, colour, head type, nominal length...) live in the existing
  ``parts.meta`` JSON object, one flat ``{name: value}``: the column was there from the start
  and nothing else used it, and a part has a few attributes, read whole.
- A shot inherits its part's attributes; a person may override one for one shot (this screw's
  finish is black, not zinc).  Overrides are rows of ``shot_attributes``, one per
  ``(shot, name)``: the browse filter and the exports join them by shot id, and an undo
  restores exactly one row.  ``value`` has no declared type so SQLite keeps what was given:
  REAL for a number, TEXT for a word (``json_extract`` on ``parts.meta`` gives the same types,
  so the two compare alike).
- ``label_actions.kind`` widens to ``set_attribute``: an attribute edit is one undoable action
  of the person's history, the same stack the labelling station's accept and discard use.
  As in :mod:`capture.store.label_schema`, widening a CHECK list changes no stored byte, so the
  schema text is edited in place.
- ``measure_jobs``: one row per ``partrig dataset measure`` (its scope, when it started, how
  far it got), so an interrupted re-measure resumes instead of starting again.
"""

from __future__ import annotations

from sqlite_utils import Database

OLD_KIND_CHECK = "kind IN ('accept', 'discard')"
NEW_KIND_CHECK = "kind IN ('accept', 'discard', 'set_attribute')"

_DDL = (
    """
    CREATE TABLE shot_attributes (
        shot_id INTEGER NOT NULL REFERENCES shots(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value NOT NULL,
        PRIMARY KEY (shot_id, name)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX shot_attributes_by_value ON shot_attributes(name, value)",
    """
    CREATE TABLE measure_jobs (
        id INTEGER PRIMARY KEY,
        scope TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        total INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        who TEXT NOT NULL
    )
    """,
    "CREATE INDEX measure_jobs_open ON measure_jobs(scope, finished_at)",
)


def v_catalogue(db: Database) -> None:
    """Widen ``label_actions.kind``; add ``shot_attributes`` and ``measure_jobs``."""
    conn = db.conn
    version = int(conn.execute("PRAGMA schema_version").fetchone()[0])
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?) "
            "WHERE type = 'table' AND name = 'label_actions'",
            (OLD_KIND_CHECK, NEW_KIND_CHECK),
        )
        conn.execute(f"PRAGMA schema_version = {version + 1:d}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    conn.execute("SELECT kind FROM label_actions LIMIT 0").fetchall()
    for statement in _DDL:
        conn.execute(statement)
