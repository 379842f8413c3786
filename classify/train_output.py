"""What training prints: TensorFlow's own noise kept out, the result in a few readable lines.

Why: a trainer reads the end of the output to decide whether to push the model.  TensorFlow
prints CUDA probing errors on machines without a GPU, oneDNN notices and the converter's MLIR
dump straight to file descriptor 2 (not through Python's ``sys.stderr``), which buried the
accuracy.  :func:`quiet_tensorflow` silences what environment variables and the ``logging`` and
``warnings`` modules control; :func:`native_output_quiet` parks fd 2 in a temporary file while a
noisy native call runs and replays it only if that call fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any


def quiet_tensorflow() -> None:
    """Silence TensorFlow's start-up chatter; call before ``import tensorflow``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl", "keras", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"tensorflow(\..*)?")
    warnings.filterwarnings("ignore", module=r"keras(\..*)?")
    warnings.filterwarnings("ignore", message=r".*(quantiz|Statistics for quantized).*")


@contextlib.contextmanager
def native_output_quiet() -> Iterator[None]:
    """Send fd 2 to a temporary file for the block; replay it to stderr if the block raises."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a daemon): nothing to quieten
        yield
        return
    with tempfile.TemporaryFile() as parked:
        sys.stderr.flush()
        os.dup2(parked.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            parked.seek(0)
            sys.stderr.write(parked.read().decode(errors="replace")[-20000:])
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def result_lines(metrics: dict[str, Any]) -> list[str]:
    """The readable summary of one training run: accuracy, per class, where the files are."""
    if metrics.get("int8_accuracy") is None:
        val = metrics.get("val_accuracy")
        return [
            f"NO TEST SPLIT: snapshot {metrics['snapshot']} has no test split, so the model's "
            "accuracy on unseen parts is unmeasured and the rig will refuse to activate it. "
            "Make a snapshot whose test split has shots (more part instances).",
            (
                f"best val accuracy {val:.3f} (epoch {metrics.get('best_epoch')}); "
                "confusion.png shows the val split"
                if val is not None
                else "no val split either: confusion.png is empty"
            ),
        ]
    lines = [
        f"held-out test ({metrics['counts']['test']} shots of snapshot {metrics['snapshot']}): "
        f"int8 accuracy {metrics['int8_accuracy']:.3f}, float {metrics['float_accuracy']:.3f} "
        f"(int8 drop {metrics['int8_drop']:+.3f}); best epoch {metrics['best_epoch']} of "
        f"{metrics['epochs_run']}, {metrics['train_seconds']:.0f} s",
        f"{'class':<28} {'recall':>7} {'precision':>9} {'shots':>6}",
    ]
    for label, row in (metrics.get("per_class") or {}).items():
        precision = "-" if row["precision"] is None else f"{row['precision']:.3f}"
        lines.append(f"{label[:28]:<28} {row['recall']:>7.3f} {precision:>9} {row['support']:>6}")
    lines.extend(head_lines(metrics))
    return lines


def head_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per attribute head of a multi-head model: its test accuracy, int8 and float."""
    lines = []
    for name, head in (metrics.get("heads") or {}).items():
        if head.get("int8_accuracy") is None:
            lines.append(f"head {name}: no test split")
            continue
        lines.append(
            f"head {name} ({len(head['labels'])} values): int8 accuracy "
            f"{head['int8_accuracy']:.3f}, float {head['float_accuracy']:.3f}"
        )
    return lines


def seeds_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and range over seeds of the test accuracies and the wall time per seed."""

    def spread(key: str) -> dict[str, float] | None:
        values = [float(r[key]) for r in runs if r.get(key) is not None]
        if not values:
            return None
        return {
            "mean": round(sum(values) / len(values), 4),
            "min": round(min(values), 4),
            "max": round(max(values), 4),
            "range": round(max(values) - min(values), 4),
        }

    return {
        "seeds": [r["seed"] for r in runs],
        "int8_accuracy": spread("int8_accuracy"),
        "float_accuracy": spread("float_accuracy"),
        "val_accuracy": spread("val_accuracy"),
        "wall_seconds": spread("wall_seconds"),
        "runs": runs,
    }
