"""The migration that adds the model registry's tables (``models``, ``model_activations``).

Why a module of its own: :mod:`capture.store.schema` lists every migration, and it must import
this function without importing the store's mixins (which themselves import the schema).
"""

from __future__ import annotations

from sqlite_utils import Database

MODEL_STATES = ("uploaded", "validated", "rejected", "active", "retired")


def v_models(db: Database) -> None:
    """One row per uploaded model, and the append-only history of activations and rollbacks."""
    states = ", ".join(f"'{s}'" for s in MODEL_STATES)
    statements = [
        f"""CREATE TABLE models (
            id TEXT PRIMARY KEY,
            uploaded_at TEXT NOT NULL,
            uploaded_by TEXT,
            files TEXT NOT NULL,
            labels TEXT NOT NULL,
            snapshot_id TEXT,
            metrics TEXT NOT NULL DEFAULT '{{}}',
            state TEXT NOT NULL DEFAULT 'uploaded' CHECK (state IN ({states})),
            validation TEXT
        )""",
        # NOTE: at most one active model, enforced by the database itself.
        "CREATE UNIQUE INDEX models_one_active ON models(state) WHERE state = 'active'",
        """CREATE TABLE model_activations (
            id INTEGER PRIMARY KEY,
            model_id TEXT NOT NULL REFERENCES models(id),
            previous_model_id TEXT REFERENCES models(id),
            at TEXT NOT NULL,
            who TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('activate', 'rollback'))
        )""",
        "CREATE INDEX model_activations_by_model ON model_activations(model_id, id)",
    ]
    # NOTE: conn.execute, not executescript (which would COMMIT the migration's transaction).
    for statement in statements:
        db.conn.execute(statement)
