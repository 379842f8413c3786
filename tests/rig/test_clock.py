"""SimClock: virtual time for fast tests, scaled or real time for demos and benchmarks."""

from __future__ import annotations

import threading

import pytest

from rig.sim.clock import SimClock


def test_a_virtual_clock_jumps_when_someone_sleeps():
    c = SimClock(0)
    c.sleep(2.5)
    assert c.now() == 2.5
    c.sleep_until(1.0)  # never goes back
    assert c.now() == 2.5
    c.sleep_until(4.0)
    assert c.now() == 4.0


def test_a_virtual_clock_is_safe_across_threads():
    c = SimClock(0)
    threads = [
        threading.Thread(target=lambda: [c.sleep(0.5) for _ in range(1000)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.now() == pytest.approx(2000)


def test_a_scaled_clock_runs_faster_than_the_wall():
    c = SimClock(1000)
    assert c.wall_seconds(5) == pytest.approx(0.005)
    c.sleep(1.0)
    assert c.now() >= 1.0


def test_a_negative_time_scale_is_refused():
    with pytest.raises(ValueError, match="time_scale"):
        SimClock(-1)
