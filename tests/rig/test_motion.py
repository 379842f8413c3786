"""The trapezoid model shared by the simulator, the turntable and the benchmarks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.motion import Move, duration, position_at


def test_a_long_move_accelerates_cruises_and_decelerates():
    # 360 deg at 360 deg/s and 720 deg/s^2: 0.5 s up (90 deg), 0.5 s down, 180 deg cruise.
    assert duration(360, 360, 720) == pytest.approx(1.5)
    assert position_at(0.5, 360, 360, 720) == pytest.approx(90)
    assert position_at(1.0, 360, 360, 720) == pytest.approx(270)


def test_a_short_move_is_a_triangle_that_never_reaches_full_speed():
    m = Move(90, 360, 720)
    assert m.t_cruise == 0
    assert m.peak_speed == pytest.approx(math.sqrt(90 * 720))
    assert m.duration == pytest.approx(2 * math.sqrt(90 / 720))
    assert m.position_at(m.duration / 2) == pytest.approx(45)


def test_negative_moves_mirror_positive_ones_and_zero_moves_take_no_time():
    assert duration(-45, 100, 200) == duration(45, 100, 200)
    assert position_at(0.1, -45, 100, 200) == -position_at(0.1, 45, 100, 200)
    assert duration(0, 100, 200) == 0


def test_bad_speed_or_acceleration_is_refused():
    with pytest.raises(ValueError, match="speed"):
        duration(10, 0, 100)
    with pytest.raises(ValueError, match="acceleration"):
        duration(10, 100, float("nan"))


@given(
    st.floats(-5000, 5000, allow_nan=False),
    st.floats(1, 5000),
    st.floats(1, 50000),
    st.floats(0, 1),
)
def test_position_is_monotonic_and_ends_exactly_at_the_target(d, v, a, frac):
    m = Move(d, v, a)
    t = frac * m.duration
    assert abs(m.position_at(t)) <= abs(d) + 1e-9
    assert abs(m.position_at(t)) <= abs(m.position_at(min(m.duration, t + 0.01))) + 1e-9
    assert m.position_at(m.duration) == d
    assert m.speed_at(t) <= v + 1e-9
