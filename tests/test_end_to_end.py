"""The whole loop on the simulated rig: capture, snapshot, train, push, validate, activate, sort.

1. Capture a dataset on the simulated turntable (virtual clock): 5 part types, including two of
   the same colour that differ in shape and two of the same shape in different colours, 6
   instances each, 3 poses, 2 backgrounds.
2. Snapshot it (split by instance, so the test split holds instances training never saw).
3. Train the tiny backbone on the CPU with ``weights=None`` and export full int8.
4. Push it over HTTP to a live server with a trainer key; the rig validates it on its own
   held-out split; an operator key activates it, which swaps it into the running sorter.
5. Sort 300 parts from the simulated feeder: every one a fresh instance, in a random pose and
   angle, and about one in ten a part the model has never seen.

Then: accuracy on the known parts is at least 0.95, every part has exactly one logged decision
and one firing of the actuator to that decision's bin, the uncertain parts are in the review
queue, and a classifier that sees only the mean colour of the same crops does clearly worse.
The figures are printed as one JSON line (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import httpx
import uvicorn

from capture.runs.run import CaptureRun
from capture.runs.state import RunState
from capture.snapshots.build import create_snapshot, snapshot_dir
from capture.snapshots.filter import SnapshotFilter
from capture.snapshots.splits import SplitRules
from capture.store import DatasetStore
from classify.actuator_sim import SimActuator
from classify.augment import AugmentConfig
from classify.feeder_sim import SimFeeder
from classify.preprocess import prepare
from classify.push import push
from classify.runtime import Prediction
from classify.sorter import Sorter
from classify.train import TrainOptions, train
from classify.train_data import open_snapshot
from rig.config import Settings, apply_sim, parse_settings
from rig.rig import open_rig
from rig.sim.clock import SimClock
from web.app import create_app

LABELS = ["brick-2x4-red", "brick-2x2-red", "brick-2x4-blue", "plate-2x4-green", "brick-1x4-yellow"]
INSTANCES = 6
POSES = ("upright", "side", "upside_down")
#: White (the feeder's platform sheet too) and paper texture.  NOTE: at 320x240 the markers of
#: the plain grey and blue sheets are too small to detect, and the run would re-prompt forever.
SHEETS = (1, 6)
ANGLES_PER_REV = 6
FRAME = (320, 240)
SIZE = 64
PARTS = 300
TRAINER_KEY = "e2e-trainer-key-0123456789"
OPERATOR_KEY = "e2e-operator-key-0123456789"
BINS = {label: i + 1 for i, label in enumerate(LABELS)}


def e2e_settings(data: Path) -> Settings:
    return apply_sim(
        parse_settings(
            {
                "camera": {"driver": "sim", "still_size": list(FRAME), "preview_size": list(FRAME)},
                "simulator": {"time_scale": 0},
                "data": {"dir": str(data)},
                "auth": {
                    "session_secret": "e" * 32,
                    "operator_keys": [OPERATOR_KEY],
                    "trainer_keys": [TRAINER_KEY],
                },
                "sorter": {"bins": BINS, "confidence_threshold": 0.7},
                "models": {"accuracy_floor": 0.9},
            }
        )
    )


def plan_toml() -> str:
    parts = ", ".join(
        f'{{ label = "{label}", instance = "{label}-{k}" }}'
        for label in LABELS
        for k in range(1, INSTANCES + 1)
    )
    poses = ", ".join(f'{{ name = "{p}" }}' for p in POSES)
    return (
        f'name = "e2e"\nbackgrounds = {list(SHEETS)}\nangles_per_rev = {ANGLES_PER_REV}\n'
        f"settle_s = 0.2\nparts = [{parts}]\nposes = [{poses}]\n"
    )


def capture(store: DatasetStore, rig: Any, settings: Settings) -> int:
    """Run the plan; the simulated operator answers every prompt (sheet, part, pose)."""
    run = CaptureRun.create(store, rig, plan_toml(), settings=settings, sleep=lambda s: None)
    answered: dict[str, int] = defaultdict(int)

    def on_event(event: Any) -> None:
        if event.kind == "state" and event.data["state"] == "awaiting_operator":
            answered[str(event.data.get("prompt"))] += 1
            # NOTE: a prompt the simulated operator cannot satisfy would come back forever.
            if answered[str(event.data.get("prompt"))] <= 3:
                threading.Thread(target=run.answer_prompt).start()

    run.subscribe(on_event)
    run.start()
    deadline = time.monotonic() + 900
    while run.alive and time.monotonic() < deadline:
        assert max(answered.values(), default=0) <= 3, f"stuck on a prompt: {run.prompt}"
        run.wait(0.5)
    assert run.state is RunState.COMPLETED, (run.state, run.reason, run.prompt)
    return int(store.scalar("SELECT COUNT(*) FROM shots WHERE run_id = ?", (run.run_id,)))


class MeanColourClassifier:
    """The baseline: nearest class centroid of the crop's mean colour, nothing else."""

    runtime = "mean-colour"

    def __init__(self, samples: list[Any]) -> None:
        sums: dict[str, list[np.ndarray]] = defaultdict(list)
        for s in samples:
            sums[s.label].append(self.feature(s.image(), s.bbox, s.colour_matrix))
        self.labels = sorted(sums)
        self.centroids = np.stack([np.mean(sums[label], axis=0) for label in self.labels])

    @staticmethod
    def feature(image: np.ndarray, bbox: Any, matrix: Any) -> np.ndarray:
        return prepare(image, bbox, matrix, SIZE).reshape(-1, 3).mean(axis=0)

    def predict(self, image_rgb, bbox=None, colour_matrix=None, top_k=3) -> Prediction:
        distance = np.linalg.norm(
            self.centroids - self.feature(image_rgb, bbox, colour_matrix), axis=1
        )
        best = int(np.argmin(distance))
        return Prediction(self.labels[best], best, 1.0, [(self.labels[best], 1.0)])


class Tee:
    """Passes predictions through from the active model and records the baseline's on the
    very same frame, so both are scored on identical parts."""

    def __init__(self, inner: Any, baseline: MeanColourClassifier, log: list) -> None:
        self.inner, self.baseline, self.log = inner, baseline, log
        self.runtime = inner.runtime

    def predict(self, image_rgb, bbox=None, colour_matrix=None, top_k=3) -> Prediction:
        prediction = self.inner.predict(image_rgb, bbox, colour_matrix, top_k)
        self.log.append(self.baseline.predict(image_rgb, bbox, colour_matrix).label)
        return prediction


class TeeSorter(Sorter):
    """The real Sorter; each model the registry swaps in is wrapped in a :class:`Tee`."""

    baseline: MeanColourClassifier
    baseline_log: list

    def set_classifier(self, classifier: Any, model_id: str | None) -> None:
        wrapped = None if classifier is None else Tee(classifier, self.baseline, self.baseline_log)
        super().set_classifier(wrapped, model_id)


class LiveServer:
    """The real app under uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def test_capture_snapshot_train_push_activate_and_sort_300_simulated_parts(tmp_path):
    figures: dict[str, Any] = {}
    t0 = time.monotonic()
    settings = e2e_settings(tmp_path / "data")
    store = DatasetStore.open(settings.data.dir)
    with open_rig(settings) as rig:
        shots = capture(store, rig, settings)
        assert shots == len(LABELS) * INSTANCES * len(POSES) * len(SHEETS) * ANGLES_PER_REV
        figures["capture_s"] = round(time.monotonic() - t0, 1)

        rules = SplitRules(train=0.6, val=0.2, test=0.2, seed=0, group_by="instance")
        manifest = create_snapshot(store, settings, SnapshotFilter(), rules, formats=("folder",))
        snap = snapshot_dir(settings.data.dir, manifest["id"])
        assert {c["label"] for c in manifest["classes"]} == set(LABELS)
        assert manifest["counts"]["by_split"]["test"] > 0

        t1 = time.monotonic()
        # NOTE: rotate="crop": the simulated feeder drops parts flat at any in-plane angle under
        # a camera looking down, so the sorter sees whole crops turned.  The turntable default
        # ("part") measured 0.9375 known accuracy here (2x4 red read as 2x2 red), "crop" >= 0.95.
        opts = TrainOptions(backbone="tiny", size=SIZE, weights=None, epochs=40, batch=32,
                            patience=10, min_epoch_samples=1024,
                            augment=AugmentConfig(rotate="crop"))  # fmt: skip
        model_dir = tmp_path / "model"
        metrics = train(snap, model_dir, opts, log=lambda line: None)
        figures["train_s"] = round(time.monotonic() - t1, 1)
        figures["trainer_int8_accuracy"] = metrics["int8_accuracy"]
        figures["trainer_float_accuracy"] = metrics["float_accuracy"]

        app = create_app(settings, rig=rig, store=store)
        with LiveServer(app) as server:
            # NOTE: the app built its own simulated sorter; the test's sorter, over a feeder
            # it controls, takes its place (the registry swaps models into it).
            state = app.state
            state.sorting.sorter.close()
            clock = SimClock(0)
            feeder = SimFeeder(settings, clock, seed=11, labels=LABELS, unknown_rate=0.1,
                               preview_size=FRAME)  # fmt: skip
            actuator = SimActuator(feeder.world, clock=clock)
            sorter = TeeSorter(feeder.camera, actuator, store, settings, clock)
            sorter.baseline = MeanColourClassifier(open_snapshot(snap).samples("train"))
            sorter.baseline_log = []
            state.sorting.sorter = state.sorter = state.models.sorter = sorter

            answer = push(server.url, model_dir, key=TRAINER_KEY)
            assert answer["state"] == "validated", answer["validation"]
            figures["rig_validation_accuracy"] = answer["validation"]["accuracy"]
            r = httpx.post(f"{server.url}/api/models/{answer['id']}/activate",
                           headers={"X-Api-Key": OPERATOR_KEY}, timeout=120)  # fmt: skip
            assert r.status_code == 200, r.text
            assert sorter.model_id == answer["id"]

            t2 = time.monotonic()
            decided = sorter.run_parts(PARTS)
            assert sorter.flush(120)
            figures["sort_s"] = round(time.monotonic() - t2, 1)
            assert sorter.incident is None, sorter.incident
            assert len(decided) == PARTS

            queue = httpx.get(f"{server.url}/api/review?limit=500",
                              headers={"X-Api-Key": OPERATOR_KEY}).json()  # fmt: skip

        decisions = list(reversed(store.list_decisions(limit=1000)))
        drops = feeder.drops[:PARTS]
        # NOTE: the truth comes from the feeder's drop log, joined by each decision's drop id.
        for d in decisions:
            d["truth"] = feeder.drop(d["drop_id"]).label
        # Exactly one decision and one firing per part, in order, each firing to its bin.
        assert len(decisions) == PARTS and len(actuator.firings) == PARTS
        assert all(f[2] == d.label for f, d in zip(actuator.firings, drops, strict=True))
        assert all(f[1] == d["bin"] for f, d in zip(actuator.firings, decisions, strict=True))
        assert [d["drop_id"] for d in decisions] == [p.id for p in drops]
        assert {d["model_id"] for d in decisions} == {answer["id"]}

        known = [d for d in decisions if d["truth"] in LABELS]
        unknown = [d for d in decisions if d["truth"] not in LABELS]
        accuracy = np.mean([d["label"] == d["truth"] for d in known])
        baseline_pairs = [
            (b, d["truth"])
            for b, d in zip(sorter.baseline_log, decisions, strict=True)
            if d["truth"] in LABELS
        ]
        baseline = np.mean([b == t for b, t in baseline_pairs])
        right_bin = np.mean([d["bin"] == BINS[d["truth"]] for d in known])

        # The review path: every uncertain part is in the queue with its crop.
        review_decisions = {d["id"] for d in decisions if d["reason"] == "uncertain"}
        queued = {item["decision_id"] for item in queue["items"]}
        assert queued == review_decisions and queue["counts"]["open"] == len(review_decisions)
        assert unknown, "the feeder must plant parts the model does not know"

        figures.update(
            shots=shots,
            parts=PARTS,
            known_parts=len(known),
            unknown_parts=len(unknown),
            accuracy_known=round(float(accuracy), 4),
            right_bin_known=round(float(right_bin), 4),
            mean_colour_baseline=round(float(baseline), 4),
            confusions=dict(
                Counter(f"{d['truth']}->{d['label']}" for d in known if d["label"] != d["truth"])
            ),
            review_queue=len(review_decisions),
            unknown_to_review=sum(d["reason"] == "uncertain" for d in unknown),
            total_s=round(time.monotonic() - t0, 1),
        )
        print("\nend-to-end " + json.dumps(figures))
        assert accuracy >= 0.95, figures
        assert baseline <= accuracy - 0.1, figures
    store.close()
