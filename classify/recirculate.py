"""Send a part round again when its pose does not show the size a rule needs.

A camera looking down cannot see the length of a screw standing on its head, and a part still
turning on the platform cannot be measured.  Real part sorters neither guess nor ask a person:
they return such a part to the feeder, and it comes round again, usually lying down the next
time.  ``sorter.recirculate_bin`` names the actuator bin whose chute leads back to the feeder;
a part a size rule could not measure *because of how it lies* (the measurement found the part
but not the size: :data:`POSE`, or it was moving: :data:`MOVING`) goes there, decision rule
``recirculate``.  Everything else a rule could not measure (no marker on the sheet, a failed
still) still goes to review: another pass would not help.

Why the limit counts recirculations *in a row*: on a real rig the sorter cannot tell a part
that comes back from a new one (a screw looks like every other screw of its kind), so a count
per part cannot be kept honestly.  What the sorter can count is its own decisions: after
``sorter.max_recirculations`` recirculations in a row, the next part it cannot measure goes to
review.  Two things follow, and docs/sorter.md ("Recirculation") says them to the operator:

* with a return chute that leads straight back onto the platform (the part comes back before
  the feeder drops a new one, as the simulated feeder does by default), recirculations in a row
  are one part's passes, so the limit *is* per part;
* with a return into a hopper, parts mix, and the limit is a guard that the loop always ends:
  among any ``max_recirculations + 1`` decisions at least one is final (a bin or review), so a
  part that can never show its size (one that only stands) cannot keep the loop turning.

The number of passes a part takes is then bounded by the pose statistics, not by the sorter:
a part that stands with probability q takes 1 / (1 - q) passes on average; ``bench/measure.py``
reports the mean and the worst case from the simulator's drop log.
"""

from __future__ import annotations

import threading

from rig.config import SorterConfig

#: ``BinChoice.rule`` of a part sent round again.
RECIRCULATE = "recirculate"
#: Why: the part was measured, but its pose does not show the size the rule needs.
POSE = "not visible in this pose"
#: Why: the part moved between the two measuring stills.
MOVING = "still moving"


class Recirculation:
    """Whether the part being decided may go round again, and the count of recirculations in a
    row that limits it.  Thread-safe (the sorter decides on its back thread, the page reads)."""

    def __init__(self, config: SorterConfig) -> None:
        self.bin = config.recirculate_bin
        self.limit = int(config.max_recirculations)
        self._lock = threading.Lock()
        self.in_a_row = 0
        self.total = 0

    def offer(self, status: str | None) -> str | None:
        """Why the part may go round again (:data:`POSE`, :data:`MOVING`), or None: no
        recirculation bin, the limit is reached, or its measurement ``status``
        (:class:`classify.sorter_measure.PartSize`) would not change on another pass."""
        if self.bin is None or status not in ("measured", "moving"):
            return None
        with self._lock:
            if self.in_a_row >= self.limit:
                return None
        return MOVING if status == "moving" else POSE

    def record(self, rule: str) -> None:
        """Count the decision just made (its ``BinChoice.rule``): a recirculation adds to the
        run in a row, any other decision ends it."""
        with self._lock:
            if rule == RECIRCULATE:
                self.in_a_row += 1
                self.total += 1
                return
            self.in_a_row = 0

    def status(self) -> dict[str, int | None]:
        with self._lock:
            return {
                "bin": self.bin,
                "max_in_a_row": self.limit,
                "in_a_row": self.in_a_row,
                "recirculated": self.total,
            }
