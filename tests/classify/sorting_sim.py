"""A simulated sorting rig for the sorter's tests: feeder, sim actuator, store and sorter.

The classifiers here are oracles (they ask the simulator what the part really is), so the
tests check the *loop* (one decision and one firing per part, the review path, faults, hot
swaps) independently of how good a trained model is; tests/test_end_to_end.py uses a real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capture.store import DatasetStore
from classify.actuator_sim import SimActuator
from classify.feeder_sim import SimFeeder
from classify.runtime import Prediction
from classify.sorter import Sorter
from rig.config import Settings, apply_sim
from rig.errors import ModelError
from rig.sim.catalogue import trainable_labels
from rig.sim.clock import SimClock

KNOWN = trainable_labels()
#: Bin 0 is the review bin; every trainable label has a bin of its own from 1.
BINS = {label: i + 1 for i, label in enumerate(KNOWN)}


class OracleClassifier:
    """Answers the true label with ``confidence``; unknown parts get a low-confidence guess."""

    runtime = "oracle"

    def __init__(self, feeder: SimFeeder, confidence: float = 0.97, guess_conf: float = 0.4):
        self.feeder = feeder
        self.confidence = confidence
        self.guess_conf = guess_conf
        self.calls = 0

    def predict(self, image_rgb, bbox=None, colour_matrix=None, top_k=3) -> Prediction:
        self.calls += 1
        truth = self.feeder.truth()
        if truth in KNOWN:
            return Prediction(truth, KNOWN.index(truth), self.confidence,
                              [(truth, self.confidence)])  # fmt: skip
        guess = KNOWN[0]
        return Prediction(guess, 0, self.guess_conf, [(guess, self.guess_conf)])


class BrokenClassifier:
    runtime = "oracle"

    def predict(self, *args: Any, **kwargs: Any) -> Prediction:
        raise ModelError("the interpreter failed to invoke (simulated)")


def sorter_settings(**sorter: Any) -> Settings:
    settings = apply_sim(Settings())
    settings.sorter.bins = dict(BINS)
    settings.sorter.stuck_after_s = 5.0
    for key, value in sorter.items():
        setattr(settings.sorter, key, value)
    return settings


@dataclass
class SortingRig:
    settings: Settings
    clock: SimClock
    feeder: SimFeeder
    actuator: SimActuator
    store: DatasetStore
    sorter: Sorter
    oracle: OracleClassifier

    def close(self) -> None:
        self.sorter.close()
        self.store.close()

    def truth(self, drop_id: str | None) -> str:
        """What the part of a decision (its ``drop_id``) really was: the feeder's drop log."""
        return self.feeder.drop(drop_id).label


def make_rig(
    data_dir: Path,
    *,
    seed: int = 1,
    unknown_rate: float = 0.1,
    preview_size: tuple[int, int] = (320, 240),
    settings: Settings | None = None,
    model: bool = True,
) -> SortingRig:
    """A sorting rig on a virtual clock; 320x240 frames keep rendering cheap."""
    settings = settings or sorter_settings()
    clock = SimClock(0)
    feeder = SimFeeder(
        settings, clock, seed=seed, unknown_rate=unknown_rate, preview_size=preview_size
    )
    actuator = SimActuator(feeder.world, clock=clock)
    store = DatasetStore.open(data_dir)
    sorter = Sorter(feeder.camera, actuator, store, settings, clock)
    oracle = OracleClassifier(feeder)
    if model:
        sorter.set_classifier(oracle, "model-0001")
    return SortingRig(settings, clock, feeder, actuator, store, sorter, oracle)
