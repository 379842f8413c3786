"""The simulator knows sizes: catalogue parts carry true millimetres, and the metric camera
draws the printed marker and the parts at those sizes."""

from __future__ import annotations

import numpy as np
import pytest

from rig.config import SimConfig
from rig.sheets import detect_marker
from rig.sim.camera import metric_optics
from rig.sim.catalogue import (
    CATALOGUE,
    M4_LENGTHS,
    instance_scale,
    part_model,
    trainable_labels,
    true_size_mm,
)
from rig.sim.optics import MetricView, Optics, render_sheet_view
from rig.sim.render import render_part

SMALL = Optics(1352, 1014, focal_px=1100.0, k1=-0.04)


def test_m4_screws_differ_only_in_length_share_one_label_and_are_not_trained():
    screws = [CATALOGUE[f"screw-m4-{n}"] for n in M4_LENGTHS]
    assert {s.shared_label for s in screws} == {"screw-m4"}
    assert {s.colour for s in screws} == {screws[0].colour}
    assert [s.attributes["nominal_length_mm"] for s in screws] == [8.0, 10.0, 12.0, 16.0]
    assert not {s.label for s in screws} & set(trainable_labels())
    for n in M4_LENGTHS:
        x, y, z = true_size_mm(f"screw-m4-{n}", "a")
        s = instance_scale(f"screw-m4-{n}", "a")
        assert (x, y) == pytest.approx((7.2 * s, 7.2 * s), abs=0.05)
        assert z == pytest.approx((n + 2.8) * s, abs=0.03)  # the slot is 0.02 mm deep


def test_the_true_size_is_the_size_of_the_drawn_model():
    for label in ("brick-2x4-red", "screw-m4-10", "nut-m6-brass"):
        lo, hi = part_model(label, "q", "upright").bounds()
        assert hi[2] - lo[2] == pytest.approx(true_size_mm(label, "q")[2], rel=1e-6)


def test_the_metric_camera_draws_the_printed_marker_at_its_printed_size():
    found = detect_marker(render_sheet_view(SMALL, 5))
    assert found is not None and found[0] == 5
    side_px = np.linalg.norm(found[1][1] - found[1][0])
    # 33.6 mm at the sheet's distance; the marker is off-axis, so allow the lens's few per cent
    assert side_px == pytest.approx(33.6 * SMALL.px_per_mm(), rel=0.05)


def test_the_metric_camera_draws_a_part_lying_down_at_its_true_length():
    model = part_model("screw-m4-16", "z", "side")
    bg = render_sheet_view(SMALL, 1)
    drawn = render_part(model, 0.0, MetricView(SMALL), bg)
    assert drawn is not None
    ys, xs = np.nonzero(drawn.mask)
    extent_px = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    true_len = true_size_mm("screw-m4-16", "z")[2]
    # its axis lies a head radius (3.6 mm) above the sheet: a little nearer, so a little larger
    expected = true_len * SMALL.focal_px / (SMALL.height_mm - 3.6)
    assert extent_px == pytest.approx(expected, rel=0.04)


def test_metric_optics_are_chosen_in_the_simulator_settings():
    assert metric_optics(SimConfig()) is None
    o = metric_optics(SimConfig(optics="metric", camera_height_mm=280, lens_k1=-0.05))
    assert o is not None and o.height_mm == 280 and o.k1 == -0.05
    with pytest.raises(ValueError, match="lens_k1"):
        SimConfig(optics="metric", lens_k1=0.9)
