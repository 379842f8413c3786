"""The migration that adds the sorter's tables (``decisions``, ``review_items``).

Why a module of its own: :mod:`capture.store.schema` lists every migration, and it must import
this function without importing the store's mixins (which themselves import the schema).
"""

from __future__ import annotations

from sqlite_utils import Database

REVIEW_STATES = ("open", "labelled", "discarded")
#: Why a part went to its bin: the model was sure and the label has a bin; it was not sure; it
#: was sure of a label that has no bin; or no model was active.
DECISION_REASONS = ("confident", "uncertain", "unmapped", "no_model")


def v_sorting(db: Database) -> None:
    """Every sorting decision, and the review queue of uncertain parts."""
    reasons = ", ".join(f"'{r}'" for r in DECISION_REASONS)
    states = ", ".join(f"'{s}'" for s in REVIEW_STATES)
    statements = [
        f"""CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            label TEXT NOT NULL,
            confidence REAL NOT NULL,
            top_k TEXT NOT NULL DEFAULT '[]',
            bin INTEGER NOT NULL,
            reason TEXT NOT NULL CHECK (reason IN ({reasons})),
            model_id TEXT,
            crop_path TEXT,
            bbox TEXT,
            crop_bbox TEXT,
            colour_matrix TEXT,
            truth TEXT,
            latency_ms REAL
        )""",
        "CREATE INDEX decisions_by_label ON decisions(label, id)",
        f"""CREATE TABLE review_items (
            id INTEGER PRIMARY KEY,
            decision_id INTEGER NOT NULL UNIQUE REFERENCES decisions(id),
            crop_path TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ({states})),
            label TEXT,
            shot_id INTEGER REFERENCES shots(id),
            created_at TEXT NOT NULL,
            resolved_at TEXT,
            resolved_by TEXT
        )""",
        "CREATE INDEX review_items_by_state ON review_items(state, id)",
    ]
    # NOTE: db.conn.execute, never sqlite-utils' table helpers: they would commit on their own
    # and break the one-transaction-per-migration rule.
    for sql in statements:
        db.conn.execute(sql)


def v_decision_drops(db: Database) -> None:
    """Decisions record the simulated feeder's drop id instead of the simulator's truth.

    Why: ground truth lives in the simulator's drop log, joined by drop id, never in product
    code (contracts, "Models and edits").  The old ``truth`` column stays, so rows written
    before this migration still read; nothing writes it any more.
    """
    db.conn.execute("ALTER TABLE decisions ADD COLUMN drop_id TEXT")
