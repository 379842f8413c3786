"""The model registry on the rig: store an uploaded model, validate it, and put it live.

Why validation happens on the rig: a trainer's own metrics describe its copy of the data, not
this rig's camera, lights and runtime.  Before a model may go live it must, here and now:

1. load in the runtime the sorter uses (:class:`classify.runtime.Classifier`);
2. take what the sorter feeds it: one square RGB ``uint8`` crop, with one output per label;
3. have the labels of a snapshot this rig made, in that snapshot's fixed class order;
4. classify the rig's own held-out test split of that snapshot (the stored JPEGs with their
   boxes and colour matrices) at least as well as the active model does on the same shots,
   minus ``models.accuracy_tolerance``; or reach ``models.accuracy_floor`` when none is active.

Activating loads the model first and only then records the change, so a model that cannot load
never becomes the recorded active model; the new classifier is then swapped into the running
sorter (``Sorter.set_classifier``) without a restart.  Rollback is one call.

Files are written the store's way: each fsynced into a temporary folder, the folder fsynced and
renamed to ``models/<id>/``, and only then the row committed (:meth:`DatasetStore.add_model`).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from capture.store.files import ensure_dir, fsync_dir, write_durably
from capture.store.models import MODELS_DIR
from classify.runtime import LABELS_FILE, MODEL_FILE, Classifier
from rig.config import Settings
from rig.errors import ModelError, NotFound, RigError

log = logging.getLogger("classify.registry")

METRICS_FILE = "metrics.json"
#: Every file an upload may carry, and whether it must.
UPLOAD_FILES: dict[str, bool] = {
    MODEL_FILE: True,
    LABELS_FILE: True,
    METRICS_FILE: True,
    "model-float.tflite": False,
    "confusion.png": False,
}
MAX_FILE_BYTES = 256 * 1024 * 1024
SNAPSHOT_ID_RE = re.compile(r"^snap-\d{4,}$")
STAGING_PREFIX = ".upload-"


@dataclass(frozen=True)
class TestShot:
    """One shot of the held-out split, as validation reads it."""

    shot_id: int
    label: str
    path: Path
    bbox: tuple[int, int, int, int] | None
    colour_matrix: list[list[float]] | None


class ModelRegistry:
    """Uploads, validation, activation and rollback of the sorter's models.

    ``sorter`` is the running :class:`classify.sorter.Sorter` (or None); every activation and
    rollback swaps its classifier.  Thread-safe: activations are serialised, so the model the
    database names active is always the one the sorter holds.
    """

    def __init__(self, store: Any, settings: Settings, sorter: Any = None) -> None:
        self.store = store
        self.settings = settings
        self.sorter = sorter
        self._lock = threading.Lock()

    # --- upload ----------------------------------------------------------------------------------

    def upload(self, files: Mapping[str, bytes], who: str) -> dict[str, Any]:
        """Store an upload durably, validate it, and return ``{id, state, validation}``.

        Raises ModelError (422) for an upload that is not a model at all (files missing or
        unknown, metrics.json unreadable); a model that is well-formed but fails a check is
        stored as ``rejected`` with the reasons, so the trainer can see why.
        """
        labels, metrics = check_upload(files)
        staged = self._stage(files)
        manifest = [
            {"name": name, "sha256": sha, "size": len(files[name])}
            for name, sha in sorted(staged[1].items())
        ]
        try:
            model_id = self.store.add_model(
                staged[0],
                files=manifest,
                labels=labels,
                snapshot_id=metrics.get("snapshot"),
                metrics=metrics,
                who=who,
            )
        finally:
            if staged[0].exists():
                shutil.rmtree(staged[0], ignore_errors=True)
        try:
            passed, validation = self.validate(model_id)
        except RigError as exc:
            # NOTE: never leave a model "uploaded" forever: a check that could not run is a
            # failed check, recorded with its reason.
            passed, validation = False, {"checks": [], "passed": False, "reason": str(exc)}
        self.store.set_model_validation(model_id, passed, validation)
        log.info("%s uploaded by %s: %s", model_id, who, "validated" if passed else "rejected")
        return {
            "id": model_id,
            "state": "validated" if passed else "rejected",
            "validation": validation,
        }

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

    # --- validation ------------------------------------------------------------------------------

    def validate(self, model_id: str) -> tuple[bool, dict[str, Any]]:
        """Run every check; ``(passed, validation)`` where validation lists each check."""
        model = self.store.get_model(model_id)
        checks: list[dict[str, Any]] = []
        result: dict[str, Any] = {"checks": checks}

        def check(name: str, ok: bool, detail: str) -> bool:
            checks.append({"check": name, "ok": bool(ok), "detail": detail})
            return ok

        try:
            classifier = Classifier.from_dir(self.store.model_dir(model_id), self._threads())
        except ModelError as exc:
            check("loads", False, str(exc))
            return self._verdict(result)
        check("loads", True, f"loaded with {classifier.runtime}")
        result.update(runtime=classifier.runtime, input_size=classifier.input_size)
        if not check("input", *self._input_fits(classifier)):
            return self._verdict(result)
        snapshot_id = model.get("snapshot_id")
        try:
            classes = snapshot_classes(self.store.data_dir, str(snapshot_id))
        except (NotFound, ModelError) as exc:
            check("labels", False, str(exc))
            return self._verdict(result)
        if not check("labels", *labels_match(classifier.labels, classes, str(snapshot_id))):
            return self._verdict(result)
        shots = self.test_shots(str(snapshot_id))
        if not check(
            "test_split",
            bool(shots),
            f"{len(shots)} held-out test shots of {snapshot_id}"
            if shots
            else f"{snapshot_id} has no test shots on this rig to measure the model with",
        ):
            return self._verdict(result)
        try:
            accuracy = evaluate(classifier, shots)
            required, baseline = self._required_accuracy(shots)
        except RigError as exc:
            check("accuracy", False, f"could not measure the accuracy: {exc}")
            return self._verdict(result)
        result.update(accuracy=accuracy, test_shots=len(shots), snapshot=snapshot_id)
        result.update(required_accuracy=required, baseline=baseline)
        check(
            "accuracy",
            accuracy >= required,
            f"{accuracy:.4f} on the rig's test split; needs {required:.4f} ("
            + (
                f"{baseline['model_id']}'s {baseline['accuracy']:.4f} minus the tolerance "
                f"{self.settings.models.accuracy_tolerance}"
                if baseline
                else "models.accuracy_floor, as no model is active"
            )
            + ")",
        )
        return self._verdict(result)

    @staticmethod
    def _verdict(result: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        failed = [c for c in result["checks"] if not c["ok"]]
        result["passed"] = not failed
        result["reason"] = failed[0]["detail"] if failed else None
        return not failed, result

    @staticmethod
    def _input_fits(classifier: Classifier) -> tuple[bool, str]:
        """The sorter feeds one prepared ``uint8`` square crop; the model must take exactly it."""
        size = classifier.input_size
        if np.dtype(classifier.input_dtype) != np.uint8:
            return False, (
                f"model.tflite takes {classifier.input_dtype} input; the sorter feeds uint8 "
                "pixels: export the full-int8 model (uint8 input and output) as model.tflite"
            )
        try:
            out = classifier.invoke_raw(np.zeros((1, size, size, 3), np.uint8))
        except ModelError as exc:
            return False, f"the model did not run on a {size}x{size} uint8 crop: {exc}"
        if out.shape != (1, len(classifier.labels)):
            return False, f"the model's output has shape {out.shape}, not (1, labels)"
        return True, f"1x{size}x{size}x3 uint8 in, {len(classifier.labels)} scores out"

    def _required_accuracy(self, shots: list[TestShot]) -> tuple[float, dict[str, Any] | None]:
        """The bar: the active model's accuracy on the same shots minus the tolerance, or the
        configured floor when no model is active (or the active one cannot load any more)."""
        floor = float(self.settings.models.accuracy_floor)
        active = self.store.active_model()
        if active is None:
            return floor, None
        try:
            current = Classifier.from_dir(self.store.model_dir(active["id"]), self._threads())
        except ModelError as exc:
            log.warning("the active model %s no longer loads (%s); using the floor", active, exc)
            return floor, None
        acc = evaluate(current, shots)
        bar = max(0.0, acc - float(self.settings.models.accuracy_tolerance))
        return bar, {"model_id": active["id"], "accuracy": acc}

    def test_shots(self, snapshot_id: str) -> list[TestShot]:
        """The snapshot's held-out test split as stored on this rig (deleted shots left out)."""
        from capture.snapshot import split_shot_ids

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
        """Make ``model_id`` active and swap it into the running sorter; returns the record."""
        with self._lock:
            classifier = Classifier.from_dir(self.store.model_dir(model_id), self._threads())
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
            classifier = Classifier.from_dir(self.store.model_dir(target), self._threads())
            record = self.store.rollback_model(who)
            self._swap(classifier, record["model_id"])
        log.info("rolled back to %s by %s", record["model_id"], who)
        return record

    def load_active(self) -> tuple[Classifier | None, str | None]:
        """The active model, loaded, for the sorter at start-up: ``(classifier, id)``."""
        active = self.store.active_model()
        if active is None:
            return None, None
        classifier = Classifier.from_dir(self.store.model_dir(active["id"]), self._threads())
        return classifier, active["id"]

    def _swap(self, classifier: Classifier, model_id: str) -> None:
        if self.sorter is not None:
            self.sorter.set_classifier(classifier, model_id)

    def _threads(self) -> int:
        return int(self.settings.sorter.num_threads)


# --- checks that need no registry -----------------------------------------------------------------


def check_upload(files: Mapping[str, bytes]) -> tuple[list[str], dict[str, Any]]:
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
        if len(data) > MAX_FILE_BYTES:
            raise ModelError(f"{name} is larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        metrics = json.loads(files[METRICS_FILE])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"metrics.json is not valid JSON: {exc}") from None
    if not isinstance(metrics, dict):
        raise ModelError("metrics.json must hold a JSON object")
    snapshot = metrics.get("snapshot")
    if not isinstance(snapshot, str) or not SNAPSHOT_ID_RE.match(snapshot):
        raise ModelError(
            f'metrics.json must name the snapshot it was trained on, e.g. "snapshot": '
            f'"snap-0001" (got {snapshot!r})'
        )
    try:
        text = files[LABELS_FILE].decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError("labels.txt must be UTF-8 text, one label per line") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels or len(set(labels)) != len(labels):
        raise ModelError("labels.txt must list each label once, one per line")
    return labels, metrics


def snapshot_classes(data_dir: Path, snapshot_id: str) -> list[str]:
    """The snapshot's labels in its fixed class order (NotFound when the rig has no such one)."""
    from capture.snapshot import load_manifest

    manifest = load_manifest(Path(data_dir), snapshot_id)
    classes = sorted(manifest.get("classes", []), key=lambda c: int(c["index"]))
    return [str(c["label"]) for c in classes]


def labels_match(labels: list[str], classes: list[str], snapshot_id: str) -> tuple[bool, str]:
    if labels == classes:
        return True, f"labels are {snapshot_id}'s {len(classes)} classes in its order"
    if sorted(labels) == sorted(classes):
        return False, (
            f"labels.txt has {snapshot_id}'s classes in another order; the model's outputs "
            "must follow the manifest's class indices"
        )
    extra, lacking = sorted(set(labels) - set(classes)), sorted(set(classes) - set(labels))
    return False, f"labels differ from {snapshot_id}'s classes (extra {extra}, missing {lacking})"


def evaluate(classifier: Classifier, shots: list[TestShot]) -> float:
    """Top-1 accuracy over ``shots``, compared by label (models may differ in class order)."""
    if not shots:
        return 0.0
    correct = 0
    for shot in shots:
        image = read_rgb(shot.path)
        prediction = classifier.predict(image, shot.bbox, shot.colour_matrix, top_k=1)
        correct += prediction.label == shot.label
    return correct / len(shots)


def read_rgb(path: Path) -> np.ndarray:
    """A stored JPEG as RGB ``uint8`` (the pixel convention of every camera driver)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RigError(f"cannot read the stored image {path}; run `partrig dataset check`")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _test_shot(data_dir: Path, row: dict[str, Any]) -> TestShot:
    box = (row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"])
    bbox = None if any(v is None for v in box) or not (box[2] and box[3]) else box
    matrix = row.get("colour_matrix")
    if isinstance(matrix, str):
        matrix = json.loads(matrix)
    return TestShot(int(row["id"]), str(row["label"]), Path(data_dir) / row["path"], bbox, matrix)


__all__ = [
    "UPLOAD_FILES",
    "ModelRegistry",
    "TestShot",
    "check_upload",
    "evaluate",
    "labels_match",
    "snapshot_classes",
]
