"""Simulated sorter shots for the open-set benchmark: drop parts, keep what the sorter saw.

Why from the feeder and not the turntable: the bench measures the sorter's decisions, so its
model learns from the same platform, camera and crop the sorter uses (like sorter shots sent
to review and labelled).  Each drop is a fresh instance in a random pose and angle, so the
splits never share an instance.

:func:`collect` runs the real :class:`classify.sorter.Sorter` over a
:class:`classify.feeder_sim.SimFeeder` with a classifier that only records the frame, box and
colour matrix it is asked about; the feeder's drop log says what each part was (joined by
drop order: one part on the platform at a time, one decision each).
:func:`write_snapshot` writes them as a snapshot folder (``folder`` format) that
:func:`classify.train.train` reads.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from capture.store import DatasetStore
from classify.actuator_sim import SimActuator
from classify.feeder_sim import SimFeeder
from classify.runtime import Prediction
from classify.sorter import Sorter
from rig.config import Settings, apply_sim
from rig.sim.clock import SimClock

FRAME = (320, 240)


@dataclass(frozen=True)
class Shot:
    """One part as the sorter saw it, with the drop log's truth."""

    label: str
    instance: str
    jpeg: bytes
    bbox: tuple[int, int, int, int]
    colour_matrix: list[list[float]] | None


class _Recorder:
    """A stand-in model: records each frame it is asked about and answers nothing useful."""

    runtime = "recorder"

    def __init__(self, label: str) -> None:
        self.label = label
        self.seen: list[tuple[np.ndarray, Any, Any]] = []

    def predict(self, image_rgb, bbox=None, colour_matrix=None, top_k=3) -> Prediction:  # type: ignore[no-untyped-def]
        self.seen.append((image_rgb.copy(), tuple(int(v) for v in bbox), colour_matrix))
        return Prediction(self.label, 0, 0.0, [(self.label, 0.0)])


def bench_settings() -> Settings:
    settings = apply_sim(Settings())
    settings.sorter.stuck_after_s = 5.0
    settings.sorter.sample_every = 0
    return settings


def collect(labels: list[str], parts: int, seed: int) -> list[Shot]:
    """Drop ``parts`` parts drawn from ``labels``; the shot the sorter classified of each."""
    settings = bench_settings()
    clock = SimClock(0)
    feeder = SimFeeder(settings, clock, seed=seed, labels=labels, unknown_rate=0.0,
                       preview_size=FRAME)  # fmt: skip
    actuator = SimActuator(feeder.world, clock=clock)
    recorder = _Recorder(labels[0])
    with tempfile.TemporaryDirectory(prefix="partrig-openset-") as tmp:
        store = DatasetStore.open(Path(tmp))
        sorter = Sorter(feeder.camera, actuator, store, settings, clock)
        sorter.set_classifier(recorder, "recorder")
        try:
            decided = sorter.run_parts(parts)
            sorter.flush(60)
        finally:
            sorter.close()
            store.close()
    if len(decided) != parts or sorter.incident is not None:
        raise RuntimeError(f"collecting shots stopped after {len(decided)}: {sorter.incident}")
    shots = []
    for drop, (frame, bbox, matrix) in zip(feeder.drops, recorder.seen, strict=False):
        jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()  # fmt: skip
        shots.append(Shot(drop.label, drop.instance, jpeg, bbox, matrix))
    return shots


def write_snapshot(
    root: Path, labels: list[str], splits: dict[str, list[Shot]], snapshot_id: str
) -> Path:
    """A snapshot folder (manifest + ``folder`` format) holding ``splits``."""
    files = []
    for split, shots in splits.items():
        folder = root / "folder" / split
        records = []
        for n, shot in enumerate(shots):
            index = labels.index(shot.label)
            name = f"{index:03d}-{shot.label}/{split}-{n:06d}.jpg"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(shot.jpeg)
            records.append({"file_name": name, "label": shot.label, "class_index": index,
                            "bbox": list(shot.bbox), "colour_matrix": shot.colour_matrix,
                            "instance": shot.instance})  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        meta = folder / "metadata.jsonl"
        meta.write_text("".join(json.dumps(r) + "\n" for r in records))
        data = meta.read_bytes()
        files.append({"path": meta.relative_to(root).as_posix(), "format": "folder",
                      "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})  # fmt: skip
    manifest = {
        "id": snapshot_id,
        "created_at": "2026-12-03T00:00:00+00:00",
        "classes": [{"index": i, "label": label} for i, label in enumerate(labels)],
        "counts": {"total": sum(len(s) for s in splits.values())},
        "formats": ["folder"],
        "files": files,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root
