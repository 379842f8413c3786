"""Which bin a classified part goes to, and why.

Rules, in order: no model active -> the review bin (``no_model``); confidence below
``sorter.confidence_threshold`` -> the review bin (``uncertain``); a label without an entry in
``sorter.bins`` -> the review bin (``unmapped``); otherwise the label's bin (``confident``).
Every part that reaches the review bin because the model was unsure, or had no model, also goes
to the review queue with its crop, so a person can label it for the next snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.config import Settings


@dataclass(frozen=True)
class BinChoice:
    bin: int
    reason: str  # one of capture.store.sorting_schema.DECISION_REASONS

    @property
    def review(self) -> bool:
        """Whether a person should look at this part (its crop goes to the review queue)."""
        return self.reason in ("uncertain", "no_model")


def choose_bin(label: str | None, confidence: float, settings: Settings) -> BinChoice:
    """The bin for a prediction (``label`` None: no model was active)."""
    review_bin = settings.actuator.review_bin
    if label is None:
        return BinChoice(review_bin, "no_model")
    if confidence < settings.sorter.confidence_threshold:
        return BinChoice(review_bin, "uncertain")
    target = settings.sorter.bins.get(label)
    if target is None:
        return BinChoice(review_bin, "unmapped")
    return BinChoice(int(target), "confident")
