"""Plans: validation names the field; expansion is deterministic, complete and well ordered."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.plans.order import count_operator_actions, estimate, expand
from capture.plans.schema import Plan, load_plan, parse_plan
from rig.config import TurntableConfig
from rig.errors import PlanError
from rig.motion import duration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plans"

BASE = """
name = "t"
backgrounds = [1, 3]
angles_per_rev = 4
lights = [1.0, 0.5]
parts = [{label = "3001", instance = "a"}, {label = "3001", instance = "b", poses = ["side"]}]
poses = [{name = "upright", prompt = "stand it"}, {name = "side", prompt = "lay it on its side"}]
[image]
format = "png"
"""


def test_a_string_is_always_plan_text_never_a_file_the_server_would_read(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text('name = "not a plan"\n')
    for text in (str(secret), "/etc/passwd", "\x00", "plan.toml"):
        with pytest.raises(PlanError) as info:
            load_plan(text)
        assert "not a plan" not in str(info.value)


def test_a_plan_loads_from_text_and_from_a_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(BASE)
    assert load_plan(BASE) == load_plan(path)
    plan = load_plan(BASE)
    assert plan.image.format == "png" and plan.angle_list() == [0.0, 90.0, 180.0, 270.0]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            'parts = [{label="a", instance="x"}, {label="b", instance="y"},'
            ' {label="c", instance="x"}]',
            "parts[2].instance",
        ),
        ("backgrounds = [1, 99]", "backgrounds[1]"),
        ("backgrounds = []", "backgrounds"),
        ("parts = []", "parts"),
        ("lights = [1.0, 1.5]", "lights[1]"),
        ("angles = [0, 360]", "angles"),
        ('parts = [{label="a/b", instance="x"}]', "parts[0].label"),
        ('parts = [{label="a", instance="x", poses=["flying"]}]', "parts[0].poses[0]"),
        ("settle_s = -1", "settle_s"),
        ("angle_per_rev = 4", "angle_per_rev"),
    ],
)
def test_bad_plans_raise_plan_error_naming_the_field(change, field):
    key = change.split("=")[0].strip()
    lines = [ln for ln in BASE.splitlines() if not ln.startswith(key + " ")]
    head = [ln for ln in lines if not ln.startswith("[image]") and not ln.startswith("format")]
    text = "\n".join([*head, change, "[image]", 'format = "png"'])
    with pytest.raises(PlanError) as err:
        load_plan(text)
    assert field in str(err.value)


def test_both_angle_forms_or_neither_is_an_error():
    text = BASE.replace("angles_per_rev = 4", "angles_per_rev = 4\nangles = [0]")
    with pytest.raises(PlanError, match="exactly one of angles_per_rev"):
        load_plan(text)
    with pytest.raises(PlanError, match="exactly one of angles_per_rev"):
        load_plan(BASE.replace("angles_per_rev = 4", ""))


def test_invalid_toml_and_missing_files_are_plan_errors(tmp_path):
    with pytest.raises(PlanError, match="not valid TOML"):
        load_plan("name = = 1\n")
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(tmp_path / "missing.toml")


def test_expansion_prompts_carry_the_actions_the_simulator_performs():
    shots = expand(load_plan(BASE))
    first = shots[0]
    assert first.prompt_before.as_dict() == {"kind": "install_background", "sheet": 1}
    kinds = [a.kind for a in first.actions]
    assert kinds == ["install_background", "place_part"]
    assert first.actions[1].as_dict() == {
        "kind": "place_part",
        "label": "3001",
        "instance": "a",
        "pose": "upright",
    }
    assert "stand it" in first.actions[1].text


def test_angles_are_serpentine_and_all_lights_are_shot_before_moving():
    shots = expand(load_plan(BASE))
    group = [s for s in shots if s.instance == "a" and s.background == 1 and s.pose == "upright"]
    angles = [s.angle_deg for s in group]
    assert angles == [0, 0, 90, 90, 180, 180, 270, 270]
    nxt = [s.angle_deg for s in shots[len(group) : 2 * len(group)]]
    assert nxt[0] == 270.0  # the next group starts where the turntable is


def test_estimate_adds_trapezoid_moves_settle_and_exposure_and_operator_time_only_if_asked():
    plan = load_plan(
        'name="e"\nbackgrounds=[1]\nangles_per_rev=4\nsettle_s=0.5\nparts=[{label="a",instance="x"}]'
    )
    tt = TurntableConfig(mode="absolute")
    moves = 3 * duration(90, tt.max_speed_deg_s, tt.accel_deg_s2)
    shots = expand(plan)
    rig_time = moves + 4 * (0.5 + 0.1) + 2 * 0.1
    assert estimate(plan, tt) == pytest.approx(rig_time)
    with_people = rig_time + count_operator_actions(shots) * 30.0
    assert estimate(plan, tt, operator_action_s=30.0) == pytest.approx(with_people)


def test_estimate_turns_forward_in_absolute_mode_as_the_turntable_does():
    plan = load_plan(
        'name="e"\nbackgrounds=[1]\nangles=[0, 270]\nsettle_s=0\nparts=[{label="a",instance="x"}]'
    )
    forward = estimate(plan, TurntableConfig(mode="absolute"))
    shortest = estimate(plan, TurntableConfig(mode="shortest"))
    tt = TurntableConfig()
    assert forward - shortest == pytest.approx(
        duration(270, tt.max_speed_deg_s, tt.accel_deg_s2)
        - duration(90, tt.max_speed_deg_s, tt.accel_deg_s2)
    )


def test_example_plans_are_valid():
    files = sorted(EXAMPLES.glob("*.toml"))
    assert len(files) >= 2
    for f in files:
        assert expand(load_plan(f))


names = st.sampled_from(["a", "b", "c", "3001", "x-1"])


@st.composite
def plans(draw):
    n_parts = draw(st.integers(1, 3))
    labels = [draw(names) for _ in range(n_parts)]
    pose_names = draw(
        st.lists(st.sampled_from(["upright", "side", "flat"]), min_size=1, max_size=3, unique=True)
    )
    parts = []
    for i, label in enumerate(labels):
        entry = {"label": label, "instance": f"i{i}"}
        if draw(st.booleans()):
            entry["poses"] = draw(
                st.lists(st.sampled_from(pose_names), min_size=1, max_size=3, unique=True)
            )
        parts.append(entry)
    raw = {
        "name": "h",
        "parts": parts,
        "poses": [{"name": p, "prompt": f"put it {p}"} for p in pose_names],
        "backgrounds": draw(
            st.lists(st.sampled_from([1, 2, 3, 5, 8]), min_size=1, max_size=3, unique=True)
        ),
        "lights": draw(
            st.lists(st.sampled_from([1.0, 0.5, 0.25]), min_size=1, max_size=2, unique=True)
        ),
    }
    if draw(st.booleans()):
        raw["angles_per_rev"] = draw(st.integers(1, 8))
    else:
        raw["angles"] = draw(
            st.lists(st.sampled_from([0.0, 10.0, 90.0, 359.5]), min_size=1, max_size=4, unique=True)
        )
    return parse_plan(raw)


@settings(max_examples=60, deadline=None)
@given(plans())
def test_expansion_is_deterministic_complete_and_prompts_exactly_on_changes(plan: Plan):
    shots = expand(plan)
    assert shots == expand(plan)
    combos = sum(len(plan.poses_of(p)) for p in plan.parts)
    n = combos * len(plan.backgrounds) * len(plan.angle_list()) * len(plan.lights)
    assert len(shots) == n == plan.shot_count()
    assert [s.index for s in shots] == list(range(n))
    keys = {(s.instance, s.pose, s.background, s.angle_deg, s.light) for s in shots}
    assert len(keys) == n  # every combination exactly once
    prev = None
    for s in shots:
        changed = prev is None or (s.background, s.label, s.instance, s.pose) != (
            prev.background,
            prev.label,
            prev.instance,
            prev.pose,
        )
        assert (s.prompt_before is not None) == changed
        if changed:
            assert s.prompt_before == s.actions[0]
            want = (
                "install_background"
                if prev is None or s.background != prev.background
                else "place_part"
            )
            assert s.prompt_before.kind == want
        prev = s
    assert count_operator_actions(shots) == sum(len(s.actions) for s in shots)


def test_a_plan_over_the_shot_cap_is_refused_by_arithmetic_before_expansion():
    from capture.plans.schema import DEFAULT_MAX_SHOTS

    lights = ", ".join(f"{i / 300:.4f}" for i in range(300))
    text = (
        'name = "big"\nbackgrounds = [1]\nangles_per_rev = 3600\n'
        f'lights = [{lights}]\nparts = [{{ label = "a", instance = "a1" }}]\n'
    )
    with pytest.raises(PlanError, match=r"1,080,000 shots, more than the limit of 20,000"):
        load_plan(text)
    assert DEFAULT_MAX_SHOTS == 20_000
    plan = load_plan(text, max_shots=None)  # a stored run being resumed is not re-capped
    assert plan.shot_count() == 1_080_000
    with pytest.raises(PlanError, match="limit of 5"):
        load_plan(BASE, max_shots=5)
    assert load_plan(BASE, max_shots=load_plan(BASE).shot_count())


def test_a_bag_runs_parts_without_a_label_are_unlabelled_for_pre_labelling():
    plan = load_plan(
        'name = "bag"\nbackgrounds = [1]\nangles_per_rev = 4\n'
        'parts = [{instance = "bag-1"}, {instance = "bag-2"}]\n'
    )
    assert [p.label for p in plan.parts] == ["unlabelled", "unlabelled"]
    assert {s.label for s in expand(plan)} == {"unlabelled"}
