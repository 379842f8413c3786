"""What the model registry's parts need of the dataset store: the ``models`` rows and files.

Why a Protocol: upload, validation and activation (:mod:`classify.model_upload`,
:mod:`classify.model_validation`, :mod:`classify.model_activation`) are tested and typed
against this seam, not against the whole store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from rig.errors import ModelError

#: A model's row as the store returns it (id, state, labels, files with their sha256...).
ModelRow = dict[str, Any]


class ModelRows(Protocol):
    """The store's model rows, their folders under ``models/``, and read-only queries."""

    @property
    def data_dir(self) -> Path: ...

    def add_model(
        self,
        staged_dir: Path,
        *,
        files: list[dict[str, Any]],
        labels: list[str],
        snapshot_id: str | None,
        metrics: dict[str, Any],
        who: str,
    ) -> str: ...

    def model_dir(self, model_id: str) -> Path: ...

    def get_model(self, model_id: str) -> ModelRow: ...

    def list_models(self, limit: int = 200) -> list[ModelRow]: ...

    def active_model(self) -> ModelRow | None: ...

    def set_model_validation(
        self, model_id: str, passed: bool, validation: dict[str, Any]
    ) -> None: ...

    def remove_rejected_model(self, model_id: str) -> None: ...

    def activate_model(self, model_id: str, who: str) -> dict[str, Any]: ...

    def rollback_model(self, who: str) -> dict[str, Any]: ...

    def rollback_target(self) -> str | None: ...

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]: ...


def file_sha256(model: ModelRow, name: str) -> str:
    """The sha256 recorded at upload for one of a model's files."""
    for entry in model.get("files") or []:
        if entry.get("name") == name:
            return str(entry["sha256"])
    raise ModelError(f"{model['id']} has no recorded {name}; push the model again")
