"""Sorting rules as the configuration file states them: which bin for which attributes and size.

Why here, in the bottom layer: ``[sorter]`` is part of the one configuration file
(:mod:`rig.config`), so the rules must be checked when the file is read - an inverted range or
two rules fighting over the same parts is refused at start-up, naming the rule, not discovered
when a screw lands in the wrong bin.  What needs the model (does it have a ``colour`` head,
does that head know ``"red"``) and the actuator (does bin 9 exist) is checked where those are
known, by :func:`classify.rules.check_rules`.

A rule, in ``partrig.toml``::

    [[sorter.rules]]
    name = "M4x10"                      # optional; shown on the Sorter page
    bin = 3
    when = { category = "screw", shaft_length_mm = [9.0, 11.0] }

    [[sorter.rules]]
    bin = 1
    when = { colour = ["red", "orange"] }

``when`` holds conditions that must all hold:

* a **measured size** (:data:`SIZE_KEYS`, millimetres or mm²) takes a range ``[low, high]``:
  ``low <= size < high`` (half-open, so ``[8, 9]`` and ``[9, 10]`` touch without overlapping);
* any other key is a **model head** (``label`` is the part's label; others such as ``colour``
  or ``category`` are attribute heads trained with ``partrig train --heads``) and takes one
  value or a list of values, any of which matches.

Rules are tried in order and the first whose conditions all hold picks the bin.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Sizes the sorter measures on the sheet plane (``capture``'s ``Measurement`` fields).
SIZE_KEYS = ("length_mm", "width_mm", "area_mm2", "shaft_length_mm", "head_length_mm")
#: The key that names the model's label head.
LABEL_HEAD = "label"
_HEAD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_RULES = 64
MAX_VALUES = 64


class SortRule(BaseModel):
    """One rule: when every condition in ``when`` holds, the part goes to ``bin``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bin: int = Field(ge=0, le=15, description="bin the matching parts go to")
    name: str = Field("", max_length=64, description="shown on the Sorter page")
    when: dict[str, Any] = Field(min_length=1, description="conditions that must all hold")

    @field_validator("when")
    @classmethod
    def _conditions(cls, when: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in when.items():
            if key in SIZE_KEYS:
                out[key] = _range(key, value)
            elif key.endswith(("_mm", "_mm2")):
                raise ValueError(
                    f"{key!r} is not a size the sorter measures; use one of {', '.join(SIZE_KEYS)}"
                )
            elif not _HEAD_NAME.match(key):
                raise ValueError(
                    f"{key!r} is not a head name (lower-case letters, digits, _) or a size "
                    f"({', '.join(SIZE_KEYS)})"
                )
            else:
                out[key] = _values(key, value)
        return out

    def ranges(self) -> dict[str, tuple[float, float]]:
        """The size conditions: key -> (low, high), ``low <= size < high``."""
        return {k: v for k, v in self.when.items() if k in SIZE_KEYS}

    def heads(self) -> dict[str, tuple[str, ...]]:
        """The head conditions: head name -> values any of which matches."""
        return {k: v for k, v in self.when.items() if k not in SIZE_KEYS}

    def title(self, index: int) -> str:
        """The rule's name, or ``rule N`` (1-based, as the page and errors count)."""
        return self.name or f"rule {index + 1}"

    def describe(self) -> str:
        """The conditions in words: ``category screw, shaft_length_mm 9-11``."""
        parts = []
        for key, value in self.when.items():
            if key in SIZE_KEYS:
                parts.append(f"{key} {value[0]:g}-{value[1]:g}")
            else:
                parts.append(f"{key} {' or '.join(value)}")
        return ", ".join(parts)


def _range(key: str, value: Any) -> tuple[float, float]:
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )
    if not ok:
        raise ValueError(
            f"{key} takes a range of two numbers in its unit, the lower first (got {value!r})"
        )
    low, high = float(value[0]), float(value[1])
    if low < 0:
        raise ValueError(f"{key} range [{low:g}, {high:g}] starts below 0")
    if high <= low:
        raise ValueError(
            f"{key} range [{low:g}, {high:g}] is inverted or empty: put the lower bound first, "
            "and make it smaller than the upper"
        )
    return low, high


def _values(key: str, value: Any) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if (
        not isinstance(values, list)
        or not values
        or len(values) > MAX_VALUES
        or not all(isinstance(v, str) and v for v in values)
    ):
        raise ValueError(f"{key} takes a value or a list of values, as the head names them")
    return tuple(dict.fromkeys(values))


def _intersect(a: Any, b: Any) -> bool:
    if isinstance(a[0], float):
        return a[0] < b[1] and b[0] < a[1]
    return bool(set(a) & set(b))


def _covers(general: Any, specific: Any) -> bool:
    if isinstance(general[0], float):
        return general[0] <= specific[0] and specific[1] <= general[1]
    return set(specific) <= set(general)


def check_order(rules: list[SortRule]) -> None:
    """Refuse rules that fight: ValueError naming them.

    * Two rules with the same conditions whose ranges overlap (and whose values share one):
      a part in the overlap could go to either; make the ranges touch instead.
    * A rule that can never fire because an earlier one matches every part it does.
    """
    if len(rules) > MAX_RULES:
        raise ValueError(f"at most {MAX_RULES} rules (got {len(rules)})")
    for j, later in enumerate(rules):
        for i, earlier in enumerate(rules[:j]):
            a, b = earlier.when, later.when
            if set(a) <= set(b) and all(_covers(a[k], b[k]) for k in a):
                raise ValueError(
                    f"{later.title(j)} ({later.describe()}) can never fire: "
                    f"{earlier.title(i)} ({earlier.describe()}) before it matches every part "
                    "it does; remove it or move it first"
                )
            if set(a) == set(b) and earlier.ranges() and all(_intersect(a[k], b[k]) for k in a):
                overlaps = ", ".join(
                    f"{k} [{a[k][0]:g}, {a[k][1]:g}) and [{b[k][0]:g}, {b[k][1]:g})"
                    for k in earlier.ranges()
                )
                raise ValueError(
                    f"{earlier.title(i)} and {later.title(j)} overlap ({overlaps}): a part in "
                    "the overlap could go to either bin; make the ranges meet without overlapping"
                )
