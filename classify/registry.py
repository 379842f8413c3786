"""The model registry on the rig: store an uploaded model, validate it, and put it live.

Why validation happens on the rig: a trainer's own metrics describe its copy of the data, not
this rig's camera, lights and runtime.  Before a model may go live it must, here and now, pass
the checks of :mod:`classify.model_check`: load in the runtime the sorter uses within the
configured bounds, take one square RGB ``uint8`` crop with one output per label, have the
labels of a snapshot this rig made in its class order, and classify the rig's own held-out test
split at least as well as the active model does (minus ``models.accuracy_tolerance``), or reach
``models.accuracy_floor`` when none is active.

Why a child process: an uploaded model is untrusted bytes and the runtime is C++ that trusts
them.  This process (``partrig serve``) owns the serial port, the camera and the valves, so it
never parses a model file itself until a child (:mod:`classify.check_process`) has validated
it, and then only bytes whose sha256 still equals the one recorded at upload.  Every load here
checks the model's state first: a model that is not validated is refused (409) unread.

Activating loads the model first and only then records the change, so a model that cannot load
never becomes the recorded active model; the new classifier is then swapped into the running
sorter (``Sorter.set_classifier``) without a restart.  Rollback is one call.

Files are written the store's way: each fsynced into a temporary folder, the folder fsynced and
renamed to ``models/<id>/``, and only then the row committed (:meth:`DatasetStore.add_model`).
Rejected uploads are kept for the trainer to read why, within ``models.keep_rejected`` and
``models.rejected_quota_mb``; older ones are pruned, files and row.
"""

from __future__ import annotations

import hashlib
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
from capture.store.models import ACTIVATABLE_STATES, MODELS_DIR
from classify.check_process import CheckLimits, run_check
from classify.model_check import TestShot, evaluate, labels_match
from classify.open_set import MAX_MODEL_JSON_BYTES, MODEL_JSON, ModelCard, parse_card
from classify.runtime import LABELS_FILE, MODEL_FILE, Classifier
from rig.config import Settings
from rig.errors import ModelError, NotFound, RigError, RunStateError

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


class ModelRegistry:
    """Uploads, validation, activation and rollback of the sorter's models.

    ``sorter`` is the running :class:`classify.sorter.Sorter` (or None); every activation and
    rollback swaps its classifier.  Thread-safe: activations are serialised, so the model the
    database names active is always the one the sorter holds; one upload is validated at a
    time, so concurrent pushes cannot multiply the validation child's memory.
    """

    def __init__(self, store: Any, settings: Settings, sorter: Any = None) -> None:
        self.store = store
        self.settings = settings
        self.sorter = sorter
        self._lock = threading.Lock()
        self._validating = threading.Lock()

    # --- upload ----------------------------------------------------------------------------------

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
                passed, validation = self.validate(model_id)
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

    # --- validation ------------------------------------------------------------------------------

    def validate(self, model_id: str) -> tuple[bool, dict[str, Any]]:
        """Run every check in a child process; ``(passed, validation)`` lists each check."""
        job = self.check_job(model_id)
        result = run_check(job, CheckLimits.from_settings(self.settings))
        if result.get("passed") and result.get("model_sha256") != job["sha256"]:
            result["checks"].append(
                {"check": "sha256", "ok": False, "detail": "the validated bytes are not the upload"}
            )
            result.update(passed=False, reason="the validated bytes are not the upload")
        child = result.get("child", {})
        log.info("%s validated in a child in %s s: %s", model_id, child.get("wall_s"),
                 "passed" if result["passed"] else result["reason"])  # fmt: skip
        return bool(result["passed"]), result

    def check_job(self, model_id: str) -> dict[str, Any]:
        """Everything the child needs, read here from the database and the rig's own files."""
        model = self.store.get_model(model_id)
        snapshot_id = str(model.get("snapshot_id"))
        job: dict[str, Any] = {
            "model_path": str((self.store.model_dir(model_id) / MODEL_FILE).resolve()),
            "sha256": file_sha256(model, MODEL_FILE),
            "labels": list(model["labels"]),
            "snapshot_id": snapshot_id,
            "classes": None,
            "classes_error": None,
            "shots": [],
            "baseline": None,
            "accuracy_floor": float(self.settings.models.accuracy_floor),
            "accuracy_tolerance": float(self.settings.models.accuracy_tolerance),
            "max_input_side": int(self.settings.models.max_input_side),
            "max_tensors": int(self.settings.models.max_tensors),
            "num_threads": self._threads(),
            "model_json": None,
        }
        if any(f.get("name") == MODEL_JSON for f in model.get("files") or []):
            job["model_json"] = str((self.store.model_dir(model_id) / MODEL_JSON).resolve())
        try:
            job["classes"] = snapshot_classes(self.store.data_dir, snapshot_id)
        except (NotFound, ModelError) as exc:
            job["classes_error"] = str(exc)
            return job
        job["shots"] = [s.to_json() for s in self.test_shots(snapshot_id)]
        active = self.store.active_model()
        if active is not None:
            job["baseline"] = {
                "model_id": active["id"],
                "model_path": str((self.store.model_dir(active["id"]) / MODEL_FILE).resolve()),
                "labels": list(active["labels"]),
            }
        return job

    def test_shots(self, snapshot_id: str) -> list[TestShot]:
        """The snapshot's held-out test split as stored on this rig (deleted shots left out)."""
        from capture.snapshots.build import split_shot_ids

        ids = [int(i) for i in split_shot_ids(self.store, snapshot_id, "test")]
        out: list[TestShot] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self.store.query(
                "SELECT id, label, path, bbox_x, bbox_y, bbox_w, bbox_h, colour_matrix FROM shots"
                f" WHERE id IN ({marks}) AND deleted_at IS NULL ORDER BY id",
                chunk,
            )
            out.extend(_test_shot(self.store.data_dir, r) for r in rows)
        return out

    # --- going live ------------------------------------------------------------------------------

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

    def _load_validated(self, model: dict[str, Any]) -> Classifier:
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

    def _card(self, model: dict[str, Any]) -> ModelCard | None:
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


# --- checks that need no registry -----------------------------------------------------------------


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


def file_sha256(model: dict[str, Any], name: str) -> str:
    """The sha256 recorded at upload for one of a model's files."""
    for entry in model.get("files") or []:
        if entry.get("name") == name:
            return str(entry["sha256"])
    raise ModelError(f"{model['id']} has no recorded {name}; push the model again")


def snapshot_classes(data_dir: Path, snapshot_id: str) -> list[str]:
    """The snapshot's labels in its fixed class order (NotFound when the rig has no such one)."""
    from capture.snapshots.build import load_manifest

    manifest = load_manifest(Path(data_dir), snapshot_id)
    classes = sorted(manifest.get("classes", []), key=lambda c: int(c["index"]))
    return [str(c["label"]) for c in classes]


def _test_shot(data_dir: Path, row: dict[str, Any]) -> TestShot:
    box = (row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"])
    bbox = None if any(v is None for v in box) or not (box[2] and box[3]) else box
    matrix = row.get("colour_matrix")
    if isinstance(matrix, str):
        matrix = json.loads(matrix)
    path = (Path(data_dir) / row["path"]).resolve()
    return TestShot(int(row["id"]), str(row["label"]), path, bbox, matrix)


__all__ = [
    "UPLOAD_FILES",
    "ModelRegistry",
    "TestShot",
    "check_upload",
    "evaluate",
    "file_cap",
    "labels_match",
    "snapshot_classes",
]
