"""The model registry on the rig: one door to uploads, validation and activation.

The work lives in three small modules, each with one job:

* :mod:`classify.model_upload` checks an upload's parts, stages them durably, records the
  model, and prunes old rejected uploads;
* :mod:`classify.model_validation` runs every check in a child process (an uploaded model is
  untrusted bytes, and this process owns the hardware);
* :mod:`classify.model_activation` puts a validated model live, rolls back, and loads the
  active model at start-up (:class:`~classify.model_activation.ActiveModelSource`), swapping it
  into the running sorter (:class:`~classify.sorter_types.ClassifierSink`).

:class:`ModelRegistry` keeps the one object the web layer and the CLIs hold; its methods and
their errors are those of the modules behind it (see docs/security.md, "Untrusted models").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from classify.model_activation import ActiveModelSource, ModelActivation
from classify.model_check import TestShot, evaluate, labels_match
from classify.model_rows import ModelRows, file_sha256
from classify.model_upload import (
    MAX_FILE_BYTES,
    METRICS_FILE,
    SMALL_FILE_BYTES,
    SNAPSHOT_ID_RE,
    STAGING_PREFIX,
    UPLOAD_FILES,
    ModelUploads,
    check_upload,
    file_cap,
)
from classify.model_validation import ModelValidator, snapshot_classes
from classify.runtime import Classifier
from classify.sorter_types import ClassifierSink
from rig.config import Settings


class ModelRegistry:
    """Uploads, validation, activation and rollback of the sorter's models.

    ``sorter`` is the running :class:`classify.sorter.Sorter` (or None); every activation and
    rollback swaps its classifier.  Thread-safe: activations are serialised, so the model the
    database names active is always the one the sorter holds; one upload is validated at a
    time, so concurrent pushes cannot multiply the validation child's memory.
    """

    def __init__(
        self, store: ModelRows, settings: Settings, sorter: ClassifierSink | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.validation = ModelValidator(store, settings)
        self.uploads = ModelUploads(store, settings, self.validation)
        self.activation = ModelActivation(store, settings, sorter)

    @property
    def sorter(self) -> ClassifierSink | None:
        return self.activation.sorter

    @sorter.setter
    def sorter(self, sorter: ClassifierSink | None) -> None:
        self.activation.sorter = sorter

    # --- uploads ---------------------------------------------------------------------------------

    def upload(self, files: Mapping[str, bytes], who: str) -> dict[str, Any]:
        """Store, validate and record an upload: :meth:`ModelUploads.upload`."""
        return self.uploads.upload(files, who)

    @property
    def max_model_bytes(self) -> int:
        return self.uploads.max_model_bytes

    def _stage(self, files: Mapping[str, bytes]) -> tuple[Path, dict[str, str]]:
        return self.uploads._stage(files)

    def remove_staging_leftovers(self) -> list[str]:
        return self.uploads.remove_staging_leftovers()

    def reject_unfinished(self) -> list[str]:
        return self.uploads.reject_unfinished()

    def prune_rejected(self) -> list[str]:
        return self.uploads.prune_rejected()

    # --- validation ------------------------------------------------------------------------------

    def validate(self, model_id: str) -> tuple[bool, dict[str, Any]]:
        return self.validation.validate(model_id)

    def check_job(self, model_id: str) -> dict[str, Any]:
        return self.validation.check_job(model_id)

    def test_shots(self, snapshot_id: str) -> list[TestShot]:
        return self.validation.test_shots(snapshot_id)

    # --- going live ------------------------------------------------------------------------------

    def activate(self, model_id: str, who: str) -> dict[str, Any]:
        return self.activation.activate(model_id, who)

    def rollback(self, who: str) -> dict[str, Any]:
        return self.activation.rollback(who)

    def load_active(self) -> tuple[Classifier | None, str | None]:
        return self.activation.load_active()


__all__ = [
    "MAX_FILE_BYTES",
    "METRICS_FILE",
    "SMALL_FILE_BYTES",
    "SNAPSHOT_ID_RE",
    "STAGING_PREFIX",
    "UPLOAD_FILES",
    "ActiveModelSource",
    "ModelRegistry",
    "TestShot",
    "check_upload",
    "evaluate",
    "file_cap",
    "file_sha256",
    "labels_match",
    "snapshot_classes",
]
