"""What one training epoch needs, shared by the one-process trainer and the workers.

Why a module of its own: :mod:`classify.train` starts the workers (:mod:`classify.train_workers`)
and the workers need the trainer's epoch (its augmentations, class weights and log line); with
these in ``train`` the two modules imported each other in a circle.  Now both import this one,
which imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from classify.augment import AugmentConfig, augment
from rig.errors import StoreError


@dataclass
class Prepared:
    """One split as arrays: crops (``uint8``), class indices, and for training the extras."""

    crops: np.ndarray
    classes: np.ndarray
    matrices: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray | None] = field(default_factory=list)
    backgrounds: list[np.ndarray] = field(default_factory=list)


class EpochOptions(Protocol):
    """What an epoch reads of :class:`classify.train.TrainOptions`."""

    min_epoch_samples: int
    augment: AugmentConfig


def class_weights(classes: np.ndarray, labels: list[str]) -> dict[int, float]:
    """Inverse-frequency weights (mean 1); every class needs training shots."""
    counts = np.bincount(classes, minlength=len(labels))
    missing = [labels[i] for i, c in enumerate(counts) if c == 0]
    if missing:
        raise StoreError(
            f"the train split has no shots of {', '.join(missing)}; capture some, or leave "
            "these classes out of the snapshot's filter"
        )
    return {i: float(len(classes) / (len(labels) * c)) for i, c in enumerate(counts)}


def augmented_epoch(
    train: Prepared, opts: EpochOptions, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of fresh augmentations; small sets repeat to ``min_epoch_samples``."""
    repeats = max(1, -(-opts.min_epoch_samples // len(train.crops)))
    order = np.tile(np.arange(len(train.crops)), repeats)
    x = np.stack(
        [
            augment(train.crops[i], train.matrices[i], train.masks[i], train.backgrounds, rng,
                    opts.augment)
            for i in order
        ]
    )  # fmt: skip
    return x, train.classes[order]


def epoch_line(row: dict[str, Any]) -> str:
    """An epoch's log line: loss and accuracy, and the val split's when there is one."""
    line = f"epoch {row['epoch']}: loss {row['loss']:.4f} acc {row['accuracy']:.3f}"
    if "val_loss" in row:
        line += f" val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.3f}"
    return line
