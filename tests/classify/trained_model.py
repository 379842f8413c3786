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
