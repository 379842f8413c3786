"""The migration for imported photos: the ``imports`` table, shot fields and ``source = 'import'``.

Why a module of its own, importing nothing from the store: :mod:`capture.store.schema` appends
this function to ``MIGRATIONS``; keeping the DDL here avoids an import cycle (as for snapshots).

- ``imports``: one row per imported source (a folder, a CSV/JSONL list, another rig's
  snapshot), with the options it ran with and its progress, so a re-run resumes it.
- ``shots.import_id`` / ``origin``: which import a shot came from and its path inside the
  source, so a re-run skips what is already in; ``import_split`` keeps the split another rig's
  snapshot gave it; ``crop_hash`` is the perceptual hash of the part's crop that grouped it.
- ``part_instances.inferred``: 1 for the ``imp-<import>-<n>`` groups inferred from the photos
  (standing in for physical parts), 0 for instances someone named.

NOTE: the first migration wrote ``CHECK (source IN ('capture', 'sorter'))`` on ``shots`` and
``part_instances``.  SQLite cannot alter a CHECK, and rebuilding ``shots`` inside the migration's
transaction would trip the foreign keys of every table that refers to it.  Widening the list
changes no stored byte, which is the case SQLite documents for editing the schema text in place
(``PRAGMA writable_schema``, then bump ``schema_version`` so every connection re-reads it).
"""

from __future__ import annotations

from sqlite_utils import Database

OLD_SOURCES = "source IN ('capture', 'sorter')"
NEW_SOURCES = "source IN ('capture', 'sorter', 'import')"

_DDL = (
    """
    CREATE TABLE imports (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('folder', 'table', 'snapshot')),
        source TEXT NOT NULL,
        options TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'completed')),
        total INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0,
        groups INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    "CREATE UNIQUE INDEX imports_by_source ON imports(kind, source)",
    "ALTER TABLE shots ADD COLUMN import_id INTEGER REFERENCES imports(id)",
    "ALTER TABLE shots ADD COLUMN origin TEXT",
    "ALTER TABLE shots ADD COLUMN import_split TEXT",
    "ALTER TABLE shots ADD COLUMN crop_hash TEXT",
    "CREATE INDEX shots_by_import ON shots(import_id, origin) WHERE import_id IS NOT NULL",
    "ALTER TABLE part_instances ADD COLUMN inferred INTEGER NOT NULL DEFAULT 0",
)


def v_imports(db: Database) -> None:
    """Allow ``source = 'import'``, then add the imports table and the shot fields."""
    conn = db.conn
    version = int(conn.execute("PRAGMA schema_version").fetchone()[0])
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?) "
            "WHERE type = 'table' AND name IN ('shots', 'part_instances')",
            (OLD_SOURCES, NEW_SOURCES),
        )
        conn.execute(f"PRAGMA schema_version = {version + 1:d}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    # NOTE: a full integrity_check would read every page of a million-shot store; the edit
    # touched only the schema text, so re-parsing both tables proves it.
    conn.execute("SELECT source FROM shots LIMIT 0").fetchall()
    conn.execute("SELECT source FROM part_instances LIMIT 0").fetchall()
    for statement in _DDL:
        conn.execute(statement)
