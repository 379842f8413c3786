"""Tiny models with known behaviour and a small snapshot they can be validated against.

Why hand-set weights instead of training: the registry's tests must know exactly how well a
model does on the rig's test split.  A model that averages the crop's colour and maps "more
red than blue" to one class is right on every red/blue shot below; the same model with its
outputs swapped is wrong on every one.  Both are real full-int8 TFLite files, exported with
the project's own exporter and loaded with the project's own runtime.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

LABELS = ["part-blue", "part-red"]
SIZE = 16


class RecordingSorter:
    """Stands in for classify.sorter.Sorter: records every classifier swapped in."""

    def __init__(self) -> None:
        self.swaps: list[tuple[Any, str | None]] = []

    def set_classifier(self, classifier: Any, model_id: str | None) -> None:
        self.swaps.append((classifier, model_id))


def colour_model(
    out_dir: Path,
    *,
    swap: bool = False,
    size: int = SIZE,
    int8: bool = True,
    labels: list[str] | None = None,
    snapshot: str = "snap-0001",
) -> Path:
    """Write model.tflite + labels.txt + metrics.json for the red/blue colour model."""
    import keras

    from classify.export import export_float, export_int8

    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inputs, dense(x))
    # NOTE: columns are (blue, red): red minus blue decides, scaled so softmax is confident.
    w = np.array([[-12.0, 12.0], [0.0, 0.0], [12.0, -12.0]], np.float32)
    if swap:
        w = w[:, ::-1]
    dense.set_weights([w, np.zeros(2, np.float32)])
    rng = np.random.default_rng(0)
    calib = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(8)]
    if int8:
        export_int8(model, calib, out_dir / "model.tflite")
    else:
        export_float(model, out_dir / "model.tflite")
    (out_dir / "labels.txt").write_text("\n".join(labels or LABELS) + "\n")
    metrics = {"snapshot": snapshot, "accuracy": 1.0, "int8_drop": 0.0}
    (out_dir / "metrics.json").write_text(json.dumps(metrics))
    return out_dir


def upload_files(model_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(model_dir.iterdir()) if p.is_file()}


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, "PNG")
    return buf.getvalue()


def add_colour_shots(store: Any, instances: int = 10, per_instance: int = 2) -> None:
    """Red and blue squares on grey, with boxes and masks, several instances per class."""
    from capture.store import ShotRecord

    colours = {"part-red": (200, 30, 20), "part-blue": (20, 60, 200)}
    run_id = store.create_run("colours", "name = 'colours'", "{}", 0)
    store.upsert_background(1, "grey")
    index = 0
    rng = np.random.default_rng(1)
    for label, rgb in colours.items():
        for inst in range(instances):
            for _ in range(per_instance):
                img = np.full((48, 64, 3), 128, np.uint8)
                x, y = int(rng.integers(4, 30)), int(rng.integers(4, 20))
                img[y : y + 20, x : x + 24] = rgb
                mask = np.zeros((48, 64), np.uint8)
                mask[y : y + 20, x : x + 24] = 255
                m = store.write_file(f"masks/{run_id}/{index:06d}.png", _png(mask))
                record = ShotRecord(
                    label=label,
                    instance_id=f"{label}-{inst}",
                    path="",
                    sha256="0" * 64,
                    size=0,
                    run_id=run_id,
                    shot_index=index,
                    background_id=1,
                    pose="upright",
                    angle_cmd=float(index),
                    mask_path=m.path,
                    width=64,
                    height=48,
                    format="jpeg",
                    bbox_x=x,
                    bbox_y=y,
                    bbox_w=24,
                    bbox_h=20,
                )
                store.save_shots([(f"images/{run_id}/{index:06d}.jpg", _jpeg(img), record)])
                index += 1


def make_snapshot(store: Any, settings: Any) -> dict[str, Any]:
    """A real snapshot of the store (folder format only, to stay quick)."""
    from capture.snapshots.build import create_snapshot
    from capture.snapshots.filter import SnapshotFilter
    from capture.snapshots.splits import SplitRules

    rules = SplitRules(train=0.5, val=0.2, test=0.3, seed=0, group_by="instance")
    return create_snapshot(store, settings, SnapshotFilter(), rules, formats=("folder",))
