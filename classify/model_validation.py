"""Model validation on the rig: every check of :mod:`classify.model_check`, run in a child.

Why on the rig: a trainer's own metrics describe its copy of the data, not this rig's camera,
lights and runtime.  Before a model may go live it must, here and now, load in the runtime the
sorter uses within the configured bounds, take one square RGB ``uint8`` crop with one output
per label, have the labels of a snapshot this rig made in its class order, and classify the
rig's own held-out test split at least as well as the active model does (minus
``models.accuracy_tolerance``), or reach ``models.accuracy_floor`` when none is active.

Why a child process: an uploaded model is untrusted bytes and the runtime is C++ that trusts
them.  The server owns the serial port, the camera and the valves, so it never parses a model
file itself; the child (:mod:`classify.check_process`) validates it, and the verdict names the
sha256 of the bytes it read, which must equal the one recorded at upload.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from classify.check_process import CheckLimits, run_check
from classify.model_check import TestShot
from classify.model_rows import ModelRows, file_sha256
from classify.open_set import MODEL_JSON
from classify.runtime import MODEL_FILE
from rig.config import Settings
from rig.errors import ModelError, NotFound

log = logging.getLogger("classify.registry")


class ModelValidator:
    """Builds a model's validation job from the store and runs it in a child process."""

    def __init__(self, store: ModelRows, settings: Settings) -> None:
        self.store = store
        self.settings = settings

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
            "num_threads": int(self.settings.sorter.num_threads),
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
