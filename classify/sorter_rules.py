"""The sorting rules inside the sorter's loop: measuring, checking, and what the page shows.

:class:`classify.sorter.Sorter` holds one :class:`SorterRules` and calls it at four points:
``take_reference`` (a still of the empty platform when a rule needs sizes), ``start`` (the rules
must fit the active model and the actuator, or the sorter refuses to start), each part (measure
it, then count which rule fired) and ``status`` (the page's read-only rules table and the rule
of each recent decision).  Keeping this here keeps the loop's own module about the loop.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from classify.actuator import bin_count
from classify.decide import BinChoice, choose_bin
from classify.recirculate import Recirculation
from classify.rules import check_rules, needs_sizes, rules_table
from classify.sorter_measure import PartSize, PlatformMeasurer, StillCamera
from rig.config import Settings
from rig.errors import CameraError, ConfigError

#: Recent decisions whose rule the page lists.
RECENT = 20


class SorterRules:
    """The rules of ``sorter.rules`` as one sorter applies them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rules = list(settings.sorter.rules)
        self.measuring = needs_sizes(self.rules)
        self._platform: PlatformMeasurer | None = None
        self._lock = threading.Lock()
        self._fired = [0] * len(self.rules)
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.last_size: PartSize | None = None
        self.recirculation = Recirculation(settings.sorter)

    def take_reference(self, camera: object) -> None:
        """A still of the empty platform, when a rule measures (else nothing).

        A camera without stills (or whose still fails) leaves the platform unmeasured: every
        part a size rule might take then goes to review."""
        if not self.measuring:
            return
        self._platform = None
        if not isinstance(camera, StillCamera):
            return
        platform = PlatformMeasurer.for_data_dir(self.settings.data.dir)
        platform.take_reference(camera)
        self._platform = platform

    def check(self, classifier: Any) -> None:
        """ConfigError when the rules do not fit the model's heads or the actuator's bins."""
        heads = None if classifier is None else getattr(classifier, "head_labels", None)
        actuator = self.settings.actuator
        check_rules(
            self.rules,
            heads,
            bin_count(actuator),
            actuator.review_bin,
            self.settings.sorter.recirculate_bin,
        )

    def measure(self, camera: object) -> dict[str, float | None] | None:
        """The part's sizes from a still (None when no rule measures; empty when unmeasured)."""
        size = self.measure_part(camera)
        return None if size is None else size.sizes

    def measure_part(self, camera: object) -> PartSize | None:
        """The part's measurement (its status and sizes) from a still; None when no rule
        measures.

        A camera error here is not a sorter fault: the part is unmeasured and goes to review,
        and the next part is measured afresh."""
        if not self.measuring:
            return None
        platform = self._platform
        if platform is None or not isinstance(camera, StillCamera):
            self.last_size = PartSize("no_reference", {})
        else:
            try:
                self.last_size = platform.measure(camera)
            except (CameraError, OSError) as exc:
                self.last_size = PartSize(f"camera_error: {exc}", {})
        return self.last_size

    def choose(
        self, prediction: Any, sizes: dict[str, float | None] | None, status: str | None
    ) -> BinChoice:
        """The part's bin (:func:`classify.decide.choose_bin`), sent round again instead of to
        review when its measurement ``status`` says another pass may show the size and the
        limit allows (:class:`classify.recirculate.Recirculation`)."""
        return choose_bin(prediction, self.settings, sizes, self.recirculation.offer(status))

    def record(self, choice: Any, label: str | None, sizes: dict[str, float | None] | None) -> None:
        """Count the rule that decided ``choice`` (a :class:`classify.decide.BinChoice`)."""
        fired = getattr(choice, "fired", None)
        self.recirculation.record(str(choice.rule))
        if fired is None and not self.rules:
            return
        with self._lock:
            for i, rule in enumerate(self.rules):
                if fired is not None and choice.rule == "sort_rule" and rule.title(i) == fired:
                    self._fired[i] += 1
            self._recent.appendleft(
                {
                    "label": label,
                    "bin": int(choice.bin),
                    "step": choice.rule,
                    "rule": fired,
                    "why": getattr(choice, "why", None),
                    "sizes": {k: round(v, 2) for k, v in (sizes or {}).items() if v is not None},
                    "measure": None if self.last_size is None else self.last_size.status,
                }
            )

    def status(self, classifier: Any) -> dict[str, Any]:
        """The Sorter page's rules card: the table, what each rule fired, recent decisions."""
        problem = None
        try:
            self.check(classifier)
        except ConfigError as exc:
            problem = str(exc)
        with self._lock:
            table = [
                {**row, "fired": count}
                for row, count in zip(rules_table(self.rules), self._fired, strict=True)
            ]
            recent = list(self._recent)
        platform = self._platform
        return {
            "table": table,
            "problem": problem,
            "measuring": self.measuring,
            "marker_found": None if platform is None else platform.marker_found,
            "recent": recent,
            "recirculation": self.recirculation.status(),
        }
