"""Parts measured in millimetres from the sheet's marker, on the metric simulated camera."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import pytest

from capture.store.measure_schema import measurement_row
from capture.vision import lens as lens_mod
from capture.vision.lens import LensCalibration
from capture.vision.masks import mask_and_box
from capture.vision.measure import (
    ShotMeasurer,
    locate_sheet,
    marker_corners_mm,
    measure_shot,
    nominal_bin,
    parallax_bound_mm,
)
from rig.errors import StoreError
from rig.sim.backdrop import FLAT_SHADE
from rig.sim.catalogue import instance_scale, part_model, true_size_mm
from rig.sim.optics import MetricView, Optics, render_printed, render_sheet_view, rotation_xyz
from rig.sim.render import render_part

# NOTE: half the default still size keeps each render well under a second; 6 px per mm.
W, H = 2028, 1520
OPTICS = Optics(W, H, height_mm=306.0, focal_px=1790.0, k1=-0.05, k2=0.01,
                tilt_deg=(0.6, -0.4), sheet_offset_mm=(6.0, -4.0), sheet_yaw_deg=4.0)  # fmt: skip


def exact_lens(o: Optics) -> LensCalibration:
    return LensCalibration(o.width, o.height, o.camera_matrix, o.dist_coeffs, 0.0, 0)


@lru_cache(maxsize=4)
def empty(sheet: int | None) -> np.ndarray:
    return cv2.convertScaleAbs(render_sheet_view(OPTICS, sheet), alpha=FLAT_SHADE)


def shot(label: str, instance: str, pose: str, angle: float, sheet: int = 1) -> np.ndarray:
    bg = empty(sheet)
    drawn = render_part(part_model(label, instance, pose), angle, MetricView(OPTICS), bg)
    assert drawn is not None
    image = bg.copy()
    image[drawn.roi.slices()] = drawn.pixels
    return image


def test_the_printed_marker_is_sixteen_percent_of_the_page_short_side():
    a4 = marker_corners_mm("a4")
    assert np.linalg.norm(a4[1] - a4[0]) == pytest.approx(33.6, abs=0.05)
    assert np.linalg.norm(marker_corners_mm("letter")[1] - marker_corners_mm("letter")[0]) == (
        pytest.approx(34.5, abs=0.05)
    )
    with pytest.raises(ValueError, match="paper must be one of a4, letter"):
        marker_corners_mm("a3")


@pytest.mark.parametrize(("nominal", "angle"), [(8, 20.0), (12, 110.0), (16, 250.0)])
def test_a_screw_lying_down_is_measured_to_a_few_hundredths_of_a_millimetre(nominal, angle):
    label, instance = f"screw-m4-{nominal}", f"t{nominal}"
    frame, ref = shot(label, instance, "side", angle), empty(1)
    mask, _ = mask_and_box(frame, ref)
    m, why = measure_shot(frame, ref, mask, exact_lens(OPTICS))
    assert why is None and m is not None
    assert m.sheet == 1 and m.calibrated
    assert m.length_mm == pytest.approx(true_size_mm(label, instance)[2], abs=0.3)
    assert m.shaft_length_mm == pytest.approx(nominal * instance_scale(label, instance), abs=0.25)
    assert m.width_mm == pytest.approx(7.2 * instance_scale(label, instance), abs=0.3)
    # the outline is measured through the screw's axis, about a head radius above the sheet
    assert 3.0 < m.plane_mm < 4.2
    assert nominal_bin(m.shaft_length_mm, (8, 10, 12, 16), 1.0) == nominal


def test_the_sheet_pose_gives_the_camera_height_and_the_paper():
    pose = locate_sheet(empty(4), exact_lens(OPTICS))
    assert pose is not None and pose.sheet == 4 and pose.paper == "a4"
    assert pose.camera_height_mm == pytest.approx(306.0, rel=0.01)


def test_without_a_lens_calibration_the_shot_is_measured_on_the_sheet_plane_and_flagged():
    label, instance = "screw-m4-16", "u1"
    frame, ref = shot(label, instance, "side", 60.0), empty(1)
    mask, _ = mask_and_box(frame, ref)
    rough, why = measure_shot(frame, ref, mask, None)
    assert why is None and rough is not None
    # no camera pose without intrinsics: no parallax correction, and the row says so
    assert not rough.calibrated and rough.plane_mm == 0.0
    assert rough.length_mm == pytest.approx(true_size_mm(label, instance)[2], rel=0.05)
    pose = locate_sheet(ref, None)
    assert pose is not None and pose.camera_height_mm is None
    with pytest.raises(ValueError, match="needs a lens calibration"):
        pose.to_plane(np.array([[10.0, 10.0]]), 3.0)


def test_a_frame_without_the_sheet_is_flagged_marker_missing_not_measured():
    bare = empty(None)
    mask = np.zeros(bare.shape[:2], bool)
    mask[700:760, 1000:1100] = True
    assert measure_shot(bare, bare, mask, exact_lens(OPTICS)) == (None, "marker_missing")
    measurer = ShotMeasurer(exact_lens(OPTICS))
    assert measurer(bare, bare, mask) == ("marker_missing", None)


def test_the_shot_measurer_finds_the_sheet_once_per_reference_and_records_rows():
    measurer = ShotMeasurer(exact_lens(OPTICS))
    frame, ref = shot("screw-m4-10", "r1", "side", 10.0), empty(1)
    mask, _ = mask_and_box(frame, ref)
    status, sizes = measurer(frame, ref, mask)
    assert status == "measured" and sizes is not None
    pose = measurer._pose
    assert measurer(frame, ref, np.zeros_like(mask)) == ("no_part", None)
    assert measurer._pose is pose
    row = measurement_row(7, status, sizes, "2026-12-03T00:00:00Z")
    assert row["shot_id"] == 7 and row["calibrated"] == 1 and row["length_mm"] > 12
    with pytest.raises(ValueError, match="status must be one of"):
        measurement_row(7, "guessed", sizes, "t")


def test_the_parallax_bound_grows_with_height_and_distance_from_the_axis():
    assert parallax_bound_mm(16, 0.0, 300, 10) == 0.0
    near = parallax_bound_mm(16, 10.0, 300, 0)
    far = parallax_bound_mm(16, 10.0, 300, 40)
    assert 0.2 < near < far
    with pytest.raises(ValueError, match="camera must be above"):
        parallax_bound_mm(16, 400, 300, 0)


def test_nominal_bin_sends_lengths_between_the_nominals_to_review():
    assert nominal_bin(10.4, (8, 10, 12, 16), 1.0) == 10
    assert nominal_bin(14.0, (8, 10, 12, 16), 1.0) is None
    assert nominal_bin(None, (8, 10), 1.0) is None


def test_the_lens_is_calibrated_from_simulated_photographs_of_the_printed_board(tmp_path):
    rng = np.random.default_rng(3)
    px_per_mm = 3.0
    board = cv2.cvtColor(lens_mod.render_board(px_per_mm), cv2.COLOR_GRAY2RGB)
    bw, bh = board.shape[1] / px_per_mm, board.shape[0] / px_per_mm
    views = []
    for _ in range(8):
        rot = rotation_xyz(*rng.uniform(-30, 30, 2), rng.uniform(-20, 20))
        centre = np.array([rng.uniform(-30, 30), rng.uniform(-20, 20), 60.0])
        origin = centre - rot @ np.array([bw / 2, -bh / 2, 0.0])
        views.append(render_printed(OPTICS, board, px_per_mm, rot, origin))
    cal = lens_mod.calibrate(views)
    assert cal.views >= 6 and cal.rms_px < 0.5
    assert cal.camera_matrix[0, 0] == pytest.approx(OPTICS.focal_px, rel=0.01)
    assert cal.dist_coeffs[0] == pytest.approx(OPTICS.k1, abs=0.01)
    lens_mod.save(cal, tmp_path)
    back = lens_mod.load(tmp_path)
    assert back is not None and np.allclose(back.camera_matrix, cal.camera_matrix)
    half = back.for_size(W // 2, H // 2)
    assert half.camera_matrix[0, 0] == pytest.approx(cal.camera_matrix[0, 0] / 2)
    with pytest.raises(ValueError, match="another aspect"):
        back.for_size(W, W)
    with pytest.raises(ValueError, match="at least 6 are needed"):
        lens_mod.calibrate(views[:2])


def test_a_missing_or_broken_lens_file_is_none_or_a_clear_error(tmp_path):
    assert lens_mod.load(tmp_path) is None
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "lens.json").write_text("{not json")
    with pytest.raises(StoreError, match="calibrate the lens again"):
        lens_mod.load(tmp_path)


def test_a_run_on_the_metric_simulator_records_each_shot_s_size_in_millimetres(tmp_path):
    import sqlite3
    import threading

    from capture.runs.run import CaptureRun
    from capture.runs.state import RunState
    from capture.store import DatasetStore
    from rig.config import apply_sim, parse_settings
    from rig.rig import open_rig

    data = tmp_path / "data"
    settings = apply_sim(
        parse_settings(
            {
                "camera": {"driver": "sim", "still_size": [1352, 1014]},
                "simulator": {"time_scale": 0, "optics": "metric", "lens_k1": -0.02},
                "data": {"dir": str(data)},
            }
        )
    )
    plan = """
name = "measure"
backgrounds = [1]
angles_per_rev = 3
lights = [1.0]
settle_s = 0.1
parts = [{ label = "brick-2x4-red", instance = "m1" }]
"""
    # NOTE: the lens calibrated once (as ``capture.vision.lens`` would) and stored in the data
    # folder
    lens = Optics(height_mm=300.0, k1=-0.02).scaled(1352, 1014)
    lens_mod.save(exact_lens(lens), data)
    store = DatasetStore.open(data)
    with open_rig(settings) as rig:
        run = CaptureRun.create(store, rig, plan, settings=settings, sleep=lambda s: None)
        run.subscribe(
            lambda e: (
                e.kind == "state"
                and e.data["state"] == "awaiting_operator"
                and threading.Thread(target=run.answer_prompt).start()
            )
        )
        run.start()
        assert run.wait(120) is RunState.COMPLETED, run.reason
    store.close()
    db = sqlite3.connect(data / "partrig.db")
    rows = db.execute(
        "SELECT m.status, m.sheet, m.length_mm, m.width_mm, m.area_mm2 FROM shot_measurements m"
        " JOIN shots s ON s.id = m.shot_id WHERE s.run_id = ? AND m.calibrated = 1",
        (run.run_id,),
    ).fetchall()
    assert len(rows) == 3
    for status, sheet, length, width, area in rows:
        # an upright 2x4 brick is 31.8 x 15.8 mm; its studded top, 11 mm up, looks a little larger
        assert status == "measured" and sheet == 1
        assert 31.0 < length < 33.5 and 15.0 < width < 17.5 and 450 < area < 600


def test_snapshots_export_the_sizes_in_millimetres_in_every_format(tmp_path):
    import csv
    import io
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from snapshot_data import add_shots

    from capture.snapshots.build import create_snapshot, snapshot_dir
    from capture.snapshots.filter import SnapshotFilter
    from capture.snapshots.splits import SplitRules
    from capture.store import DatasetStore
    from capture.store.measure_schema import record_measurement
    from rig.config import Settings

    data = tmp_path / "data"
    sizes = {"sheet": 1, "calibrated": True, "length_mm": 12.5, "width_mm": 4.0,
             "area_mm2": 44.25, "shaft_length_mm": 9.9, "head_length_mm": 2.6}  # fmt: skip
    with DatasetStore.open(data) as store:
        add_shots(store, instances=4, angles=3)
        ids = [r["id"] for r in store.query("SELECT id FROM shots ORDER BY id")]
        with store.transaction() as conn:
            for shot_id in ids[::2]:
                record_measurement(conn, measurement_row(shot_id, "measured", sizes, "t"))
            record_measurement(conn, measurement_row(ids[1], "marker_missing", None, "t"))
        manifest = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules())
    root = snapshot_dir(data, manifest["id"])
    measured = set(ids[::2])

    rows = list(csv.DictReader(io.StringIO((root / "csv" / "shots.csv").read_text())))
    for row in rows:
        shot_id = int(row["shot_id"])
        if shot_id in measured:
            assert row["measure_status"] == "measured" and float(row["length_mm"]) == 12.5
        elif shot_id == ids[1]:
            assert row["measure_status"] == "marker_missing" and row["length_mm"] == ""
        else:
            assert row["measure_status"] == "" and row["area_mm2"] == ""

    anns = []
    for split in ("train", "val", "test"):
        anns += json.loads((root / "coco" / f"{split}.json").read_text())["annotations"]
    for ann in anns:
        # COCO's area stays in pixels; the real units sit beside it
        assert isinstance(ann["area"], int)
        assert ann.get("area_mm2") == (44.25 if ann["image_id"] in measured else None)

    lines = [json.loads(x) for p in (root / "folder").rglob("metadata.jsonl")
             for x in p.read_text().splitlines()]  # fmt: skip
    assert lines and all((m["length_mm"] is not None) == (m["shot_id"] in measured) for m in lines)
    assert any(m.get("shaft_length_mm") == 9.9 for m in lines)


def test_the_cli_prints_the_lens_board_and_refuses_a_calibration_from_too_few_photos(tmp_path):
    from typer.testing import CliRunner

    from capture.vision.backgrounds_cli import backgrounds_app

    runner = CliRunner()
    done = runner.invoke(backgrounds_app, ["lens-board", "--out", str(tmp_path), "--dpi", "150"])
    assert done.exit_code == 0, done.output
    board = cv2.imread(str(tmp_path / "lens-board.png"))
    assert board is not None and lens_mod.board_corners(board) is not None
    bad = runner.invoke(
        backgrounds_app,
        ["calibrate-lens", str(tmp_path / "lens-board.png"), "--data", str(tmp_path / "d")],
    )
    assert bad.exit_code == 2 and "at least 6 are needed" in bad.output
    assert not (tmp_path / "d" / "calibration" / "lens.json").exists()
