"""The simulated world and its part catalogue."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rig.errors import NotFound, PlanError
from rig.sim.catalogue import CATALOGUE, part_model, placement, trainable_labels
from rig.sim.world import LoadedPart, SimWorld


def make_world(angle: float = 0.0, light: float = 1.0) -> SimWorld:
    return SimWorld(lambda: angle, lambda: light)


def test_the_catalogue_has_same_colour_different_shape_and_same_shape_different_colour():
    by_colour: dict = {}
    by_shape: dict = {}
    for p in CATALOGUE.values():
        by_colour.setdefault(p.colour, set()).add(p.shape)
        by_shape.setdefault(p.shape, set()).add(p.colour)
    assert any(len(shapes) >= 2 for shapes in by_colour.values())
    assert any(len(colours) >= 2 for colours in by_shape.values())


def test_some_parts_are_unknown_and_are_not_offered_for_training():
    unknown = [p.label for p in CATALOGUE.values() if p.unknown]
    assert len(unknown) >= 2
    assert not set(unknown) & set(trainable_labels())
    assert len(trainable_labels()) >= 6


def test_instances_are_deterministic_but_differ_from_one_another():
    a1 = part_model("brick-2x4-red", "a", "upright")
    part_model.cache_clear()
    a2 = part_model("brick-2x4-red", "a", "upright")
    b = part_model("brick-2x4-red", "b", "upright")
    assert np.allclose(a1.bounds()[0], a2.bounds()[0])
    assert not np.allclose(a1.solids[0].faces[0].colour, b.solids[0].faces[0].colour)
    assert placement("brick-2x4-red", "a", "upright") != placement("brick-2x4-red", "b", "upright")


def test_every_pose_rests_on_the_turntable_near_its_centre():
    for label, spec in CATALOGUE.items():
        for pose in spec.poses:
            lo, hi = part_model(label, "x", pose).bounds()
            assert abs(lo[2]) < 1e-6, (label, pose)
            centre = (lo[:2] + hi[:2]) / 2
            assert np.hypot(*centre) < 4.0, (label, pose)


def test_lying_a_brick_on_its_side_changes_its_height():
    up = part_model("brick-2x4-red", "a", "upright").bounds()
    side = part_model("brick-2x4-red", "a", "side").bounds()
    assert (side[1][2] - side[0][2]) > (up[1][2] - up[0][2]) + 3


def test_the_world_applies_operator_actions():
    world = make_world()
    world.apply({"kind": "install_background", "sheet": 3})
    world.apply({"kind": "place_part", "label": "nut-m6-brass", "instance": "n1", "pose": "side"})
    assert world.sheet == 3
    assert world.part == LoadedPart("nut-m6-brass", "n1", "side")
    world.apply({"kind": "remove_part"})
    assert world.part is None and world.scene().sheet == 3
    world.apply({"kind": "remove_background"})
    assert world.sheet is None
    assert [a["kind"] for a in world.actions][:2] == ["install_background", "place_part"]


def test_a_place_part_action_without_a_pose_places_it_upright():
    world = make_world()
    world.apply({"kind": "place_part", "label": "brick-2x2-red", "instance": 7})
    assert world.part == LoadedPart("brick-2x2-red", "7", "upright")


def test_bad_actions_fail_when_applied_with_a_clear_message():
    world = make_world()
    with pytest.raises(PlanError, match="unknown operator action"):
        world.apply({"kind": "dance"})
    with pytest.raises(NotFound, match="no part 'brick-9x9'"):
        world.apply({"kind": "place_part", "label": "brick-9x9", "instance": "a"})
    with pytest.raises(PlanError, match="cannot be placed 'upside_down'"):
        world.load_part("screw-m4x16", "s", "upside_down")
    with pytest.raises(NotFound, match="no background sheet 77"):
        world.install_sheet(77)
    with pytest.raises(PlanError, match="needs 'sheet'"):
        world.apply({"kind": "install_background"})
    assert world.part is None and world.sheet is None


def test_angle_and_light_are_read_live_and_normalised():
    state = {"angle": 370.0, "light": 1.7}
    world = SimWorld(lambda: state["angle"], lambda: state["light"])
    assert world.angle() == pytest.approx(10.0)
    assert world.light() == 1.0
    state["angle"], state["light"] = -90.0, 0.25
    assert world.angle() == pytest.approx(270.0)
    assert world.light() == 0.25


def test_the_world_is_safe_to_change_from_several_threads():
    world = make_world()
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for k in range(50):
                world.apply({"kind": "install_background", "sheet": 1 + (i + k) % 9})
                world.apply({"kind": "place_part", "label": "brick-2x2-red", "instance": str(i)})
                scene = world.scene()
                assert scene.sheet is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(world.actions) == 400
