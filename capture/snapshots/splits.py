"""Leak-free train/val/test splits, grouped by physical part instance.

Why grouped: shots of one physical part at neighbouring angles are near-duplicates, so a split
drawn image by image puts the same part in train and test and inflates accuracy (a published
LEGO turntable set had 30% of its test images duplicated in train).  Here every shot of an
instance goes to the same split.

Why stable: a trainer compares models across snapshot versions, which is only fair if a part
instance never moves between splits.  Earlier assignments are passed in and kept; only new
instances are placed, deterministically from a hash of the seed and the instance id, greedily
into the split of their class that is furthest below its target share.  The same inputs always
give the same answer, whatever order they arrive in.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rig.errors import RigError

SPLITS = ("train", "val", "test")


class SplitError(RigError, ValueError):
    """A class cannot be split by instance as asked; the message says which and what to do."""


@dataclass(frozen=True)
class Group:
    """All the shots of one group (normally one physical part instance) of one class."""

    key: str
    label: str
    shots: int


@dataclass(frozen=True)
class SplitRules:
    train: float = 0.7
    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    group_by: str = "instance"  # "instance" (leak-free) or a weaker "session" / "pose" fallback
    #: Let a class end up with no val or test shots (refused otherwise: its score would be
    #: missing from every held-out figure without anyone noticing).
    allow_empty: bool = False

    def fractions(self) -> dict[str, float]:
        total = self.train + self.val + self.test
        if total <= 0 or min(self.train, self.val, self.test) < 0:
            raise SplitError("split fractions must be >= 0 and add up to more than 0")
        return {"train": self.train / total, "val": self.val / total, "test": self.test / total}

    @property
    def weaker(self) -> bool:
        return self.group_by != "instance"


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def needed_groups(rules: SplitRules) -> int:
    """How many groups a class needs so that every split with a non-zero fraction gets one."""
    return sum(1 for f in rules.fractions().values() if f > 0)


def assign_splits(
    groups: Iterable[Group],
    rules: SplitRules,
    previous: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Map each group key to ``train``, ``val`` or ``test``.

    ``previous`` holds assignments from earlier snapshots; they are kept as they are.  Raises
    :class:`SplitError` naming every class with too few groups to give each split one group,
    unless ``rules.group_by`` asks for a weaker split (the caller then groups by session or pose,
    and the report marks the split as weaker).
    """
    fractions = rules.fractions()
    previous = dict(previous or {})
    by_label: dict[str, list[Group]] = defaultdict(list)
    for g in groups:
        by_label[g.label].append(g)

    need = needed_groups(rules)
    short = sorted(
        f"{label} ({len(gs)} instance{'s' if len(gs) != 1 else ''})"
        for label, gs in by_label.items()
        if len(gs) < need
    )
    if short and not rules.weaker:
        raise SplitError(
            f"too few part instances to split by instance (each class needs {need}): "
            + ", ".join(short)
            + ". Capture more instances of these parts, drop them with a filter, or ask for a "
            "weaker per-session or per-pose split (marked as weaker in the report)."
        )

    result: dict[str, str] = {}
    for label in sorted(by_label):
        result.update(_assign_class(by_label[label], fractions, previous, rules.seed))
    return result


def _assign_class(
    groups: list[Group], fractions: dict[str, float], previous: Mapping[str, str], seed: int
) -> dict[str, str]:
    out: dict[str, str] = {}
    shots = dict.fromkeys(SPLITS, 0)
    count = dict.fromkeys(SPLITS, 0)
    fresh: list[Group] = []
    for g in groups:
        old = previous.get(g.key)
        if old in SPLITS:
            out[g.key] = old
            shots[old] += g.shots
            count[old] += 1
        else:
            fresh.append(g)
    fresh.sort(key=lambda g: _rank(seed, g.key))
    total = sum(g.shots for g in groups) or 1
    for g in fresh:
        # NOTE: first make sure every split with a share has one group, then fill the split
        # that is furthest below its target share of this class's shots.
        empty = [s for s in SPLITS if fractions[s] > 0 and count[s] == 0]
        if empty:
            target = max(empty, key=lambda s: (fractions[s], -SPLITS.index(s)))
        else:
            target = max(
                (s for s in SPLITS if fractions[s] > 0),
                key=lambda s: (fractions[s] - shots[s] / total, -SPLITS.index(s)),
            )
        out[g.key] = target
        shots[target] += g.shots
        count[target] += 1
    return out


def empty_splits(
    groups: Iterable[Group], assigned: Mapping[str, str], rules: SplitRules
) -> dict[str, list[str]]:
    """Per class, the splits with a non-zero fraction that got none of its shots."""
    fractions = rules.fractions()
    got: dict[str, set[str]] = defaultdict(set)
    for g in groups:
        got[g.label].add(assigned[g.key])
    return {
        label: [s for s in SPLITS if fractions[s] > 0 and s not in have]
        for label, have in sorted(got.items())
        if any(fractions[s] > 0 and s not in have for s in SPLITS)
    }


def refuse_empty_splits(
    groups: Iterable[Group], assigned: Mapping[str, str], rules: SplitRules
) -> dict[str, list[str]]:
    """Raise SplitError naming each class left without val or test shots (unless allowed).

    Returns the empty splits (for the report) when ``rules.allow_empty`` lets them through.
    """
    empty = empty_splits(groups, assigned, rules)
    if empty and not rules.allow_empty:
        raise SplitError(
            "these classes would have no shots in a split, so no held-out score would cover "
            "them: "
            + "; ".join(f"{label}: no {' or '.join(s)}" for label, s in empty.items())
            + ". Capture or import more parts of them, leave them out with --label, or accept "
            "it with --allow-empty-splits (the report lists them)."
        )
    return empty
