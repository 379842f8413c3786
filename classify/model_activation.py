"""Putting a validated model live: activation, rollback, and the active model at start-up.

Why apart from uploads (:mod:`classify.model_upload`): activation loads a model into this
process, which owns the hardware, so it reads only a model whose state says it passed
validation, and only the bytes whose sha256 equals the one recorded at upload.  Every load
checks the model's state first: a model that is not validated is refused (409) unread.

Activating loads the model first and only then records the change, so a model that cannot load
never becomes the recorded active model; the new classifier is then swapped into the running
sorter (:class:`classify.sorter_types.ClassifierSink`) without a restart.  Rollback is one call.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any, Protocol

from capture.store.models import ACTIVATABLE_STATES
from classify.model_rows import ModelRow, ModelRows, file_sha256
from classify.open_set import MODEL_JSON, ModelCard, parse_card
from classify.runtime import MODEL_FILE, Classifier
from classify.sorter_types import ClassifierSink
from rig.config import Settings
from rig.errors import ModelError, RunStateError

log = logging.getLogger("classify.registry")


class ActiveModelSource(Protocol):
    """Where the sorter and the web layer get the active model, loaded: ``(classifier, id)``."""

    def load_active(self) -> tuple[Classifier | None, str | None]: ...


class ModelActivation:
    """Activation and rollback, serialised, so the model the database names active is always
    the one the sorter holds."""

    def __init__(
        self, store: ModelRows, settings: Settings, sorter: ClassifierSink | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.sorter = sorter
        self._lock = threading.Lock()

    def activate(self, model_id: str, who: str) -> dict[str, Any]:
        """Make ``model_id`` active and swap it into the running sorter; returns the record.

        The state is checked before the file is read: a model that did not pass validation
        (``uploaded``, ``rejected``) is refused with a 409 and never loaded here.
        """
        with self._lock:
            model = self.store.get_model(model_id)
            if model["state"] == "active":
                return {"model_id": model_id, "previous_model_id": None, "changed": False}
            classifier = self._load_validated(model)
            record = self.store.activate_model(model_id, who)
            self._swap(classifier, model_id)
        log.info("%s activated by %s (was %s)", model_id, who, record["previous_model_id"])
        return record

    def rollback(self, who: str) -> dict[str, Any]:
        """Put the previously active model back, in one step; returns the record."""
        with self._lock:
            target = self.store.rollback_target()
            if target is None:
                return self.store.rollback_model(who)  # raises the 409 that says why
            classifier = self._load_validated(self.store.get_model(target))
            record = self.store.rollback_model(who)
            self._swap(classifier, record["model_id"])
        log.info("rolled back to %s by %s", record["model_id"], who)
        return record

    def load_active(self) -> tuple[Classifier | None, str | None]:
        """The active model, loaded, for the sorter at start-up: ``(classifier, id)``."""
        active = self.store.active_model()
        if active is None:
            return None, None
        return self._load_validated(active), active["id"]

    def _load_validated(self, model: ModelRow) -> Classifier:
        """Load a model into this process: only a validated one, only the bytes validated.

        Raises RunStateError (409) for any other state, and ModelError when model.tflite no
        longer has the sha256 recorded at upload (the child validated exactly those bytes).
        """
        model_id = model["id"]
        if model["state"] not in (*ACTIVATABLE_STATES, "active"):
            raise RunStateError(
                f"{model_id} is {model['state']}: only a validated model can go live; upload "
                "a model that passes validation"
            )
        path = self.store.model_dir(model_id) / MODEL_FILE
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read {path}: {exc.strerror}") from None
        if hashlib.sha256(content).hexdigest() != file_sha256(model, MODEL_FILE):
            raise ModelError(
                f"{model_id}'s model.tflite differs from the file validated at upload; it is "
                "not loaded: push the model again"
            )
        card = self._card(model)
        return Classifier.from_bytes(content, model["labels"], self._threads(), card=card)

    def _card(self, model: ModelRow) -> ModelCard | None:
        """The model's model.json (only the bytes recorded at upload), or None without one."""
        if not any(f.get("name") == MODEL_JSON for f in model.get("files") or []):
            return None
        path = self.store.model_dir(model["id"]) / MODEL_JSON
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read {path}: {exc.strerror}") from None
        if hashlib.sha256(data).hexdigest() != file_sha256(model, MODEL_JSON):
            raise ModelError(
                f"{model['id']}'s model.json differs from the file validated at upload; push "
                "the model again"
            )
        return parse_card(data, f"{model['id']}/{MODEL_JSON}")

    def _swap(self, classifier: Classifier, model_id: str) -> None:
        if self.sorter is not None:
            self.sorter.set_classifier(classifier, model_id)

    def _threads(self) -> int:
        return int(self.settings.sorter.num_threads)
