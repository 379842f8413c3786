"""`partrig dataset measure`: stored shots re-measured from their files, resumably, idempotently."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from capture.store import DatasetStore, ShotRecord
from capture.store.measure_schema import measurements_for
from capture.vision import lens as lens_mod
from capture.vision.lens import LensCalibration
from capture.vision.masks import mask_and_box
from capture.vision.measure import measure_shot
from capture.vision.remeasure import Remeasure, open_jobs
from rig.errors import NotFound, QueryError
from rig.sim.backdrop import FLAT_SHADE
from rig.sim.catalogue import part_model, true_size_mm
from rig.sim.optics import MetricView, Optics, render_sheet_view
from rig.sim.render import render_part

# NOTE: a quarter of the default still keeps the four renders to about a second in all.
OPTICS = Optics(height_mm=306.0, k1=-0.05, k2=0.01, sheet_yaw_deg=4.0).scaled(1014, 760)
LENGTHS = (8, 10, 12, 16)


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def frames():
    ref = cv2.convertScaleAbs(render_sheet_view(OPTICS, 1), alpha=FLAT_SHADE)
    shots = []
    for n, nominal in enumerate(LENGTHS):
        label, instance = f"screw-m4-{nominal}", f"r{nominal}"
        drawn = render_part(part_model(label, instance, "side"), 30.0 + 70 * n,
                            MetricView(OPTICS), ref)  # fmt: skip
        assert drawn is not None
        image = ref.copy()
        image[drawn.roi.slices()] = drawn.pixels
        shots.append((label, instance, image))
    return ref, shots


def _store_run(store: DatasetStore, frames) -> tuple[int, list[int]]:
    ref, shots = frames
    run = store.create_run("screws", "", "{}", len(shots))
    stored = store.write_file(
        f"references/{run}/sheet001.png", _png(cv2.cvtColor(ref, cv2.COLOR_RGB2BGR))
    )
    store.add_reference(run, 1, path=stored.path, sha256=stored.sha256)
    ids = []
    for index, (_label, instance, image) in enumerate(shots):
        mask, (x, y, w, h) = mask_and_box(image, ref)
        m = store.write_file(f"masks/{run}/{index:06d}.png", _png(mask.astype(np.uint8) * 255))
        record = ShotRecord(label="m4-screw", instance_id=instance, run_id=run, shot_index=index,
                            pose="side", background_id=1, path="", sha256="", size=0,
                            width=image.shape[1], height=image.shape[0], format="png",
                            mask_path=m.path, bbox_x=x, bbox_y=y, bbox_w=w, bbox_h=h)  # fmt: skip
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ids += store.save_shots([(f"images/{run}/{index:06d}.png", _png(bgr), record)])
    return run, ids


def test_remeasure_after_calibrating_the_lens_is_resumable_and_idempotent(tmp_path, frames):
    data = tmp_path / "data"
    with DatasetStore.open(data) as store:
        run, ids = _store_run(store, frames)
        first = Remeasure(store).run(run_id=run)
        rows = measurements_for(store.db, ids)
        assert first.measured == 4 and first.done == first.total == 4 and not first.resumed
        assert all(r["status"] == "measured" and not r["calibrated"] for r in rows.values())

        # calibrate-lens stored a calibration: re-measure, stopped after the first batch
        lens_mod.save(LensCalibration(OPTICS.width, OPTICS.height, OPTICS.camera_matrix,
                                      OPTICS.dist_coeffs, 0.0, 0), data)  # fmt: skip
        seen: list[tuple[int, int]] = []
        part = Remeasure(store).run(run_id=run, batch=1, progress=lambda d, t: seen.append((d, t)),
                                    stop=lambda: len(seen) >= 1)  # fmt: skip
        assert part.done == 1 and seen == [(1, 4)]
        assert [j["done"] for j in open_jobs(store)] == [1]
        done_first = measurements_for(store.db, ids[:1])[ids[0]]
        assert done_first["calibrated"] == 1

        rest = Remeasure(store).run(run_id=run, batch=2)
        assert rest.resumed and rest.job_id == part.job_id and rest.measured == 3
        assert open_jobs(store) == []
        after = measurements_for(store.db, ids)
        # the shot done before the interruption was not measured twice
        assert after[ids[0]]["measured_at"] == done_first["measured_at"]
        ref, shots = frames
        for shot_id, (label, instance, image) in zip(ids, shots, strict=True):
            row = after[shot_id]
            assert row["calibrated"] == 1
            # NOTE: a quarter-size still is 3 px per mm: near the truth, not to test_measure's 0.3
            assert row["length_mm"] == pytest.approx(true_size_mm(label, instance)[2], abs=1.0)
            # exactly what measuring the files directly gives
            mask = cv2.imread(str(data / store.get_shot(shot_id)["mask_path"]), 0) > 0
            m, _ = measure_shot(image, ref, mask, lens_mod.load(data))
            assert m is not None and row["length_mm"] == pytest.approx(m.length_mm, abs=1e-3)

        again = Remeasure(store).run(all_runs=True)
        assert again.measured == 4 and not again.resumed
        repeat = measurements_for(store.db, ids)
        for shot_id in ids:
            same = {k: v for k, v in repeat[shot_id].items() if k != "measured_at"}
            assert same == {k: v for k, v in after[shot_id].items() if k != "measured_at"}


def test_remeasure_skips_shots_it_cannot_measure_and_refuses_an_unclear_scope(tmp_path, frames):
    with DatasetStore.open(tmp_path / "data") as store:
        run, _ids = _store_run(store, frames)
        with store.transaction() as conn:
            conn.execute('DELETE FROM "references"')
        report = Remeasure(store).run(run_id=run)
        assert report.skipped == 4 and report.measured == 0 and open_jobs(store) == []
        with pytest.raises(QueryError, match="--run ID for one run, or --all"):
            Remeasure(store).run()
        with pytest.raises(QueryError, match="--run ID for one run, or --all"):
            Remeasure(store).run(run_id=run, all_runs=True)
        with pytest.raises(NotFound):
            Remeasure(store).run(run_id=run + 99)
