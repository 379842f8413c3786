"""End to end on the simulated rig and the real store: 3 parts x 2 backgrounds x 36 angles.

Proves the engine, the writer, the masks and the store fit: exactly the 216 planned shots are
stored, each with a mask whose IoU against the simulator's truth mask is at least 0.8.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import cv2
import numpy as np

from capture.runs.run import CaptureRun
from capture.runs.state import RunState
from rig.config import apply_sim, parse_settings


def sim_labels(n: int) -> list[str]:
    """``n`` trainable part labels from the simulated catalogue, in catalogue order."""
    from rig.sim.catalogue import trainable_labels

    labels = trainable_labels()
    assert len(labels) >= n, f"the simulated catalogue has only {len(labels)} trainable parts"
    return labels[:n]


def plan_toml(labels: list[str], sheets: list[int], angles: int) -> str:
    parts = ", ".join(f'{{ label = "{x}", instance = "{x}-e2e" }}' for x in labels)
    return f"""
name = "e2e"
backgrounds = {sheets}
angles_per_rev = {angles}
lights = [1.0]
settle_s = 0.2
parts = [{parts}]

[image]
format = "jpeg"
quality = 90
"""


def sim_settings(data: Path):
    return apply_sim(
        parse_settings(
            {
                "camera": {"driver": "sim", "still_size": [640, 480]},
                "simulator": {"time_scale": 0},
                "data": {"dir": str(data)},
            }
        )
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_a_simulated_plan_stores_every_shot_once_with_masks_that_match_the_truth(tmp_path):
    from capture.store import DatasetStore
    from rig.rig import open_rig
    from rig.sheets import SHEETS

    data = tmp_path / "data"
    truth: dict[int, np.ndarray] = {}
    store = DatasetStore.open(data)
    with open_rig(sim_settings(data)) as rig:
        plan = plan_toml(sim_labels(3), sorted(SHEETS)[:2], 36)
        run = CaptureRun.create(store, rig, plan, settings=sim_settings(data), sleep=lambda s: None)

        def on_event(event) -> None:
            if event.kind == "shot":
                truth[event.data["index"]] = rig.camera.last_truth_mask.copy()
            elif event.kind == "state" and event.data["state"] == "awaiting_operator":
                threading.Thread(target=run.answer_prompt).start()

        run.subscribe(on_event)
        run.start()
        assert run.wait(300) is RunState.COMPLETED, run.reason
    store.close()

    db = sqlite3.connect(data / "partrig.db")
    rows = db.execute(
        "SELECT shot_index, mask_path, path FROM shots WHERE run_id = ?", (run.run_id,)
    ).fetchall()
    assert sorted(r[0] for r in rows) == list(range(216))
    ious = []
    for index, mask_path, path in rows:
        assert mask_path and (data / path).is_file()
        stored = cv2.imread(str(data / mask_path), cv2.IMREAD_GRAYSCALE) > 0
        ious.append(iou(stored, truth[index]))
    assert min(ious) >= 0.8, f"worst IoU {min(ious):.3f}, mean {np.mean(ious):.3f}"


def test_a_full_disk_fails_the_run_keeps_every_stored_shot_and_resume_completes(
    tmp_path, monkeypatch
):
    import errno

    from capture.store import DatasetStore
    from rig.rig import open_rig
    from rig.sheets import SHEETS

    data = tmp_path / "data"
    store = DatasetStore.open(data)
    real_write = store.fs.write
    writes = {"n": 0, "full": True}

    def write(fd, buf):
        # NOTE: the store's own file-system layer, so the serial link's writes are untouched.
        writes["n"] += 1
        if writes["full"] and writes["n"] > 25:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, buf)

    with open_rig(sim_settings(data)) as rig:
        plan = plan_toml(sim_labels(1), sorted(SHEETS)[:1], 12)
        run = CaptureRun.create(store, rig, plan, settings=sim_settings(data), sleep=lambda s: None)
        run.subscribe(
            lambda e: (
                e.kind == "state"
                and e.data["state"] == "awaiting_operator"
                and threading.Thread(target=run.answer_prompt).start()
            )
        )
        monkeypatch.setattr(store.fs, "write", write)
        run.start()
        assert run.wait(60) is RunState.FAILED
        assert "DiskFull" in run.reason and "free space" in run.reason
        kept = store.done_shot_indices(run.run_id)
        assert kept == set(range(len(kept))) and 0 < len(kept) < 12
        writes["full"] = False
        rig.clear_fault(zero_confirmed=True)
        store.clear_fault("test")
        run.start()
        assert run.wait(60) is RunState.COMPLETED, run.reason
        assert store.done_shot_indices(run.run_id) == set(range(12))
    store.close()
