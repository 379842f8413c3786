"""Which bin a classified part goes to, and why.

Rules, in order (contracts, "Models and edits"):

1. no model active -> the review bin (``no_model``);
2. open-set reject: the part's open-set score (:mod:`classify.open_set`) is above the model's
   calibrated threshold -> the review bin (``uncertain``, rule ``open_set``);
3. margin and confidence: top-1 minus top-2 below the margin, or top-1 below
   ``sorter.confidence_threshold`` -> the review bin (``uncertain``, rule ``margin`` or
   ``confidence``);
4. attribute and size rules (``sorter.rules``, :mod:`classify.rules`): the first rule whose
   conditions all hold picks the bin (``confident``, rule ``sort_rule``, ``fired`` names it);
   a rule that might match but whose size was not measured or whose attribute head is unsure
   sends the part to review (``uncertain``, rule ``unmeasured`` or ``attribute``) - unless
   the size was not seen because of how the part lies and it may go round again
   (:mod:`classify.recirculate`): then the recirculation bin (``uncertain``, rule
   ``recirculate``, not a review item: the part comes back through the feeder).  An
   attribute head's answer counts only when it passes the same margin, confidence and (if
   calibrated) open-set limits as the label;
5. label map: the label's bin in ``sorter.bins`` (``confident``);
6. a label without a bin -> the review bin (``unmapped``).

Rejects (rules 1-3, and the rules' review outcomes) also go to the review queue with their crop,
so a person can label them.

Why configuration may only tighten: the model's threshold was calibrated on held-out data for
a known share of accepted parts; a looser value from a configuration file would send unknown
parts into bins unmeasured.  So the effective open-set threshold is the lower of the model's and
``sorter.open_set_threshold`` (0, the default, leaves the model's), and the effective margin
the higher of the model's ``min_margin`` and ``sorter.min_margin``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from classify.recirculate import POSE, RECIRCULATE
from classify.rules import UNCERTAIN_ATTRIBUTE, UNMEASURED, apply_rules
from rig.config import Settings

#: Rules whose parts go to the review queue.
REVIEW_RULES = ("no_model", "open_set", "margin", "confidence", UNMEASURED, UNCERTAIN_ATTRIBUTE)
#: ``BinChoice.rule`` when a sorting rule picked the bin.
SORT_RULE = "sort_rule"


@dataclass(frozen=True)
class BinChoice:
    bin: int
    reason: str  # one of capture.store.sorting_schema.DECISION_REASONS
    #: Which step decided: no_model, open_set, margin, confidence, sort_rule, unmeasured,
    #: attribute, mapped or unmapped.
    rule: str = "mapped"
    #: The sorting rule that decided (its name or "rule N"), when one did.
    fired: str | None = None
    #: Why, in words, when the part was sent round again: ``recirculate: <size> <why>``.
    why: str | None = None

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


def trusted(head: Any, bounds: Limits) -> bool:
    """Whether an attribute head's answer passes the limits a label must pass."""
    margin = max(bounds.min_margin, float(getattr(head, "min_margin", 0.0) or 0.0))
    score, threshold = (
        getattr(head, "open_set_score", None),
        getattr(head, "open_set_threshold", None),
    )
    if score is not None and threshold is not None and score > threshold:
        return False
    return float(head.margin) >= margin and float(head.confidence) >= bounds.min_confidence


def head_values(prediction: Any, bounds: Limits) -> dict[str, str | None]:
    """Each head's trusted top-1 (None when unsure); the label head under ``label``."""
    values: dict[str, str | None] = {"label": str(prediction.label)}
    for name, head in (getattr(prediction, "heads", None) or {}).items():
        values[name] = str(head.label) if trusted(head, bounds) else None
    return values


def choose_bin(
    prediction: Any,
    settings: Settings,
    sizes: Mapping[str, float | None] | None = None,
    recirculate: str | None = None,
) -> BinChoice:
    """The bin for a :class:`classify.runtime.Prediction` (None: no model was active) and, for
    the size rules, the part's measured sizes (``capture``'s ``Measurement`` fields).

    ``recirculate``: why the part may go round again when a size rule cannot see its size
    (:meth:`classify.recirculate.Recirculation.offer`), None when it may not."""
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
    rules = settings.sorter.rules
    if rules:
        outcome = apply_rules(rules, head_values(prediction, bounds), sizes)
        if outcome is not None and outcome.bin is not None:
            return BinChoice(outcome.bin, "confident", SORT_RULE, outcome.title)
        recirculate_bin = settings.sorter.recirculate_bin
        if (
            outcome is not None
            and outcome.why == UNMEASURED
            and recirculate is not None
            and recirculate_bin is not None
        ):
            seen = f"{outcome.missing or 'size'} {POSE}" if recirculate == POSE else recirculate
            why = f"{RECIRCULATE}: {seen}"
            return BinChoice(recirculate_bin, "uncertain", RECIRCULATE, outcome.title, why)
        if outcome is not None:
            return BinChoice(review_bin, "uncertain", outcome.why, outcome.title)
    target = settings.sorter.bins.get(prediction.label)
    if target is None:
        return BinChoice(review_bin, "unmapped", "unmapped")
    return BinChoice(int(target), "confident", "mapped")
