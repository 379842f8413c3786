"""Open-set rejection: calibration, model.json, the decision order, and unknowns to review.

The model tests reuse the session's tiny trained model (trained_model.py), whose bundle now
carries model.json; bench/open_set.py measures the same code on the simulated feeder.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from classify.decide import choose_bin
from classify.metrics import top_k_accuracy
from classify.open_set import (
    Head,
    ModelCard,
    OpenSet,
    calibrate_threshold,
    fit_prototypes,
    parse_card,
)
from rig.config import Settings, apply_sim
from rig.errors import ModelError

# --- calibration and the score -------------------------------------------------------------------


def test_the_threshold_accepts_the_chosen_share_of_val_parts() -> None:
    scores = np.random.default_rng(0).gamma(2.0, 1.0, 400)
    for acceptance in (0.95, 0.97):
        threshold = calibrate_threshold(scores, acceptance)
        assert acceptance <= np.mean(scores <= threshold) < acceptance + 0.01
    with pytest.raises(ModelError, match="val split is empty"):
        calibrate_threshold([], 0.95)
    with pytest.raises(ModelError, match=r"\[0.5, 1\)"):
        calibrate_threshold(scores, 1.0)


def test_prototype_distance_is_small_inside_a_class_and_large_outside_all() -> None:
    rng = np.random.default_rng(1)
    centres = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 5.0, 0]])
    classes = np.repeat(np.arange(3), 200)
    features = centres[classes] + rng.normal(0, 0.5, (600, 4))
    protos, whitening = fit_prototypes(features, classes, 3)
    rule = OpenSet("prototype_distance", 0.0, {}, 1, protos, whitening)
    known = rule.scores(np.zeros((600, 3)), features)
    threshold = calibrate_threshold(known, 0.95)
    outside = rule.scores(
        np.zeros((200, 3)), rng.normal(0, 0.5, (200, 4)) + np.array([0, 0, 0, 5.0])
    )
    assert np.mean(outside > threshold) == 1.0
    with pytest.raises(ModelError, match=r"classes \[2\]"):
        fit_prototypes(features[:400], classes[:400], 3)


def test_top_k_accuracy_counts_the_truth_among_the_k_best() -> None:
    scores = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])
    truth = [1, 2, 2]
    assert top_k_accuracy(truth, scores, 1) == round(1 / 3, 4)
    assert top_k_accuracy(truth, scores, 2) == 1.0
    assert top_k_accuracy([], np.zeros((0, 3)), 3) is None


# --- model.json ----------------------------------------------------------------------------------


def _card(method: str = "prototype_distance") -> ModelCard:
    rule = (
        OpenSet(
            "prototype_distance",
            1.25,
            {"snapshot": "snap-0001", "split": "val", "count": 9, "known_acceptance": 0.97},
            1,
            np.eye(3, 4),
            np.eye(4, 2),
        )
        if method == "prototype_distance"
        else OpenSet("max_softmax", 0.4, {"split": "val"})
    )
    return ModelCard([Head("part", ["a", "b", "c"], 0, rule, 0.1)], {"input_size": 48},
                     ["snap-0001"])  # fmt: skip


def test_model_json_round_trips_every_field() -> None:
    for method in ("prototype_distance", "max_softmax"):
        card = _card(method)
        back = parse_card(card.dumps())
        assert back.to_json() == card.to_json()
        assert back.head.open_set.score_name in ("mahalanobis_min", "one_minus_max_probability")
        assert back.source_snapshots == ["snap-0001"] and back.head.min_margin == 0.1


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.update(schema_version=2), "schema_version 2"),
        (lambda d: d.update(heads=[]), "heads must be a non-empty list"),
        (lambda d: d["heads"][0].update(labels="abc"), "labels must be"),
        (lambda d: d["heads"][0].update(output_index=-1), "output_index"),
        (lambda d: d["heads"][0]["open_set"].update(method="vibes"), "method must be one of"),
        (lambda d: d["heads"][0]["open_set"].update(threshold="high"), "threshold must be"),
        (lambda d: d["heads"][0]["open_set"].update(prototypes=[[1.0, 2.0]]), "1 rows for 3"),
        (lambda d: d["heads"][0]["open_set"].update(whitening=[[1.0]]), "whitening has 1 rows"),
        (lambda d: d["heads"][0].update(min_margin=2), "min_margin must be"),
    ],
)
def test_a_malformed_model_json_is_refused_naming_the_field(change, words) -> None:
    raw = _card().to_json()
    change(raw)
    with pytest.raises(ModelError, match=words):
        parse_card(json.dumps(raw).encode())
    with pytest.raises(ModelError, match="not valid JSON"):
        parse_card(b"{nope")


# --- the decision order --------------------------------------------------------------------------


def _settings(**sorter) -> Settings:
    settings = apply_sim(Settings())
    settings.sorter.bins = {"a": 1, "b": 2}
    settings.sorter.confidence_threshold = 0.7
    for key, value in sorter.items():
        setattr(settings.sorter, key, value)
    return settings


def _prediction(label="a", confidence=0.95, margin=0.9, score=0.5, threshold=1.0, min_margin=0.0):
    return SimpleNamespace(label=label, confidence=confidence, margin=margin,
                           open_set_score=score, open_set_threshold=threshold,
                           min_margin=min_margin)  # fmt: skip


def test_decisions_follow_the_contract_order() -> None:
    settings = _settings(min_margin=0.2)
    review = settings.actuator.review_bin
    cases = [
        (None, "no_model", "no_model"),
        # Open-set comes first: a confident answer for a part unlike any class is rejected.
        (_prediction(score=1.5, margin=0.0, confidence=0.1), "open_set", "uncertain"),
        (_prediction(margin=0.1, confidence=0.1), "margin", "uncertain"),
        (_prediction(confidence=0.5), "confidence", "uncertain"),
        (_prediction(label="c"), "unmapped", "unmapped"),
        (_prediction(label="b"), "mapped", "confident"),
    ]
    for prediction, rule, reason in cases:
        choice = choose_bin(prediction, settings)
        assert (choice.rule, choice.reason) == (rule, reason), prediction
        assert choice.review == (rule in ("no_model", "open_set", "margin", "confidence"))
        assert choice.bin == (2 if rule == "mapped" else review)


def test_configuration_only_tightens_the_models_thresholds() -> None:
    near = _prediction(score=0.9, threshold=1.0, margin=0.3, min_margin=0.25)
    assert choose_bin(near, _settings()).rule == "mapped"
    # A looser configured threshold or margin changes nothing ...
    assert choose_bin(near, _settings(open_set_threshold=5.0, min_margin=0.0)).rule == "mapped"
    # ... a tighter one applies.
    assert choose_bin(near, _settings(open_set_threshold=0.8)).rule == "open_set"
    assert choose_bin(near, _settings(min_margin=0.5)).rule == "margin"
    # The model's own margin holds even when the configuration asks for none.
    assert choose_bin(_prediction(margin=0.2, min_margin=0.25), _settings()).rule == "margin"
    # Without model.json there is no open-set score: the rule does not apply.
    old = _prediction(score=None, threshold=None)
    assert choose_bin(old, _settings(open_set_threshold=0.1)).rule == "mapped"


# --- a trained bundle ----------------------------------------------------------------------------


def _trained():
    pytest.importorskip("tensorflow")
    from trained_model import trained

    return trained()


def test_training_writes_model_json_calibrated_on_the_val_split_and_the_runtime_uses_it() -> None:
    from classify.runtime import Classifier

    t = _trained()
    raw = json.loads((t.model_dir / "model.json").read_text())
    head = raw["heads"][0]
    labels = (t.model_dir / "labels.txt").read_text().split()
    assert raw["schema_version"] == 1 and head["labels"] == labels
    assert raw["source_snapshots"] == ["snap-0007"] and raw["preprocessing"]["input_size"] == 48
    rule = head["open_set"]
    assert rule["method"] == "prototype_distance" and rule["score"] == "mahalanobis_min"
    assert rule["calibrated_on"]["split"] == "val"
    assert rule["calibrated_on"]["count"] == t.metrics["counts"]["val"]
    assert t.metrics["open_set"]["threshold"] == pytest.approx(rule["threshold"], abs=1e-5)
    clf = Classifier.from_dir(t.model_dir, num_threads=1)
    assert clf.open_set is not None and clf.card.head.output_index == head["output_index"]
    from snapshot_factory import render

    image, bbox, _, matrix = render("brick-blue-square", 0, np.random.default_rng(3))
    prediction = clf.predict(image, bbox, matrix)
    assert prediction.open_set_threshold == pytest.approx(rule["threshold"], abs=1e-5)
    assert prediction.open_set_score is not None and prediction.open_set_score >= 0
    assert prediction.margin == pytest.approx(
        prediction.top_k[0][1] - prediction.top_k[1][1], abs=1e-6
    )


def test_a_two_output_model_without_its_model_json_is_refused_naming_it(tmp_path) -> None:
    from classify.runtime import Classifier

    t = _trained()
    folder = tmp_path / "m"
    shutil.copytree(t.model_dir, folder)
    (folder / "model.json").unlink()
    with pytest.raises(ModelError, match=r"model\.json"):
        Classifier.from_dir(folder, num_threads=1)


def test_unknown_parts_go_to_review_at_the_measured_rate() -> None:
    """Shapes and colours the tiny model never saw, against its own known parts.

    Measured: every unknown part to review (a green disc, a yellow square and a red triangle,
    60 each); of the 60 known parts 5 to 12 % in three runs (this tiny snapshot's val split
    has 18 shots, so its 97 % quantile is nearly its maximum, and training on a loaded CPU is
    not bit-identical run to run).  The bounds leave room for that spread.
    """
    import cv2
    from snapshot_factory import PARTS, render

    from classify.runtime import Classifier

    clf = Classifier.from_dir(_trained().model_dir, num_threads=1)
    settings = _settings()
    settings.sorter.bins = {label: i + 1 for i, label in enumerate(clf.labels)}
    settings.sorter.confidence_threshold = 0.0
    rng = np.random.default_rng(11)

    def triangle(label: str):
        image, bbox, mask, matrix = render("brick-red-square", 0, rng)
        x, y, w, h = bbox
        image[y : y + h, x : x + w] = (235, 235, 230)
        pts = np.array([[x, y + h], [x + w, y + h], [x + w // 2, y]], np.int32)
        cv2.fillPoly(image, [pts], (200, 30, 30))
        return image, bbox, mask, matrix

    extra = {"disc-green-round": ((40, 160, 60), "circle"),
             "brick-yellow-square": ((230, 200, 40), "square")}  # fmt: skip
    PARTS.update(extra)
    try:
        unknown = [render(label, i % 2, rng) for label in extra for i in range(60)]
    finally:
        for label in extra:
            PARTS.pop(label)
    unknown += [triangle("red-triangle") for _ in range(60)]
    known = [render(label, i % 2, rng) for label in clf.labels for i in range(20)]

    def stored(img: np.ndarray) -> np.ndarray:
        # NOTE: as the snapshot stores its shots (JPEG), so known parts look like the val split.
        jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1]
        return cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def to_review(shots) -> float:
        rules = [
            choose_bin(clf.predict(stored(img), bbox, matrix), settings).rule
            for img, bbox, _, matrix in shots
        ]
        return float(np.mean([r == "open_set" for r in rules]))

    assert to_review(unknown) >= 0.8
    assert to_review(known) <= 0.3


# --- the rig: validation and the sorter ----------------------------------------------------------


@pytest.fixture
def registry(tmp_path):
    pytest.importorskip("tensorflow")
    from registry_helpers import RecordingSorter, add_colour_shots, make_snapshot

    from capture.store import DatasetStore
    from classify.registry import ModelRegistry
    from rig.config import parse_settings

    settings = parse_settings({"data": {"dir": str(tmp_path / "data")},
                               "models": {"accuracy_floor": 0.9}})  # fmt: skip
    store = DatasetStore.open(settings.data.dir)
    add_colour_shots(store)
    make_snapshot(store, settings)
    sorter = RecordingSorter()
    yield ModelRegistry(store, settings, sorter), store, sorter
    store.close()


def _softmax_card(labels: list[str], threshold: float) -> bytes:
    rule = OpenSet("max_softmax", threshold, {"snapshot": "snap-0001", "split": "val"})
    return ModelCard([Head("part", labels, 0, rule)], {"input_size": 16}, ["snap-0001"]).dumps()


def test_validation_reports_top_k_and_the_open_set_rule_and_activation_loads_it(
    registry, tmp_path
) -> None:
    from registry_helpers import LABELS, colour_model, upload_files

    reg, _, sorter = registry
    folder = colour_model(tmp_path / "with-card")
    (folder / "model.json").write_bytes(_softmax_card(LABELS, 0.3))
    result = reg.upload(upload_files(folder), "trainer")
    assert result["state"] == "validated", result["validation"]
    validation = result["validation"]
    assert validation["top_k"] == 3 and validation["top_k_accuracy"] == 1.0
    rule = validation["open_set"]
    assert rule["enabled"] and rule["method"] == "max_softmax" and rule["threshold"] == 0.3
    assert rule["test_rejected"] == 0 and rule["test_rejected_share"] == 0.0
    reg.activate(result["id"], "operator")
    classifier, model_id = sorter.swaps[-1]
    assert model_id == result["id"] and classifier.open_set.threshold == 0.3

    old = reg.upload(upload_files(colour_model(tmp_path / "old")), "trainer")
    assert old["state"] == "validated"
    rule = old["validation"]["open_set"]
    assert not rule["enabled"] and rule["detail"] == "no open-set rejection (no model.json)"
    assert rule["test_rejected"] == 0


def test_a_strict_open_set_rule_shows_in_validation_and_a_changed_model_json_never_loads(
    registry, tmp_path
) -> None:
    from registry_helpers import LABELS, colour_model, upload_files

    reg, store, _ = registry
    folder = colour_model(tmp_path / "strict")
    # A threshold below every score: the rule would send each known test shot to review.
    (folder / "model.json").write_bytes(_softmax_card(LABELS, 0.0))
    result = reg.upload(upload_files(folder), "trainer")
    assert result["validation"]["open_set"]["test_rejected_share"] > 0.5
    (store.model_dir(result["id"]) / "model.json").write_bytes(_softmax_card(LABELS, 0.9))
    with pytest.raises(ModelError, match=r"model\.json differs"):
        reg.activate(result["id"], "operator")


def test_open_set_rejects_reach_the_review_queue_and_the_status_counts_them(tmp_path) -> None:
    from sorting_sim import KNOWN, OracleClassifier, make_rig

    from classify.runtime import Prediction

    class Scored(OracleClassifier):
        """Confident on every part; the open-set score tells unknown parts apart."""

        open_set = OpenSet("max_softmax", 1.0, {"split": "val"})
        card = None

        def predict(self, image_rgb, bbox=None, colour_matrix=None, top_k=3) -> Prediction:
            truth = self.feeder.truth()
            label = truth if truth in KNOWN else KNOWN[0]
            score = 0.2 if truth in KNOWN else 3.0
            return Prediction(label, KNOWN.index(label), 0.99, [(label, 0.99)], 0.98, score, 1.0)

    rig = make_rig(tmp_path / "data", seed=4, unknown_rate=0.3)
    try:
        rig.sorter.set_classifier(Scored(rig.feeder), "model-0001")
        decisions = rig.sorter.run_parts(40)
        assert rig.sorter.flush(60)
        truth = {d.drop_id: rig.truth(d.drop_id) for d in decisions}  # the feeder's drop log
        unknown = [d for d in decisions if truth[d.drop_id] not in KNOWN]
        assert unknown and all(d.rule == "open_set" and d.reason == "uncertain" for d in unknown)
        assert all(d.rule == "mapped" for d in decisions if truth[d.drop_id] in KNOWN)
        queued = rig.store.query("SELECT decision_id FROM review_items", ())
        assert len(queued) == len(unknown)
        status = rig.sorter.status()
        assert status["counts"]["by_rule"]["open_set"] == len(unknown)
        assert status["open_set"]["enabled"] and status["open_set"]["threshold"] == 1.0
    finally:
        rig.close()
