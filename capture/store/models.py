"""Uploaded models, their validation, and every activation: the rows behind the model registry.

Why the store keeps this and not a file next to the models: which model sorts parts is rig
state that must survive a restart and must change in one step.  Activating a model retires the
previous one, marks the new one ``active`` and records who did it, all in one transaction, so
a crash leaves either the old model active or the new one, never two or none by accident.

The files themselves are written by :mod:`classify.registry` under ``models/<id>/`` before the
row naming them is committed (the same order as shots: durable file, then row).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from capture.store.base import Repository
from capture.store.files import fsync_dir, os_error
from capture.store.records import to_json, utc_now
from rig.errors import NotFound, RunStateError, StoreError

#: Models that passed validation once and may (again) be made active.
ACTIVATABLE_STATES = ("validated", "retired")
MODELS_DIR = "models"
MODEL_ID_RE = re.compile(r"^model-(\d{4,})$")
_MODEL_JSON = ("files", "labels", "metrics", "validation")


def model_number(model_id: str) -> int:
    match = MODEL_ID_RE.match(model_id)
    if match is None:
        raise NotFound(f"{model_id!r} is not a model id; model ids look like model-0001")
    return int(match.group(1))


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in _MODEL_JSON:
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


class Models(Repository):
    """Model rows: uploads, validation results, activations and rollbacks."""

    # --- adding ----------------------------------------------------------------------------------

    def add_model(
        self,
        staged_dir: Path,
        *,
        files: list[dict[str, Any]],
        labels: list[str],
        snapshot_id: str | None,
        metrics: dict[str, Any],
        who: str,
    ) -> str:
        """Move a fully written, fsynced upload folder to ``models/<id>/`` and record it.

        The id is the next ``model-NNNN`` after every id in the table *and* on disk: a crash
        between the rename and the commit leaves a folder no row names, and its number is then
        skipped rather than reused (``partrig`` never overwrites model files).
        """
        root = self.data_dir / MODELS_DIR
        with self.transaction() as conn:
            number = self._next_model_number(conn, root)
            model_id = f"model-{number:04d}"
            final = root / model_id
            try:
                staged_dir.rename(final)
                fsync_dir(root, self.fs)
            except OSError as exc:
                raise os_error(exc, f"storing {model_id}", root) from None
            conn.execute(
                "INSERT INTO models(id, uploaded_at, uploaded_by, files, labels, snapshot_id,"
                " metrics, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'uploaded')",
                (
                    model_id,
                    utc_now(),
                    who,
                    to_json(files),
                    to_json(list(labels)),
                    snapshot_id,
                    to_json(metrics),
                ),
            )
        return model_id

    @staticmethod
    def _next_model_number(conn: sqlite3.Connection, root: Path) -> int:
        numbers = [model_number(r[0]) for r in conn.execute("SELECT id FROM models")]
        if root.is_dir():
            numbers += [int(m.group(1)) for p in root.iterdir() if (m := MODEL_ID_RE.match(p.name))]
        return max(numbers, default=0) + 1

    def model_dir(self, model_id: str) -> Path:
        model_number(model_id)
        return self.data_dir / MODELS_DIR / model_id

    def set_model_validation(self, model_id: str, passed: bool, validation: dict[str, Any]) -> None:
        """Record the validation result; only an ``uploaded`` model is validated (once)."""
        state = "validated" if passed else "rejected"
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE models SET state = ?, validation = ? WHERE id = ? AND state = 'uploaded'",
                (state, to_json(validation), model_id),
            )
            if cur.rowcount == 0:
                self.get_model(model_id)
                raise RunStateError(f"{model_id} was already validated")

    def remove_rejected_model(self, model_id: str) -> None:
        """Delete a rejected upload, files and row (the registry's quota prunes with this).

        Crash-safe in this order: the folder is first renamed to an ``.upload-`` name, which
        start-up removes as an unfinished upload; then the row goes; then the files.
        """
        import shutil

        root = self.data_dir / MODELS_DIR
        folder = root / model_id
        doomed = root / f".upload-pruned-{model_id}.tmp"
        with self.transaction() as conn:
            if self._model_state(conn, model_id) != "rejected":
                raise RunStateError(f"{model_id} is not rejected; only rejected uploads are pruned")
            if folder.exists():
                try:
                    folder.rename(doomed)
                    fsync_dir(root, self.fs)
                except OSError as exc:
                    raise os_error(exc, f"pruning {model_id}", root) from None
            conn.execute("DELETE FROM models WHERE id = ?", (model_id,))
        shutil.rmtree(doomed, ignore_errors=True)

    # --- reading ---------------------------------------------------------------------------------

    def get_model(self, model_id: str) -> dict[str, Any]:
        model_number(model_id)
        rows = self.query("SELECT * FROM models WHERE id = ?", (model_id,))
        if not rows:
            raise NotFound(f"{model_id} does not exist; GET /api/models lists the models")
        return _decode(rows[0])

    def list_models(self, limit: int = 200) -> list[dict[str, Any]]:
        """Models, newest first."""
        rows = self.query(
            "SELECT * FROM models ORDER BY uploaded_at DESC, id DESC LIMIT ?", (limit,)
        )
        return [_decode(r) for r in rows]

    def active_model(self) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM models WHERE state = 'active'")
        return _decode(rows[0]) if rows else None

    def model_activations(self, limit: int = 200) -> list[dict[str, Any]]:
        """Every activation and rollback, newest first."""
        return self.query("SELECT * FROM model_activations ORDER BY id DESC LIMIT ?", (limit,))

    # --- going live ------------------------------------------------------------------------------

    def activate_model(self, model_id: str, who: str) -> dict[str, Any]:
        """Make a validated (or previously active) model the active one; returns the record.

        Raises RunStateError (409) for a model that did not pass validation.  Activating the
        model that is already active changes nothing and records nothing.
        """
        with self.transaction() as conn:
            state = self._model_state(conn, model_id)
            if state == "active":
                return {"model_id": model_id, "previous_model_id": None, "changed": False}
            if state not in ACTIVATABLE_STATES:
                raise RunStateError(
                    f"{model_id} is {state}: only a validated model can go live; upload a model "
                    "that passes validation"
                )
            previous = self._swap_active(conn, model_id)
            self._record(conn, model_id, previous, who, "activate")
        return {"model_id": model_id, "previous_model_id": previous, "changed": True}

    def rollback_model(self, who: str) -> dict[str, Any]:
        """Put back the model that was active before the current one, in one step.

        The target is the model the current one replaced when it was last *activated*, so
        repeated rollbacks walk back through the history instead of toggling between two.
        """
        with self.transaction() as conn:
            row = conn.execute("SELECT id FROM models WHERE state = 'active'").fetchone()
            if row is None:
                raise RunStateError("no model is active, so there is nothing to roll back")
            current = row[0]
            back = conn.execute(
                "SELECT previous_model_id FROM model_activations WHERE model_id = ?"
                " AND action = 'activate' ORDER BY id DESC LIMIT 1",
                (current,),
            ).fetchone()
            target = back[0] if back else None
            if target is None:
                raise RunStateError(
                    f"{current} was the first model activated: there is no previous model to "
                    "roll back to; activate another validated model instead"
                )
            self._swap_active(conn, target)
            self._record(conn, target, current, who, "rollback")
        return {"model_id": target, "previous_model_id": current, "changed": True}

    def rollback_target(self) -> str | None:
        """The model :meth:`rollback_model` would make active now (None when there is none)."""
        active = self.active_model()
        if active is None:
            return None
        return self.scalar(
            "SELECT previous_model_id FROM model_activations WHERE model_id = ?"
            " AND action = 'activate' ORDER BY id DESC LIMIT 1",
            (active["id"],),
        )

    @staticmethod
    def _model_state(conn: sqlite3.Connection, model_id: str) -> str:
        model_number(model_id)
        row = conn.execute("SELECT state FROM models WHERE id = ?", (model_id,)).fetchone()
        if row is None:
            raise NotFound(f"{model_id} does not exist; GET /api/models lists the models")
        return str(row[0])

    @staticmethod
    def _swap_active(conn: sqlite3.Connection, model_id: str) -> str | None:
        row = conn.execute("SELECT id FROM models WHERE state = 'active'").fetchone()
        previous = row[0] if row else None
        if previous is not None:
            conn.execute("UPDATE models SET state = 'retired' WHERE id = ?", (previous,))
        conn.execute("UPDATE models SET state = 'active' WHERE id = ?", (model_id,))
        return previous

    @staticmethod
    def _record(
        conn: sqlite3.Connection, model_id: str, previous: str | None, who: str, action: str
    ) -> None:
        if not who:
            raise StoreError("say who activates the model: every activation is recorded")
        conn.execute(
            "INSERT INTO model_activations(model_id, previous_model_id, at, who, action)"
            " VALUES (?, ?, ?, ?, ?)",
            (model_id, previous, utc_now(), who, action),
        )
