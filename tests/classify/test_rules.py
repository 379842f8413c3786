"""Sorting rules: checked when the configuration is read, against the model, and applied in the
documented decision order (no model, open set, margin/threshold, rules, label map, unmapped)."""

from __future__ import annotations

import pytest

from classify.decide import choose_bin
from classify.rules import apply_rules, check_rules, needs_sizes, rules_table
from classify.runtime import HeadPrediction, Prediction
from rig.config import parse_settings
from rig.errors import ConfigError

SCREW_RULES = [
    {"name": "M4x8", "bin": 2, "when": {"category": "screw", "shaft_length_mm": [7, 9]}},
    {"name": "M4x10", "bin": 3, "when": {"category": "screw", "shaft_length_mm": [9, 11]}},
    {"bin": 1, "when": {"colour": "red"}},
    {"bin": 5, "when": {"category": "screw"}},
]


def settings(rules=SCREW_RULES, **sorter):
    return parse_settings(
        {"actuator": {"driver": "sim", "review_bin": 0},
         "sorter": {"rules": rules, "bins": {"brick-2x4-blue": 4}, **sorter}}
    )  # fmt: skip


def head(name, label, confidence=0.95, margin=0.9, **kw):
    return HeadPrediction(name, label, confidence, [(label, confidence)], margin, **kw)


def prediction(label="screw-m4", category="screw", colour="grey", confidence=0.95, **kw):
    heads = {"category": head("category", category), "colour": head("colour", colour)}
    heads.update(kw.pop("heads", {}))
    return Prediction(label, 0, confidence, [(label, confidence)], 0.9, heads=heads, **kw)


# --- configuration time ---------------------------------------------------------------------


def test_rules_read_from_the_configuration() -> None:
    rules = settings().sorter.rules
    assert [r.bin for r in rules] == [2, 3, 1, 5]
    assert rules[0].ranges() == {"shaft_length_mm": (7.0, 9.0)}
    assert rules[2].heads() == {"colour": ("red",)}
    assert rules_table(rules)[1] == {
        "index": 1, "title": "M4x10", "when": "category screw, shaft_length_mm 9-11", "bin": 3,
    }  # fmt: skip
    assert rules_table(rules)[2]["title"] == "rule 3"
    assert needs_sizes(rules) and not needs_sizes(rules[2:])


@pytest.mark.parametrize(
    ("rules", "words"),
    [
        ([{"bin": 1, "when": {"shaft_length_mm": [11, 9]}}], "inverted"),
        ([{"bin": 1, "when": {"shaft_length_mm": [9]}}], "two numbers in its unit"),
        ([{"bin": 1, "when": {"shaft_length_mm": ["a", "b"]}}], "two numbers in its unit"),
        ([{"bin": 1, "when": {"height_mm": [1, 2]}}], "not a size the sorter measures"),
        ([{"bin": 1, "when": {"Colour": "red"}}], "not a head name"),
        ([{"bin": 1, "when": {}}], "sorter.rules.0.when"),
        ([{"bin": 16, "when": {"colour": "red"}}], "sorter.rules.0.bin"),
        ([{"bin": 1, "when": {"colour": "red"}, "then": 2}], "unknown key"),
        (
            [{"bin": 2, "when": {"category": "screw", "length_mm": [9, 11]}},
             {"bin": 3, "when": {"category": "screw", "length_mm": [10.5, 13]}}],
            "rule 1 and rule 2 overlap (length_mm [9, 11) and [10.5, 13))",
        ),
        (
            [{"bin": 5, "when": {"category": "screw"}},
             {"bin": 3, "when": {"category": "screw", "length_mm": [9, 11]}}],
            "rule 2 (category screw, length_mm 9-11) can never fire",
        ),
    ],
)  # fmt: skip
def test_bad_rules_are_refused_when_the_file_is_read(rules, words) -> None:
    with pytest.raises(ConfigError) as err:
        settings(rules)
    assert words in str(err.value)


def test_touching_ranges_and_other_values_do_not_overlap() -> None:
    ok = [
        {"bin": 2, "when": {"category": "screw", "length_mm": [8, 9]}},
        {"bin": 3, "when": {"category": "screw", "length_mm": [9, 10]}},
        {"bin": 4, "when": {"category": "bolt", "length_mm": [8.5, 9.5]}},
    ]
    assert len(settings(ok).sorter.rules) == 3


def test_rules_are_checked_against_the_model_and_the_actuator() -> None:
    rules = settings().sorter.rules
    heads = {"label": ["screw-m4"], "category": ["screw", "brick"], "colour": ["red", "grey"]}
    check_rules(rules, heads, 16, 0)
    with pytest.raises(ConfigError, match=r"rules\[2\] \(rule 3\): the model has no 'colour'"):
        check_rules(rules, {k: v for k, v in heads.items() if k != "colour"}, 16, 0)
    with pytest.raises(ConfigError, match="does not know 'screw'"):
        check_rules(rules, {**heads, "category": ["brick"]}, 16, 0)
    with pytest.raises(ConfigError, match=r"bin 5 does not exist; the actuator has bins 0\.\.3"):
        check_rules(rules, heads, 4, 0)
    with pytest.raises(ConfigError, match="bin 1 is the review bin"):
        check_rules(rules, heads, 16, 1)
    check_rules(rules, None, 16, 0)  # no model: only the bins


# --- applying them ----------------------------------------------------------------------------


def test_first_matching_rule_picks_the_bin() -> None:
    rules = settings().sorter.rules
    values = {"label": "screw-m4", "category": "screw", "colour": "grey"}
    fired = apply_rules(rules, values, {"shaft_length_mm": 10.2})
    assert (fired.bin, fired.title, fired.why) == (3, "M4x10", "fired")
    # 11 is outside [9, 11): half-open, so it belongs to no M4 range, and the general rule fires
    assert apply_rules(rules, values, {"shaft_length_mm": 11.0}).bin == 5
    assert apply_rules(rules, {**values, "category": "brick", "colour": "red"}, {}).bin == 1
    assert apply_rules(rules, {**values, "category": "brick"}, {}) is None


def test_unknown_size_or_unsure_head_stops_at_the_rule_that_might_match() -> None:
    rules = settings().sorter.rules
    values = {"label": "screw-m4", "category": "screw", "colour": "grey"}
    # NOTE: unmeasured must not fall through to "category screw -> bin 5"
    for sizes in (None, {}, {"shaft_length_mm": None}):
        out = apply_rules(rules, values, sizes)
        assert (out.bin, out.why, out.title) == (None, "unmeasured", "M4x8")
    out = apply_rules(rules, {**values, "category": None}, {"shaft_length_mm": 10})
    assert (out.bin, out.why) == (None, "attribute")
    # a condition already false passes the rule over, whatever else is unknown
    out = apply_rules(rules, {**values, "category": "brick", "colour": None}, None)
    assert (out.bin, out.why, out.title) == (None, "attribute", "rule 3")


def test_decision_order_puts_rules_after_the_label_checks_and_before_the_label_map() -> None:
    s = settings()
    sizes = {"shaft_length_mm": 10.1}
    assert choose_bin(None, s, sizes).rule == "no_model"
    rejected = prediction(open_set_score=2.0, open_set_threshold=1.0)
    assert (choose_bin(rejected, s, sizes).rule, choose_bin(rejected, s, sizes).bin) == (
        "open_set",
        0,
    )
    assert choose_bin(prediction(confidence=0.5), s, sizes).rule == "confidence"
    choice = choose_bin(prediction(), s, sizes)
    assert (choice.bin, choice.reason, choice.rule, choice.fired) == (
        3,
        "confident",
        "sort_rule",
        "M4x10",
    )
    assert not choice.review
    unmeasured = choose_bin(prediction(), s, None)
    assert (unmeasured.bin, unmeasured.reason, unmeasured.rule) == (0, "uncertain", "unmeasured")
    assert unmeasured.review
    # no rule matches a blue brick: the label map decides, then unmapped
    blue = prediction("brick-2x4-blue", category="brick", colour="blue")
    assert (choose_bin(blue, s).bin, choose_bin(blue, s).rule) == (4, "mapped")
    green = prediction("plate-2x4-green", category="plate", colour="green")
    assert choose_bin(green, s).rule == "unmapped"


def test_an_attribute_head_counts_only_when_it_is_sure() -> None:
    s = settings()
    unsure = prediction("brick-2x4-red", category="brick",
                        heads={"colour": head("colour", "red", confidence=0.5)})  # fmt: skip
    assert choose_bin(unsure, s).rule == "attribute"
    thin = prediction("brick-2x4-red", category="brick",
                      heads={"colour": head("colour", "red", margin=0.01)})  # fmt: skip
    assert choose_bin(thin, settings(min_margin=0.2)).rule == "attribute"
    outlier = prediction("brick-2x4-red", category="brick", heads={
        "colour": head("colour", "red", open_set_score=0.9, open_set_threshold=0.3)})  # fmt: skip
    assert choose_bin(outlier, s).rule == "attribute"
    sure = prediction("brick-2x4-red", category="brick", colour="red")
    assert (choose_bin(sure, s).bin, choose_bin(sure, s).fired) == (1, "rule 3")


def test_without_rules_the_decision_is_unchanged() -> None:
    s = parse_settings({"sorter": {"bins": {"screw-m4": 6}}})
    choice = choose_bin(prediction(), s, {"shaft_length_mm": 10})
    assert (choice.bin, choice.rule, choice.fired) == (6, "mapped", None)


# --- recirculation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sorter", "words"),
    [
        ({"recirculate_bin": 0}, "is the review bin"),
        ({"recirculate_bin": 3}, "is also the bin of M4x10"),
        ({"recirculate_bin": 4}, "is also the bin of label 'brick-2x4-blue'"),
        ({"recirculate_bin": 9, "max_recirculations": -1}, "max_recirculations"),
    ],
)
def test_a_recirculation_bin_that_would_mix_parts_is_refused_when_the_file_is_read(
    sorter, words
) -> None:
    with pytest.raises(ConfigError, match=words):
        settings(**sorter)


def test_a_recirculation_bin_the_actuator_lacks_is_refused_at_start() -> None:
    rules = settings(recirculate_bin=9).sorter.rules
    with pytest.raises(ConfigError, match=r"recirculate_bin 9 does not exist.*0\.\.7"):
        check_rules(rules, None, 8, 0, 9)
    check_rules(rules, None, 10, 0, 9)


def test_a_size_the_pose_hides_sends_the_part_round_again_until_the_limit() -> None:
    from classify.recirculate import MOVING, POSE, Recirculation

    s = settings(recirculate_bin=9, max_recirculations=2)
    standing = {"length_mm": 7.6, "width_mm": 7.6, "shaft_length_mm": None}
    loop = Recirculation(s.sorter)
    choices = []
    for _ in range(3):
        choice = choose_bin(prediction(), s, standing, loop.offer("measured"))
        loop.record(choice.rule)
        choices.append(choice)
    assert [(c.bin, c.rule, c.review) for c in choices] == [
        (9, "recirculate", False), (9, "recirculate", False), (0, "unmeasured", True)
    ]  # fmt: skip
    assert choices[0].why == "recirculate: shaft_length_mm not visible in this pose"
    assert choices[0].fired == "M4x8" and choices[0].reason == "uncertain"
    # a final decision ends the run in a row: the next standing part may go round again
    lying = choose_bin(prediction(), s, {"shaft_length_mm": 10.1}, loop.offer("measured"))
    loop.record(lying.rule)
    assert (lying.bin, lying.rule) == (3, "sort_rule") and loop.in_a_row == 0
    assert loop.offer("moving") == MOVING and loop.offer("measured") == POSE
    moving = choose_bin(prediction(), s, {}, loop.offer("moving"))
    assert (moving.bin, moving.why) == (9, "recirculate: still moving")
    # another pass would not help without the marker or with a failed still: review
    for status in ("marker_missing", "camera_error: x", "no_reference", None):
        assert loop.offer(status) is None
        assert choose_bin(prediction(), s, {}, loop.offer(status)).rule == "unmeasured"
    # without a recirculation bin nothing is sent round
    plain = settings()
    off = Recirculation(plain.sorter)
    assert off.offer("measured") is None
    assert choose_bin(prediction(), plain, standing, POSE).rule == "unmeasured"
    # a rule whose size is measured, or an unsure head, is not a matter of pose
    unsure = prediction(heads={"category": head("category", "screw", confidence=0.3)})
    assert choose_bin(unsure, s, standing, POSE).rule == "attribute"
