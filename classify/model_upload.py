"""Model uploads on the rig: check the parts, stage them durably, record them, have them validated.

Why apart from activation (:mod:`classify.model_activation`): an upload is untrusted bytes
from the network and never loaded in this process; it is checked for shape and size here,
written the store's way (each file fsynced into a temporary folder, the folder fsynced and
renamed to ``models/<id>/``, and only then the row committed by the store's ``add_model``),
and judged by :class:`classify.model_validation.ModelValidator` in a child process.  Rejected
uploads are kept for the trainer to read why, within ``models.keep_rejected`` and
``models.rejected_quota_mb``; older ones are pruned, files and row.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from capture.store.files import ensure_dir, fsync_dir, write_durably
from capture.store.models import MODELS_DIR
from classify.model_rows import ModelRows
from classify.model_validation import ModelValidator
from classify.open_set import MAX_MODEL_JSON_BYTES, MODEL_JSON
from classify.runtime import LABELS_FILE, MODEL_FILE
from rig.config import Settings
from rig.errors import ModelError, RigError, RunStateError

log = logging.getLogger("classify.registry")

METRICS_FILE = "metrics.json"
#: Every file an upload may carry, and whether it must.
UPLOAD_FILES: dict[str, bool] = {
    MODEL_FILE: True,
    LABELS_FILE: True,
    METRICS_FILE: True,
    "model-float.tflite": False,
    "confusion.png": False,
    MODEL_JSON: False,
}
#: Fixed caps for the small files; the .tflite files' cap is ``models.max_model_file_mb``.
SMALL_FILE_BYTES = {
    LABELS_FILE: 64 * 1024,
    METRICS_FILE: 2**20,
    "confusion.png": 8 * 2**20,
    MODEL_JSON: MAX_MODEL_JSON_BYTES,
}
#: The most a single part may be, whatever the configuration (the router reads this far only).
MAX_FILE_BYTES = 1024 * 2**20
SNAPSHOT_ID_RE = re.compile(r"^snap-\d{4,}$")
STAGING_PREFIX = ".upload-"


class ModelUploads:
    """Takes uploads: one at a time is validated, so concurrent pushes cannot multiply the
    validation child's memory."""

    def __init__(self, store: ModelRows, settings: Settings, validator: ModelValidator) -> None:
        self.store = store
        self.settings = settings
        self.validator = validator
        self._validating = threading.Lock()

    def upload(self, files: Mapping[str, bytes], who: str) -> dict[str, Any]:
        """Store an upload durably, validate it in a child, and return ``{id, state, validation}``.

        Raises ModelError (422) for an upload that is not a model at all (files missing,
        unknown or too large, metrics.json unreadable), and RunStateError (409) while another
        upload is being validated; a model that is well-formed but fails a check, or crashes
        the validation child, is stored as ``rejected`` with the reason.
        """
        labels, metrics = check_upload(files, self.max_model_bytes)
        if not self._validating.acquire(timeout=5.0):
            raise RunStateError(
                "another model is being validated on this rig; push again when it is done"
            )
        try:
            model_id = self._store_upload(files, labels, metrics, who)
            try:
                passed, validation = self.validator.validate(model_id)
            except RigError as exc:
                # NOTE: never leave a model "uploaded" forever: a check that could not run is a
                # failed check, recorded with its reason.
                passed, validation = False, {"checks": [], "passed": False, "reason": str(exc)}
            self.store.set_model_validation(model_id, passed, validation)
            if not passed:
                try:
                    self.prune_rejected()
                except RigError as exc:
                    # NOTE: the verdict is recorded; a failed prune must not turn it into a 500.
                    log.warning("pruning rejected uploads failed: %s", exc)
        finally:
            self._validating.release()
        log.info("%s uploaded by %s: %s", model_id, who, "validated" if passed else "rejected")
        return {
            "id": model_id,
            "state": "validated" if passed else "rejected",
            "validation": validation,
        }

    @property
    def max_model_bytes(self) -> int:
        return int(self.settings.models.max_model_file_mb) * 2**20

    def _store_upload(
        self, files: Mapping[str, bytes], labels: list[str], metrics: dict[str, Any], who: str
    ) -> str:
        staged, shas = self._stage(files)
        manifest = [
            {"name": name, "sha256": sha, "size": len(files[name])}
            for name, sha in sorted(shas.items())
        ]
        try:
            return str(
                self.store.add_model(
                    staged,
                    files=manifest,
                    labels=labels,
                    snapshot_id=metrics.get("snapshot"),
                    metrics=metrics,
                    who=who,
                )
            )
        finally:
            if staged.exists():
                shutil.rmtree(staged, ignore_errors=True)

    def _stage(self, files: Mapping[str, bytes]) -> tuple[Path, dict[str, str]]:
        """Write every file durably into a fresh temporary folder under ``models/``."""
        root = self.store.data_dir / MODELS_DIR
        ensure_dir(root)
        staged = root / f"{STAGING_PREFIX}{secrets.token_hex(6)}.tmp"
        ensure_dir(staged)
        try:
            shas = {
                name: write_durably(staged / name, bytes(data), sync_dir=False)
                for name, data in files.items()
            }
            fsync_dir(staged)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return staged, shas

    def remove_staging_leftovers(self) -> list[str]:
        """Delete upload folders a crash left behind (no row ever named them)."""
        root = self.store.data_dir / MODELS_DIR
        if not root.is_dir():
            return []
        gone = [p.name for p in root.iterdir() if p.name.startswith(STAGING_PREFIX)]
        for name in gone:
            shutil.rmtree(root / name, ignore_errors=True)
        return gone

    def reject_unfinished(self) -> list[str]:
        """At start-up: reject uploads whose validation never finished (the server stopped)."""
        reason = "validation did not finish: the server stopped while it ran; push the model again"
        stuck = [m["id"] for m in self.store.list_models(limit=10_000) if m["state"] == "uploaded"]
        for model_id in stuck:
            check = {"check": "isolated", "ok": False, "detail": reason}
            self.store.set_model_validation(
                model_id, False, {"checks": [check], "passed": False, "reason": reason}
            )
        return stuck

    def prune_rejected(self) -> list[str]:
        """Delete the oldest rejected uploads beyond ``models.keep_rejected`` or the byte quota.

        The newest rejected upload is always kept, so a trainer can read why its last push
        failed, and the highest model id never disappears (ids are never reused).
        """
        rejected = [
            m for m in self.store.list_models(limit=100_000) if m["state"] == "rejected"
        ]  # newest first
        keep = int(self.settings.models.keep_rejected)
        quota = int(self.settings.models.rejected_quota_mb) * 2**20
        kept, kept_bytes, pruned = 0, 0, []
        for index, model in enumerate(rejected):
            size = sum(int(f.get("size", 0)) for f in model.get("files") or [])
            if index == 0 or (kept < keep and kept_bytes + size <= quota):
                kept, kept_bytes = kept + 1, kept_bytes + size
                continue
            self.store.remove_rejected_model(model["id"])
            pruned.append(model["id"])
        if pruned:
            log.info("pruned rejected uploads %s", pruned)
        return pruned


def check_upload(
    files: Mapping[str, bytes], max_model_bytes: int = MAX_FILE_BYTES
) -> tuple[list[str], dict[str, Any]]:
    """Refuse an upload that is not a model folder; return its labels and metrics."""
    unknown = sorted(set(files) - set(UPLOAD_FILES))
    if unknown:
        raise ModelError(
            f"unexpected files {unknown}: upload only {', '.join(UPLOAD_FILES)} "
            "(as multipart parts named 'files', filename = basename)"
        )
    missing = [n for n, required in UPLOAD_FILES.items() if required and n not in files]
    if missing:
        raise ModelError(f"the upload lacks {', '.join(missing)}; `partrig train` writes them all")
    for name, data in files.items():
        if not data:
            raise ModelError(f"{name} is empty")
        cap = file_cap(name, max_model_bytes)
        if len(data) > cap:
            raise ModelError(f"{name} is larger than {cap / 2**20:g} MiB, the most the rig takes")
    try:
        metrics = json.loads(files[METRICS_FILE])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"metrics.json is not valid JSON: {exc}") from None
    if not isinstance(metrics, dict):
        raise ModelError("metrics.json must hold a JSON object")
    snapshot = metrics.get("snapshot")
    if not isinstance(snapshot, str) or not SNAPSHOT_ID_RE.match(snapshot):
        raise ModelError(
            'metrics.json must name the snapshot it was trained on, e.g. "snapshot": "snap-0001"'
        )
    try:
        text = files[LABELS_FILE].decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError("labels.txt must be UTF-8 text, one label per line") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels or len(set(labels)) != len(labels):
        raise ModelError("labels.txt must list each label once, one per line")
    return labels, metrics


def file_cap(name: str, max_model_bytes: int) -> int:
    """The most bytes the upload part ``name`` may have (``.tflite``: the configured cap)."""
    return SMALL_FILE_BYTES.get(name, max_model_bytes)
