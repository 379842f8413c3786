"""The checks an uploaded model must pass, run in a child: ``python -m classify.model_check``.

Why a child: a model file is untrusted input, and the TFLite runtime is C++ that trusts the
flatbuffer it parses.  A 2.5 KB mutated ``.tflite`` can crash it (SIGSEGV) or ask it for
hundreds of MB.  ``partrig serve`` holds the serial port, the camera and the valves' GPIO, so
it never parses a model it has not seen pass here first; :mod:`classify.check_process` starts
this module in a fresh interpreter, with memory and CPU limits and a wall-clock deadline, and
turns a crash into a rejection with the reason.

The child reads one job (JSON) on stdin and writes one result (JSON) on its own copy of
stdout.  Everything the checks need comes in the job: the model's path, its labels, the
snapshot's classes, the held-out test shots (paths, boxes, colour matrices) and the active
model to compare with, so the child needs neither the database nor the configuration.

The checks, in order (the first failure is the reason):

1. ``loads``: the bytes parse, fit :class:`classify.runtime.ModelLimits` (checked before any
   tensor is allocated) and allocate within the memory limit;
2. ``input``: one square RGB ``uint8`` crop in, one score per label out, and a test invoke runs;
3. ``labels``: the labels of a snapshot this rig made, in that snapshot's class order;
4. ``test_split``: that snapshot has held-out test shots on this rig;
5. ``accuracy``: at least the active model's accuracy on those shots minus the tolerance, or
   the configured floor when no model is active.

Beside the verdict the result reports top-1 and top-3 accuracy on the test split and, for a
model with ``model.json``, its open-set rule and how many of these known test shots it would
send to review (``open_set.test_rejected_share``; about 1 - known_acceptance when the rig
sees what the trainer saw).  A model without ``model.json`` says ``"enabled": false``.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classify.open_set import read_card
from classify.runtime import Classifier, ModelLimits
from rig.errors import ModelError, RigError

#: Validation reports top-k accuracy for this k (the labelling station offers this many).
TOP_K = 3


@dataclass(frozen=True)
class TestShot:
    """One shot of the held-out split, as validation reads it."""

    shot_id: int
    label: str
    path: Path
    bbox: tuple[int, int, int, int] | None
    colour_matrix: list[list[float]] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "shot_id": self.shot_id,
            "label": self.label,
            "path": str(self.path),
            "bbox": list(self.bbox) if self.bbox else None,
            "colour_matrix": self.colour_matrix,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TestShot:
        bbox = d.get("bbox")
        box = (int(bbox[0]), int(bbox[1]), int(bbox[2]), int(bbox[3])) if bbox else None
        return cls(int(d["shot_id"]), str(d["label"]), Path(d["path"]), box, d.get("colour_matrix"))


# --- the checks (run in the child) ----------------------------------------------------------------


def check_model(job: dict[str, Any]) -> dict[str, Any]:
    """Run every check of one job; the result lists each check and says passed and why not."""
    checks: list[dict[str, Any]] = []
    result: dict[str, Any] = {"checks": checks}

    def check(name: str, ok: bool, detail: str) -> bool:
        checks.append({"check": name, "ok": bool(ok), "detail": detail})
        return ok

    limits = ModelLimits(int(job["max_input_side"]), int(job["max_tensors"]))
    threads = int(job.get("num_threads", 1))
    try:
        content = Path(job["model_path"]).read_bytes()
    except OSError as exc:
        check("loads", False, f"cannot read model.tflite: {exc.strerror}")
        return verdict(result)
    result["model_sha256"] = hashlib.sha256(content).hexdigest()
    if job.get("sha256") and result["model_sha256"] != job["sha256"]:
        check("loads", False, "model.tflite changed on disk after the upload; push it again")
        return verdict(result)
    try:
        card = read_card(Path(job["model_json"])) if job.get("model_json") else None
        classifier = Classifier.from_bytes(
            content, job["labels"], threads, limits=limits, card=card
        )
    except ModelError as exc:
        check("loads", False, str(exc))
        return verdict(result)
    check("loads", True, f"loaded with {classifier.runtime}")
    result["open_set"] = _open_set_summary(classifier)
    result.update(runtime=classifier.runtime, input_size=classifier.input_size)
    if not check("input", *input_fits(classifier)):
        return verdict(result)
    snapshot_id = str(job.get("snapshot_id"))
    classes = job.get("classes")
    if classes is None:
        check("labels", False, str(job.get("classes_error") or f"{snapshot_id} is unknown"))
        return verdict(result)
    if not check("labels", *labels_match(classifier.labels, classes, snapshot_id)):
        return verdict(result)
    shots = [TestShot.from_json(s) for s in job.get("shots", [])]
    if not check(
        "test_split",
        bool(shots),
        f"{len(shots)} held-out test shots of {snapshot_id}"
        if shots
        else f"{snapshot_id} has no test shots on this rig to measure the model with",
    ):
        return verdict(result)
    try:
        scored = score_shots(classifier, shots)
        accuracy = scored["accuracy"]
        required, baseline = required_accuracy(job, shots, threads)
    except RigError as exc:
        check("accuracy", False, f"could not measure the accuracy: {exc}")
        return verdict(result)
    result.update(accuracy=accuracy, test_shots=len(shots), snapshot=snapshot_id)
    result.update(top_k_accuracy=scored["top_k_accuracy"], top_k=scored["top_k"])
    if result["open_set"] is not None:
        result["open_set"].update(
            test_rejected=scored["open_set_rejected"],
            test_rejected_share=scored["open_set_rejected_share"],
        )
    result.update(required_accuracy=required, baseline=baseline)
    check(
        "accuracy",
        accuracy >= required,
        f"{accuracy:.4f} on the rig's test split; needs {required:.4f} ("
        + (
            f"{baseline['model_id']}'s {baseline['accuracy']:.4f} minus the tolerance "
            f"{job['accuracy_tolerance']}"
            if baseline
            else "models.accuracy_floor, as no model is active"
        )
        + ")",
    )
    return verdict(result)


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    """Fill in ``passed`` and ``reason`` (the first failed check's detail)."""
    failed = [c for c in result["checks"] if not c["ok"]]
    result["passed"] = not failed
    result["reason"] = failed[0]["detail"] if failed else None
    return result


def input_fits(classifier: Classifier) -> tuple[bool, str]:
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


def required_accuracy(
    job: dict[str, Any], shots: list[TestShot], threads: int
) -> tuple[float, dict[str, Any] | None]:
    """The bar: the active model's accuracy on the same shots minus the tolerance, or the
    configured floor when no model is active (or the active one cannot load any more)."""
    floor = float(job["accuracy_floor"])
    active = job.get("baseline")
    if not active:
        return floor, None
    try:
        current = Classifier.load(Path(active["model_path"]), active["labels"], threads)
    except ModelError as exc:
        print(f"the active model {active['model_id']} no longer loads ({exc})", file=sys.stderr)
        return floor, None
    acc = evaluate(current, shots)
    bar = max(0.0, acc - float(job["accuracy_tolerance"]))
    return bar, {"model_id": active["model_id"], "accuracy": acc}


def evaluate(classifier: Classifier, shots: list[TestShot]) -> float:
    """Top-1 accuracy over ``shots``, compared by label (models may differ in class order)."""
    return float(score_shots(classifier, shots)["accuracy"])


def score_shots(classifier: Classifier, shots: list[TestShot], k: int = TOP_K) -> dict[str, Any]:
    """Top-1 and top-``k`` accuracy over ``shots`` (by label), and how many of these known
    parts the model's open-set rule would send to review."""
    if not shots:
        return {"accuracy": 0.0, "top_k_accuracy": 0.0, "top_k": k,
                "open_set_rejected": 0, "open_set_rejected_share": 0.0}  # fmt: skip
    correct = in_top = rejected = 0
    for shot in shots:
        image = read_rgb(shot.path)
        prediction = classifier.predict(image, shot.bbox, shot.colour_matrix, top_k=k)
        correct += prediction.label == shot.label
        in_top += any(label == shot.label for label, _ in prediction.top_k)
        score, threshold = prediction.open_set_score, prediction.open_set_threshold
        rejected += score is not None and threshold is not None and score > threshold
    n = len(shots)
    return {
        "accuracy": correct / n,
        "top_k_accuracy": round(in_top / n, 4),
        "top_k": k,
        "open_set_rejected": rejected,
        "open_set_rejected_share": round(rejected / n, 4),
    }


def _open_set_summary(classifier: Classifier) -> dict[str, Any] | None:
    rule = classifier.open_set
    if rule is None:
        why = "no model.json" if classifier.card is None else "model.json has no open-set rule"
        return {"enabled": False, "detail": f"no open-set rejection ({why})"}
    return {"enabled": True, "method": rule.method, "score": rule.score_name,
            "threshold": rule.threshold, "calibrated_on": rule.calibrated_on}  # fmt: skip


def read_rgb(path: Path) -> np.ndarray:
    """A stored JPEG as RGB ``uint8`` (the pixel convention of every camera driver)."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RigError(f"cannot read the stored image {path}; run `partrig dataset check`")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --- the child's own set-up -----------------------------------------------------------------------


def proc_status_bytes(field: str) -> int:
    """A ``/proc/self/status`` size (``VmSize``, ``VmHWM``) in bytes; 0 where it does not say.

    NOTE: ``ru_maxrss`` is no use for the child's peak: Linux carries the forking parent's high
    water mark across ``exec``, so the child would report the server's size.  ``VmHWM`` belongs
    to the child's own address space.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def limit_self(limits: dict[str, Any]) -> None:
    """CPU time and no core files at once; memory once the runtime's libraries are mapped.

    NOTE: RLIMIT_AS counts address space, and importing a runtime maps hundreds of MB of
    libraries it never touches (and TensorFlow's far more than LiteRT's).  The budget is for
    what the *model* makes the runtime allocate, so it is added to the space already mapped
    after the imports: the same ``check_memory_mb`` means the same on every runtime.
    """
    cpu = int(limits["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    import cv2  # noqa: F401  (mapped now, so it is outside the model's budget)

    from classify.runtime import find_interpreter

    find_interpreter()
    budget = int(limits["memory_mb"]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (proc_status_bytes("VmSize") + budget,) * 2)


def main() -> int:
    """Read the job, limit this process, run the checks, write the result; exit 0 on a verdict."""
    # NOTE: native code may print to fd 1; keep a private copy for the result and send fd 1 to
    # stderr, so nothing but the result can reach the parent's JSON parser.
    result_fd = os.dup(1)
    os.dup2(2, 1)
    request = json.loads(sys.stdin.buffer.read())
    limit_self(request["limits"])
    try:
        result = check_model(request["job"])
    except MemoryError:
        result = verdict(
            {
                "checks": [
                    {
                        "check": "loads",
                        "ok": False,
                        "detail": "the model needs more memory than models.check_memory_mb "
                        f"({request['limits']['memory_mb']} MiB) allows",
                    }
                ]
            }
        )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["child"] = {
        "peak_rss_mb": round(proc_status_bytes("VmHWM") / 2**20, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
    }
    with os.fdopen(result_fd, "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
