"""The database schema as numbered migrations, applied in order, each in its own transaction.

Why numbered functions and ``PRAGMA user_version``: the database on a rig outlives many software
updates.  Each migration moves the schema from version N-1 to N and is never edited once
released; a later issue adds a function to :data:`MIGRATIONS` (snapshots, models, sorter
decisions, the review queue) and :func:`migrate` applies exactly the missing ones.  The version
number and the schema change commit together, so a crash mid-migration leaves the old version.

To add a migration: write ``def _vN_what(db: Database) -> None`` below (use :func:`run_script`
or ``db.execute``; never sqlite-utils' table helpers, which commit on their own) and append it
to :data:`MIGRATIONS`.  That is all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sqlite_utils import Database

from capture.store.catalogue_schema import v_catalogue
from capture.store.imports_schema import v_imports
from capture.store.label_schema import v_label_station
from capture.store.measure_schema import v_measurements
from capture.store.models_schema import v_models
from capture.store.snapshot_schema import v_snapshots
from capture.store.sorting_schema import v_decision_drops, v_sorting
from rig.errors import StoreError

#: A run's states; the same strings as capture.runs.state.RunState.
RUN_STATES = (
    "pending",
    "running",
    "awaiting_operator",
    "paused",
    "completed",
    "aborted",
    "failed",
    "interrupted",
)
#: States a dead process may have left behind; start-up marks these interrupted.
LIVE_RUN_STATES = ("running", "awaiting_operator", "paused")
END_RUN_STATES = ("completed", "aborted", "failed")
SHOT_SOURCES = ("capture", "sorter")  # v_imports adds "import"

Migration = Callable[[Database], None]


def _v1_core(db: Database) -> None:
    """Parts, instances, backgrounds, runs, references, shots, edits, incidents, faults."""
    states = ", ".join(f"'{s}'" for s in RUN_STATES)
    sources = ", ".join(f"'{s}'" for s in SHOT_SOURCES)
    run_script(
        db,
        f"""
        CREATE TABLE parts (
            label TEXT PRIMARY KEY,
            name TEXT,
            meta TEXT NOT NULL DEFAULT '{{}}'
        );
        CREATE TABLE part_instances (
            instance_id TEXT PRIMARY KEY,
            label TEXT NOT NULL REFERENCES parts(label),
            source TEXT NOT NULL DEFAULT 'capture' CHECK (source IN ({sources})),
            created_at TEXT NOT NULL
        );
        CREATE TABLE backgrounds (
            sheet_id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT 'unknown'
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            plan_toml TEXT NOT NULL,
            plan_json TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ({states})),
            prompt TEXT,
            action TEXT,
            reason TEXT,
            shots_total INTEGER NOT NULL DEFAULT 0,
            shots_done INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            started_at TEXT,
            ended_at TEXT,
            exposure TEXT
        );
        CREATE INDEX runs_by_state ON runs(state);
        CREATE TABLE "references" (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            background_id INTEGER NOT NULL REFERENCES backgrounds(sheet_id),
            pose TEXT,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            colour_matrix TEXT,
            exposure TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX references_by_run ON "references"(run_id, background_id);
        CREATE TABLE shots (
            id INTEGER PRIMARY KEY,
            run_id INTEGER REFERENCES runs(id),
            shot_index INTEGER,
            label TEXT NOT NULL REFERENCES parts(label),
            instance_id TEXT NOT NULL REFERENCES part_instances(instance_id),
            pose TEXT,
            background_id INTEGER REFERENCES backgrounds(sheet_id),
            angle_cmd REAL,
            angle_measured REAL,
            light_level REAL,
            exposure_us INTEGER,
            analogue_gain REAL,
            colour_gains TEXT,
            colour_matrix TEXT,
            path TEXT NOT NULL UNIQUE,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            width INTEGER,
            height INTEGER,
            format TEXT,
            mask_path TEXT,
            bbox_x INTEGER,
            bbox_y INTEGER,
            bbox_w INTEGER,
            bbox_h INTEGER,
            captured_at TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT 'capture' CHECK (source IN ({sources})),
            thumb_path TEXT,
            deleted_at TEXT,
            UNIQUE (run_id, shot_index)
        );
        -- NOTE: every browse query filters deleted_at IS NULL and sorts by (captured_at, id),
        -- so these partial indexes serve each filter as a keyset range scan.
        CREATE INDEX shots_by_time ON shots(captured_at, id) WHERE deleted_at IS NULL;
        CREATE INDEX shots_by_label_bg_time
            ON shots(label, background_id, captured_at, id) WHERE deleted_at IS NULL;
        CREATE INDEX shots_by_bg_time
            ON shots(background_id, captured_at, id) WHERE deleted_at IS NULL;
        CREATE INDEX shots_by_run_time ON shots(run_id, captured_at, id) WHERE deleted_at IS NULL;
        CREATE INDEX shots_by_instance_time
            ON shots(instance_id, captured_at, id) WHERE deleted_at IS NULL;
        CREATE TABLE shot_edits (
            id INTEGER PRIMARY KEY,
            shot_id INTEGER NOT NULL REFERENCES shots(id),
            action TEXT NOT NULL CHECK (action IN ('relabel', 'delete')),
            old TEXT,
            new TEXT,
            who TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX shot_edits_by_shot ON shot_edits(shot_id);
        CREATE TABLE incidents (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            run_id INTEGER REFERENCES runs(id),
            acknowledged_at TEXT,
            acknowledged_by TEXT
        );
        CREATE INDEX incidents_open ON incidents(acknowledged_at, at);
        CREATE TABLE faults (
            id INTEGER PRIMARY KEY,
            reason TEXT NOT NULL,
            since TEXT NOT NULL,
            cleared_at TEXT,
            cleared_by TEXT
        );
        CREATE INDEX faults_active ON faults(cleared_at);
        """,
    )


#: Every migration in order; ``MIGRATIONS[i]`` takes the schema to version ``i + 1``.
MIGRATIONS: list[Migration] = [_v1_core, v_models, v_snapshots, v_sorting, v_imports]
MIGRATIONS.append(v_label_station)
MIGRATIONS.append(v_measurements)
MIGRATIONS.append(v_decision_drops)
MIGRATIONS.append(v_catalogue)


def schema_version(db: Database) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: Database, migrations: list[Migration] | None = None) -> int:
    """Apply the missing migrations, each in one ``BEGIN IMMEDIATE`` transaction.

    Returns the schema version reached.

    Refuses a database newer than this software (downgrading would silently misread it).
    """
    steps = MIGRATIONS if migrations is None else migrations
    current = schema_version(db)
    if current > len(steps):
        raise StoreError(
            f"the database has schema version {current} but this partrig knows only up to "
            f"{len(steps)}: upgrade partrig, or point data.dir at another directory"
        )
    conn = db.conn
    for version in range(current + 1, len(steps) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # NOTE: re-read inside the write lock: another process may have migrated meanwhile.
            if schema_version(db) >= version:
                conn.execute("COMMIT")
                continue
            _run_migration(db, steps[version - 1])
            conn.execute(f"PRAGMA user_version = {version:d}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return schema_version(db)


def _run_migration(db: Database, step: Migration) -> None:
    """Run one migration inside the already open transaction, naming it when it fails."""
    try:
        step(db)
    except sqlite3.Error as exc:
        raise StoreError(f"database migration {step.__name__} failed: {exc}") from exc


def run_script(db: Database, sql: str) -> None:
    """Execute a multi-statement script inside the current transaction.

    NOTE: sqlite3's executescript() would COMMIT first and break the one-transaction-per-
    migration rule, so the script is split into statements here.
    """
    for statement in _statements(sql):
        db.conn.execute(statement)


def _statements(sql: str) -> list[str]:
    """Split a script into complete statements (sqlite3.complete_statement knows quoting)."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
