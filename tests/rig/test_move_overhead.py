"""The turntable measures each firmware's per-move overhead beyond the trapezoid prediction."""

from __future__ import annotations

import pytest

from rig.motion import MoveOverhead


def test_the_estimate_is_the_median_excess_per_move_of_recent_waits():
    est = MoveOverhead(window=3)
    assert est.per_move_s == 0 and est.samples == 0
    est.observe(predicted_s=0.5, measured_s=0.56)
    assert est.per_move_s == pytest.approx(0.06)
    est.observe(predicted_s=1.0, measured_s=1.1, moves=2)  # 0.05 a move
    est.observe(predicted_s=0.7, measured_s=0.2)  # a wait far off (a stalled host)
    assert est.per_move_s == pytest.approx(0.05)  # one outlier does not move it
    est.observe(0.5, 0.555)
    est.observe(0.5, 0.557)  # the window now holds the outlier, 0.055 and 0.057
    assert est.per_move_s == pytest.approx(0.055)
    assert est.predict(0.5, moves=3) == pytest.approx(0.5 + 3 * 0.055)
    est.observe(1.0, float("nan"))
    assert est.samples == 5
    with pytest.raises(ValueError, match="window"):
        MoveOverhead(window=0)


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
