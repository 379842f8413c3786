"""The turntable measures each firmware's per-move overhead beyond the trapezoid prediction."""

from __future__ import annotations

import pytest

from rig.motion import MoveOverhead


def test_the_estimate_follows_the_measured_excess_per_move():
    est = MoveOverhead(weight=0.5)
    assert est.per_move_s == 0 and est.samples == 0
    est.observe(predicted_s=0.5, measured_s=0.56)
    assert est.per_move_s == pytest.approx(0.06)
    est.observe(predicted_s=1.0, measured_s=1.2, moves=2)  # 0.1 a move
    assert est.per_move_s == pytest.approx(0.08)
    assert est.predict(0.5, moves=3) == pytest.approx(0.5 + 3 * 0.08)
    est.observe(1.0, float("nan"))
    assert est.samples == 2
    with pytest.raises(ValueError, match="weight"):
        MoveOverhead(weight=0)


@pytest.mark.parametrize(
    ("firmware", "options", "expected_s"),
    [
        ("partrig", {}, 0.0),
        ("marlin", {}, 0.055),  # the shipped profile: Marlin's first-block delay
        ("marlin", {"move_overhead_ms": 120}, 0.120),
    ],
)
def test_the_turntable_learns_the_firmwares_overhead(sim_rig, firmware, options, expected_s):
    rig = sim_rig(firmware, simulator={"marlin": options})
    table = rig.turntable
    for angle in (10, 100, 95, 300, 0):
        table.rotate_to(angle)
        table.wait()
    assert table.overhead.samples == 5
    # NOTE: whole steps make the simulated move differ from the prediction by under 2 ms
    assert table.move_overhead_s == pytest.approx(expected_s, abs=0.002)


def test_a_late_wait_does_not_count_as_overhead(sim_rig):
    rig = sim_rig("partrig")
    table = rig.turntable
    table.rotate_to(90)
    rig.clock.advance(5.0)  # the caller came back long after the move ended
    table.wait()
    assert table.overhead.samples == 0


def test_a_move_to_where_the_table_is_does_not_count(sim_rig):
    rig = sim_rig("marlin")
    table = rig.turntable
    table.rotate_to(0)  # already there: the firmware queues nothing
    table.wait()
    assert table.overhead.samples == 0
    table.rotate_to(30)
    table.wait()
    assert table.move_overhead_s == pytest.approx(0.055, abs=0.002)
