"""Which bin a classified part goes to, and why.

Rules, in order (contracts, "Models and edits"):

1. no model active -> the review bin (``no_model``);
2. open-set reject: the part's open-set score (:mod:`classify.open_set`) is above the model's
   calibrated threshold -> the review bin (``uncertain``, rule ``open_set``);
3. margin and confidence: top-1 minus top-2 below the margin, or top-1 below
   ``sorter.confidence_threshold`` -> the review bin (``uncertain``, rule ``margin`` or
   ``confidence``);
4. attribute and size rules (none yet: measurements, contracts "#11", slot in here);
5. label map: the label's bin in ``sorter.bins`` (``confident``);
6. a label without a bin -> the review bin (``unmapped``).

Rejects (rules 1-3) also go to the review queue with their crop, so a person can label them.

Why configuration may only tighten: the model's threshold was calibrated on held-out data for
a known share of accepted parts; a looser value from a configuration file would send unknown
parts into bins unmeasured.  So the effective open-set threshold is the lower of the model's and
``sorter.open_set_threshold`` (0, the default, leaves the model's), and the effective margin
the higher of the model's ``min_margin`` and ``sorter.min_margin``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rig.config import Settings

#: Rules whose parts go to the review queue.
REVIEW_RULES = ("no_model", "open_set", "margin", "confidence")


@dataclass(frozen=True)
class BinChoice:
    bin: int
    reason: str  # one of capture.store.sorting_schema.DECISION_REASONS
    #: Which rule decided: no_model, open_set, margin, confidence, mapped or unmapped.
    rule: str = "mapped"

    @property
    def review(self) -> bool:
        """Whether a person should look at this part (its crop goes to the review queue)."""
        return self.rule in REVIEW_RULES


@dataclass(frozen=True)
class Limits:
    """The thresholds in force for one model under this configuration."""

    open_set_threshold: float | None
    min_margin: float
    min_confidence: float


def limits(prediction: Any, settings: Settings) -> Limits:
    """Effective thresholds: the model's, tightened (never loosened) by the configuration."""
    cfg = settings.sorter
    model_threshold = getattr(prediction, "open_set_threshold", None)
    threshold = model_threshold
    if model_threshold is not None and cfg.open_set_threshold > 0:
        threshold = min(float(model_threshold), float(cfg.open_set_threshold))
    margin = max(float(getattr(prediction, "min_margin", 0.0) or 0.0), float(cfg.min_margin))
    return Limits(threshold, margin, float(cfg.confidence_threshold))


def choose_bin(prediction: Any, settings: Settings) -> BinChoice:
    """The bin for a :class:`classify.runtime.Prediction` (None: no model was active)."""
    review_bin = settings.actuator.review_bin
    if prediction is None:
        return BinChoice(review_bin, "no_model", "no_model")
    bounds = limits(prediction, settings)
    score = getattr(prediction, "open_set_score", None)
    threshold = bounds.open_set_threshold
    if threshold is not None and score is not None and score > threshold:
        return BinChoice(review_bin, "uncertain", "open_set")
    if float(getattr(prediction, "margin", 1.0)) < bounds.min_margin:
        return BinChoice(review_bin, "uncertain", "margin")
    if float(prediction.confidence) < bounds.min_confidence:
        return BinChoice(review_bin, "uncertain", "confidence")
    target = settings.sorter.bins.get(prediction.label)
    if target is None:
        return BinChoice(review_bin, "unmapped", "unmapped")
    return BinChoice(int(target), "confident", "mapped")
