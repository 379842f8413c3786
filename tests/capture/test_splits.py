"""Split invariants: grouped, stratified, deterministic, stable across snapshot versions."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.snapshots.splits import Group, SplitError, SplitRules, assign_splits

groups_strategy = st.lists(
    st.tuples(st.sampled_from(["3001", "3020", "nut", "screw"]), st.integers(1, 40)),
    min_size=1,
    max_size=60,
).map(lambda xs: [Group(key=f"i{n}", label=lab, shots=s) for n, (lab, s) in enumerate(xs)])


def _enough(groups: list[Group], need: int = 3) -> bool:
    per: dict[str, int] = {}
    for g in groups:
        per[g.label] = per.get(g.label, 0) + 1
    return all(n >= need for n in per.values())


@settings(max_examples=150, deadline=None)
@given(groups_strategy, st.integers(0, 2**16))
def test_every_group_gets_exactly_one_split_and_order_does_not_matter(groups, seed):
    rules = SplitRules(seed=seed)
    if not _enough(groups):
        with pytest.raises(SplitError):
            assign_splits(groups, rules)
        return
    a = assign_splits(groups, rules)
    shuffled = list(groups)
    random.Random(seed).shuffle(shuffled)
    b = assign_splits(shuffled, rules)
    assert a == b
    assert set(a) == {g.key for g in groups}
    assert set(a.values()) <= {"train", "val", "test"}
    # every class has an instance in every split: the test split really tests each class
    for label in {g.label for g in groups}:
        assert {a[g.key] for g in groups if g.label == label} == {"train", "val", "test"}


@settings(max_examples=100, deadline=None)
@given(st.integers(20, 80), st.integers(0, 2**16))
def test_fractions_are_respected_within_one_group(n, seed):
    groups = [Group(key=f"k{i}", label="3001", shots=10) for i in range(n)]
    out = assign_splits(groups, SplitRules(train=0.6, val=0.2, test=0.2, seed=seed))
    for split, frac in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        got = sum(1 for v in out.values() if v == split)
        assert abs(got - frac * n) <= 1.0 + 1e-9


def test_earlier_assignments_are_kept_when_instances_are_added():
    first = [Group(key=f"a{i}", label="3001", shots=36) for i in range(10)]
    rules = SplitRules(seed=7)
    v1 = assign_splits(first, rules)
    more = first + [Group(key=f"b{i}", label="3001", shots=36) for i in range(5)]
    v2 = assign_splits(more, rules, previous=v1)
    assert all(v2[k] == v for k, v in v1.items())


def test_too_few_instances_is_refused_with_the_class_named_unless_weaker_split_asked():
    groups = [Group("x1", "3001", 36), Group("x2", "3001", 36)] + [
        Group(f"n{i}", "nut", 36) for i in range(5)
    ]
    with pytest.raises(SplitError, match=r"3001 \(2 instances\)"):
        assign_splits(groups, SplitRules())
    out = assign_splits(groups, SplitRules(group_by="session"))
    assert set(out) == {g.key for g in groups}


def test_seed_changes_the_assignment_but_not_its_shape():
    groups = [Group(key=f"k{i}", label="3001", shots=36) for i in range(30)]
    a = assign_splits(groups, SplitRules(seed=1))
    b = assign_splits(groups, SplitRules(seed=2))
    assert a != b
    assert sorted(a.values()) == sorted(b.values())


def test_a_class_left_without_val_or_test_is_refused_unless_allowed() -> None:
    from capture.snapshots.splits import refuse_empty_splits

    groups = [Group("a1", "nut", 5), Group("a2", "nut", 5), Group("a3", "nut", 5)]
    groups += [Group("w1", "washer", 5)]
    assigned = {"a1": "train", "a2": "val", "a3": "test", "w1": "train"}
    with pytest.raises(SplitError, match=r"washer: no val or test.*--allow-empty-splits"):
        refuse_empty_splits(groups, assigned, SplitRules())
    assert refuse_empty_splits(groups, assigned, SplitRules(allow_empty=True)) == {
        "washer": ["val", "test"]
    }
    with pytest.raises(SplitError, match=r"washer: no test\."):
        refuse_empty_splits(groups, {**assigned, "a2": "train"}, SplitRules(val=0, test=0.3))


def test_the_held_out_rate_counts_val_and_test_images_with_a_twin_elsewhere() -> None:
    from capture.snapshots.leaks import ImageEntry, duplicate_summary

    def entry(name: str, split: str, sha: str, bits: int) -> ImageEntry:
        return ImageEntry(name, split, "nut", sha * 64, bytes([bits]) * 32)

    entries = [
        entry("t1", "train", "a", 0),
        entry("t2", "train", "b", 255),
        entry("v1", "val", "a", 0),  # exact copy of t1
        entry("v2", "val", "c", 0),  # near t1
        entry("x1", "test", "d", 15),  # far from everything
        entry("x2", "test", "e", 240),
    ]
    summary = duplicate_summary(entries)
    assert summary["exact_cross_split"] == 1 and summary["held_out_rate"] == 0.5
