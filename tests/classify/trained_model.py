"""One tiny model trained once per test process and shared by the classify tests.

Why cached here and not a conftest fixture: importing TensorFlow and training take most of the
classify tests' time, so test_train, test_export and test_runtime all use the same run.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from snapshot_factory import make_snapshot

SIZE = 48


@dataclass(frozen=True)
class Trained:
    snapshot: Path
    model_dir: Path
    metrics: dict
    log: tuple[str, ...]


@functools.cache
def trained() -> Trained:
    """Train the tiny backbone on a synthetic snapshot (about 20 s on 2 cores)."""
    from classify.train import TrainOptions, train

    root = Path(tempfile.mkdtemp(prefix="partrig-train-"))
    atexit.register(shutil.rmtree, root, True)
    snapshot = make_snapshot(root / "snap-0007")
    lines: list[str] = []
    opts = TrainOptions(backbone="tiny", size=SIZE, epochs=12, batch=16, patience=4)
    metrics = train(snapshot, root / "model", opts, log=lines.append)
    return Trained(snapshot, root / "model", metrics, tuple(lines))


#: The multi-head model's heads and the catalogue its snapshot carries (per label).
HEADS = ("label", "colour", "shape")
ATTRIBUTES = {
    "brick-red-square": {"colour": "red", "shape": "square"},
    "disc-red-round": {"colour": "red", "shape": "round"},
    "brick-blue-square": {"colour": "blue", "shape": "square"},
}


@functools.cache
def trained_heads() -> Trained:
    """A multi-head model (label, colour, shape) on the same synthetic parts, trained once per
    test process; smaller than :func:`trained` (32 px, few epochs): the tests check that every
    head is wired to its own output, not how good the model is."""
    import json

    from classify.train import TrainOptions, train

    root = Path(tempfile.mkdtemp(prefix="partrig-heads-"))
    atexit.register(shutil.rmtree, root, True)
    snapshot = make_snapshot(root / "snap-0008", snapshot_id="snap-0008")
    manifest = json.loads((snapshot / "manifest.json").read_text())
    for entry in manifest["classes"]:
        entry["attributes"] = ATTRIBUTES[entry["label"]]
    (snapshot / "manifest.json").write_text(json.dumps(manifest))
    lines: list[str] = []
    opts = TrainOptions(backbone="tiny", size=32, epochs=8, batch=16, patience=4, heads=HEADS)
    metrics = train(snapshot, root / "model", opts, log=lines.append)
    return Trained(snapshot, root / "model", metrics, tuple(lines))
