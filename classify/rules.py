"""Bins chosen by rules over predicted attributes and measured size (``sorter.rules``).

The rules' shape and order are checked when the configuration is read
(:mod:`rig.sort_rules`).  This module does the two things that need more than the file:

* :func:`check_rules`: do the rules fit the active model (every head they name exists and knows
  every value they name) and the actuator (every bin exists and none is the review bin)?
  The sorter refuses to start when they do not, naming the rule.
* :func:`apply_rules`: step 4 of the decision order (:mod:`classify.decide`).  Rules are tried
  in order; each condition is *true*, *false* or *unknown*.  A rule with a false condition is
  passed over; the first whose conditions are all true picks the bin.  A rule that could match
  but has an unknown condition - the size was not measured (no marker, a screw standing on its
  head has no shaft to see), or the head named is not sure of its answer - stops the search and
  sends the part to review: a later, more general rule must not take a part an earlier rule
  might have claimed.

Why unknown is not false: "category screw and shaft 9-11 mm -> bin 3" then "category screw ->
bin 5" would otherwise put every unmeasured M4x10 into bin 5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rig.errors import ConfigError
from rig.sort_rules import LABEL_HEAD, SIZE_KEYS, SortRule

#: Why a rule sent a part to review (``BinChoice.rule`` values; :mod:`classify.decide`).
UNMEASURED = "unmeasured"
UNCERTAIN_ATTRIBUTE = "attribute"


@dataclass(frozen=True)
class RuleOutcome:
    """What the rules did with one part."""

    #: Index of the rule that decided (0-based), and its title (name or "rule N").
    index: int
    title: str
    #: The bin it chose, or None: the part goes to review (``why`` says which kind).
    bin: int | None
    #: ``fired``, :data:`UNMEASURED` or :data:`UNCERTAIN_ATTRIBUTE`.
    why: str
    #: The size the rule needed and the part did not show (``UNMEASURED`` only).
    missing: str | None = None


def needs_sizes(rules: Sequence[SortRule]) -> bool:
    """Whether any rule looks at a measured size (the sorter then measures every part)."""
    return any(rule.ranges() for rule in rules)


def _size_holds(value: float | None, bounds: tuple[float, float]) -> bool | None:
    if value is None:
        return None
    return bounds[0] <= float(value) < bounds[1]


def apply_rules(
    rules: Sequence[SortRule],
    values: Mapping[str, str | None],
    sizes: Mapping[str, float | None] | None,
) -> RuleOutcome | None:
    """The first rule that decides, or None when no rule matches (the label map is next).

    ``values``: head name -> its trusted top-1 value, or None when the head is not sure (or the
    model has no such head); ``label`` is the label head.  ``sizes``: the part's measured sizes
    (:data:`rig.sort_rules.SIZE_KEYS`), None or missing when unmeasured.
    """
    measured = sizes or {}
    for index, rule in enumerate(rules):
        unknown: str | None = None
        missing: str | None = None
        matched = True
        for key, cond in rule.when.items():
            if key in SIZE_KEYS:
                holds = _size_holds(measured.get(key), cond)
                why = UNMEASURED
            else:
                value = values.get(key)
                holds = None if value is None else value in cond
                why = UNCERTAIN_ATTRIBUTE
            if holds is False:
                matched = False
                break
            if holds is None and unknown is None:
                unknown = why
                missing = key if why == UNMEASURED else None
        if not matched:
            continue
        if unknown is not None:
            return RuleOutcome(index, rule.title(index), None, unknown, missing)
        return RuleOutcome(index, rule.title(index), rule.bin, "fired")
    return None


def check_rules(
    rules: Sequence[SortRule],
    heads: Mapping[str, Sequence[str]] | None,
    bin_count: int,
    review_bin: int,
    recirculate_bin: int | None = None,
) -> None:
    """ConfigError when a rule names a head or value the model lacks, or a bin that cannot be.

    ``heads``: the active model's heads (name -> labels), the label head under ``label``; None
    when no model is active (only the bins are checked).  ``recirculate_bin``
    (``sorter.recirculate_bin``) must exist on the actuator too; that it is neither the review
    bin nor a rule's is checked when the configuration is read (:mod:`rig.config`).
    """
    if recirculate_bin is not None and not 0 <= recirculate_bin < bin_count:
        raise ConfigError(
            f"sorter.recirculate_bin {recirculate_bin} does not exist; the actuator has bins "
            f"0..{bin_count - 1}: give the bin whose chute leads back to the feeder"
        )
    for index, rule in enumerate(rules):
        where = f"sorter.rules[{index}] ({rule.title(index)})"
        if not 0 <= rule.bin < bin_count:
            raise ConfigError(
                f"{where}: bin {rule.bin} does not exist; the actuator has bins 0..{bin_count - 1}"
            )
        if rule.bin == review_bin:
            raise ConfigError(
                f"{where}: bin {rule.bin} is the review bin (actuator.review_bin); parts sorted "
                "there would skip the review queue. Choose another bin"
            )
        if heads is None:
            continue
        for key, wanted in rule.heads().items():
            if key not in heads:
                raise ConfigError(
                    f"{where}: the model has no {key!r} head (its heads: "
                    f"{', '.join(heads)}); train one with `partrig train --heads "
                    f"{LABEL_HEAD},{key}` or change the rule"
                )
            missing = [v for v in wanted if v not in heads[key]]
            if missing:
                known = ", ".join(list(heads[key])[:20])
                raise ConfigError(
                    f"{where}: the {key} head does not know {', '.join(map(repr, missing))} "
                    f"(it knows {known}); values are compared exactly"
                )


def rules_table(rules: Sequence[SortRule]) -> list[dict[str, object]]:
    """The rules as the Sorter page's table shows them (read-only)."""
    return [
        {"index": i, "title": r.title(i), "when": r.describe(), "bin": r.bin}
        for i, r in enumerate(rules)
    ]
