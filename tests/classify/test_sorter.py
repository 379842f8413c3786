"""The sorting loop on the simulated platform: one decision and one firing per part, the review
queue, sorter-sourced shots, sampled crops, and a model swapped while the loop runs."""

from __future__ import annotations

import io
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sorting_sim import BINS, KNOWN, OracleClassifier, make_rig, sorter_settings

from rig.errors import RunStateError, StoreError


def test_every_part_gets_exactly_one_decision_and_one_firing_to_its_bin(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, unknown_rate=0.2)
    try:
        decisions = rig.sorter.run_parts(40)
        rig.sorter.flush()
        assert len(decisions) == 40
        drops = rig.feeder.drops[:40]
        firings = rig.actuator.firings
        # The 41st part may already lie on the platform, never fired at.
        assert len(firings) == 40 and len(rig.feeder.drops) <= 41
        assert [f[2] for f in firings] == [d.label for d in drops]
        for firing, decision in zip(firings, decisions, strict=True):
            truth = firing[2]
            assert rig.truth(decision.drop_id) == truth and decision.bin == firing[1]
            expected = BINS[truth] if truth in KNOWN else rig.settings.actuator.review_bin
            assert firing[1] == expected, (truth, decision)
        assert rig.oracle.calls == 40  # classified once each, not once per frame
        rows = rig.store.list_decisions(limit=100)
        assert len(rows) == 40
        assert [r["drop_id"] for r in reversed(rows)] == [d.id for d in drops]
        assert all(r["truth"] is None for r in rows)  # the old column: product code has no truth
        assert all(r["model_id"] == "model-0001" for r in rows)
        assert any(d.label not in KNOWN for d in drops), "the feeder dropped no unknown part"
        assert rig.store.check().ok, rig.store.check().problems()
    finally:
        rig.close()


def test_uncertain_parts_reach_the_review_queue_with_their_crop(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, unknown_rate=0.3, seed=4)
    try:
        decisions = rig.sorter.run_parts(30)
        rig.sorter.flush()
        uncertain = [d for d in decisions if d.reason == "uncertain"]
        assert uncertain and all(rig.truth(d.drop_id) not in KNOWN for d in uncertain)
        assert all(d.bin == rig.settings.actuator.review_bin for d in uncertain)
        queue = rig.store.review_queue(limit=100)
        assert len(queue) == len(uncertain)
        for item in queue:
            assert item["state"] == "open" and item["reason"] == "uncertain"
            assert item["confidence"] == pytest.approx(0.4)
            with Image.open(io.BytesIO(rig.store.path_of(item["crop_path"]).read_bytes())) as im:
                assert im.format == "JPEG" and min(im.size) >= 20
        assert rig.sorter.status()["counts"]["review"] == len(uncertain)
    finally:
        rig.close()


def test_labelling_a_review_item_makes_a_sorter_sourced_shot(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, unknown_rate=0.5, seed=6)
    try:
        rig.sorter.run_parts(12)
        rig.sorter.flush()
        first, second, *_ = rig.store.review_queue()
        shot_id = rig.store.label_review_item(first["id"], "washer-m8", "alice")
        shot = rig.store.get_shot(shot_id)
        assert shot["source"] == "sorter" and shot["label"] == "washer-m8"
        assert shot["instance_id"] == f"sorter-{first['id']:08d}"
        assert shot["run_id"] is None and shot["background_id"] is None
        assert shot["pose"] is None and shot["angle_cmd"] is None and shot["mask_path"] is None
        item = rig.store.get_review_item(first["id"])
        box = [shot["bbox_x"], shot["bbox_y"], shot["bbox_w"], shot["bbox_h"]]
        assert box == item["crop_bbox"] and box[0] > 0 and box[2] < shot["width"]
        assert shot["colour_matrix"] == item["colour_matrix"]
        assert item["state"] == "labelled" and item["shot_id"] == shot_id
        instance = rig.store.query("SELECT source FROM part_instances WHERE instance_id = ?",
                                   (shot["instance_id"],))  # fmt: skip
        assert instance == [{"source": "sorter"}]
        assert (
            rig.store.path_of(shot["path"]).read_bytes()
            == rig.store.path_of(first["crop_path"]).read_bytes()
        )
        with pytest.raises(RunStateError, match="already labelled"):
            rig.store.label_review_item(first["id"], "washer-m8", "bob")
        with pytest.raises(StoreError, match="label is empty"):
            rig.store.label_review_item(second["id"], "  ", "bob")
        rig.store.discard_review_item(second["id"], "bob")
        assert rig.store.get_review_item(second["id"])["state"] == "discarded"
        assert rig.store.review_counts()["labelled"] == 1
        assert rig.store.check().ok, rig.store.check().problems()
    finally:
        rig.close()


def test_without_a_model_every_part_goes_to_review(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, model=False)
    try:
        decisions = rig.sorter.run_parts(5)
        rig.sorter.flush()
        assert [d.reason for d in decisions] == ["no_model"] * 5
        assert {f[1] for f in rig.actuator.firings} == {rig.settings.actuator.review_bin}
        assert len(rig.store.review_queue()) == 5
    finally:
        rig.close()


def test_a_confident_label_without_a_bin_goes_to_the_review_bin_only(tmp_path: Path) -> None:
    settings = sorter_settings()
    settings.sorter.bins = {}
    rig = make_rig(tmp_path, settings=settings, unknown_rate=0.0)
    try:
        decisions = rig.sorter.run_parts(4)
        rig.sorter.flush()
        assert {d.reason for d in decisions} == {"unmapped"}
        assert {d.bin for d in decisions} == {settings.actuator.review_bin}
        assert rig.store.review_queue() == []
    finally:
        rig.close()


def test_every_nth_crop_is_kept(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, settings=sorter_settings(sample_every=4), unknown_rate=0.0)
    try:
        rig.sorter.run_parts(12)
        rig.sorter.flush()
        rows = list(reversed(rig.store.list_decisions()))
        kept = [i + 1 for i, r in enumerate(rows) if r["crop_path"]]
        assert kept == [4, 8, 12]
        assert all(rig.store.path_of(rows[i - 1]["crop_path"]).exists() for i in kept)
    finally:
        rig.close()


def test_the_model_is_swapped_while_the_loop_runs(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, unknown_rate=0.0)
    second = OracleClassifier(rig.feeder, confidence=0.91)
    sorter = rig.sorter
    try:
        sorter.take_reference()
        sorter.start()
        assert sorter.status()["state"] == "running"
        swapped = threading.Event()

        def swap_after_some_parts() -> None:
            while sorter.status()["counts"]["decisions"] < 10:
                threading.Event().wait(0.001)
            sorter.set_classifier(second, "model-0002")
            swapped.set()

        threading.Thread(target=swap_after_some_parts, daemon=True).start()
        assert swapped.wait(60)
        while sorter.status()["counts"]["decisions"] < 20:
            threading.Event().wait(0.001)
        sorter.stop()
        assert sorter.status()["state"] == "stopped"
        rows = rig.store.list_decisions(limit=1000)
        assert len(rows) == sorter.status()["counts"]["decisions"] == len(rig.actuator.firings)
        models = {r["model_id"] for r in rows}
        assert models == {"model-0001", "model-0002"}
        for row in rows:  # each decision names the model that made it
            assert row["confidence"] == pytest.approx(
                0.97 if row["model_id"] == "model-0001" else 0.91
            )
        assert sorter.status()["model_id"] == "model-0002"
    finally:
        rig.close()


def test_status_reports_what_the_page_shows(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, unknown_rate=0.0)
    try:
        assert rig.sorter.status()["state"] == "stopped"
        rig.sorter.run_parts(3)
        rig.sorter.flush()
        status = rig.sorter.status()
        assert status["model_id"] == "model-0001" and status["runtime"] == "oracle"
        assert status["reference"] and status["colour_corrected"]
        assert status["counts"]["decisions"] == 3 and status["logged"] == 3
        assert sum(status["counts"]["by_bin"].values()) == 3
        assert rig.truth(status["last_decision"]["drop_id"]) == rig.actuator.firings[-1][2]
        assert status["incident"] is None
    finally:
        rig.close()


def test_partrig_sort_sim_sorts_parts_and_logs_them(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from capture.store import DatasetStore
    from web.cli import app

    config = tmp_path / "partrig.toml"
    config.write_text("[simulator]\ntime_scale = 0\n[camera]\npreview_size = [320, 240]\n")
    args = ["sort", "--sim", "--local", "--parts", "4", "-c", str(config), "--data", str(tmp_path)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "--collect-for-review" in refused.output
    result = CliRunner().invoke(app, [*args, "--collect-for-review"])
    assert result.exit_code == 0, result.output
    assert "sorted 4 parts" in result.output and "no model is active" in result.output
    with DatasetStore.open(tmp_path) as store:
        assert store.count_decisions() == 4 and len(store.review_queue()) == 4


def test_partrig_sort_drives_a_running_servers_sorter(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from classify.sort_cli import sort_remotely

    calls: list[tuple[str, str, str | None]] = []
    decisions = iter([3, 5, 8])

    def server(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path, request.headers.get("x-api-key")))
        if request.url.path == "/api/sorter/start":
            return httpx.Response(200, json={"state": "running", "counts": {"decisions": 3}})
        if request.url.path == "/api/sorter/status":
            n = next(decisions)
            return httpx.Response(200, json={"state": "running", "counts": {"decisions": n}})
        return httpx.Response(200, json={"state": "stopped", "counts": {}})

    settings = sorter_settings()
    settings.auth.operator_keys = ["k" * 32]
    monkeypatch.setattr("classify.sort_cli.POLL_S", 0.0)
    code = sort_remotely(settings, 5, False, transport=httpx.MockTransport(server))
    assert code == 0
    assert [c[:2] for c in calls] == [
        ("POST", "/api/sorter/start"),
        ("GET", "/api/sorter/status"),
        ("GET", "/api/sorter/status"),
        ("GET", "/api/sorter/status"),
        ("POST", "/api/sorter/stop"),
    ]
    assert {c[2] for c in calls} == {"k" * 32}


def test_a_real_tflite_model_sorts_through_the_loop(tmp_path: Path) -> None:
    """The loop with the project's runtime: prepare, int8 invoke, decide, fire, log."""
    pytest.importorskip("tensorflow")
    import keras
    import numpy as np

    from classify.export import export_int8
    from classify.runtime import Classifier

    labels = ["brick-2x4-blue", "brick-2x4-red"]
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(inputs))
    dense = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inputs, dense(pooled))
    # NOTE: the crop's mean red minus its mean blue decides: blue parts left, red right.
    dense.set_weights([np.array([[-20.0, 20.0], [0, 0], [20.0, -20.0]], np.float32), np.zeros(2)])
    rng = np.random.default_rng(0)
    # NOTE: flat colours span the pooled means the crops produce, so int8 keeps the range.
    calibration = [
        np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (32, 32, 3)).copy()
        for _ in range(16)
    ]
    export_int8(model, calibration, tmp_path / "model.tflite")
    classifier = Classifier.load(tmp_path / "model.tflite", labels, num_threads=1)

    rig = make_rig(tmp_path / "data", unknown_rate=0.0)
    rig.feeder.labels = ["brick-2x4-red", "brick-2x4-blue"]
    rig.sorter.set_classifier(classifier, "model-0007")
    try:
        decisions = rig.sorter.run_parts(10)
        rig.sorter.flush()
        assert len(decisions) == 10 == len(rig.actuator.firings)
        assert {rig.truth(d.drop_id) for d in decisions} == set(labels)
        for d in decisions:
            assert d.label == rig.truth(d.drop_id) and d.reason == "confident", d
            assert d.bin == BINS[d.label]
        rows = rig.store.list_decisions()
        assert {r["model_id"] for r in rows} == {"model-0007"}
        assert all(len(r["top_k"]) == 2 for r in rows)
    finally:
        rig.close()
