"""``partrig train --seeds N``: the same recipe under N seeds, and how much the result moves.

Why: one seed's accuracy on a few held-out parts says little; on real bricks seed 0 gave 0.695
and seed 1 0.820 with the same data.  Training N models (seeds ``seed .. seed+N-1``) into
``OUT/seed-<s>/`` and reporting the mean and the range of their test accuracies shows whether
a change to the recipe is a real gain or noise.  ``OUT/seeds.json`` keeps the summary.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from capture.store.files import write_durably
from classify.train_output import seeds_summary
from rig.errors import ModelError


def train_seeds(dataset: Any, out: Path, opts: Any, count: int, log: Any = print) -> dict[str, Any]:
    """Train ``count`` models with consecutive seeds; the summary (also in ``seeds.json``)."""
    from classify.train import train

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ModelError(f"{out} exists and is not empty; choose a new --out folder")
    runs: list[dict[str, Any]] = []
    for k in range(count):
        seed = opts.seed + k
        log(f"seed {seed} ({k + 1} of {count})")
        started = time.monotonic()
        metrics = train(dataset, out / f"seed-{seed}", dataclasses.replace(opts, seed=seed), log)
        runs.append(
            {
                "seed": seed,
                "model": f"seed-{seed}",
                "int8_accuracy": metrics.get("int8_accuracy"),
                "float_accuracy": metrics.get("float_accuracy"),
                "val_accuracy": metrics.get("val_accuracy"),
                "best_epoch": metrics.get("best_epoch"),
                "wall_seconds": round(time.monotonic() - started, 1),
            }
        )
    summary = seeds_summary(runs)
    write_durably(out / "seeds.json", json.dumps(summary, indent=2).encode())
    return summary


def summary_line(summary: dict[str, Any]) -> str:
    """``int8 test accuracy over 3 seeds: mean 0.912, range 0.031 (0.894-0.925); ...``"""
    acc, wall = summary["int8_accuracy"], summary["wall_seconds"]
    n = len(summary["seeds"])
    if acc is None:
        return f"{n} seeds trained; NO TEST SPLIT, so no accuracy to compare"
    return (
        f"int8 test accuracy over {n} seeds: mean {acc['mean']:.3f}, range {acc['range']:.3f} "
        f"({acc['min']:.3f}-{acc['max']:.3f}); {wall['mean']:.0f} s per seed"
    )
