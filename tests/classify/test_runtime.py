"""The TFLite runtime: fallback chain, loading, predict and top-k."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from snapshot_factory import render
from trained_model import SIZE, trained

from classify import runtime
from classify.runtime import Classifier, Prediction, find_interpreter
from rig.errors import ModelError


def fake_imports(monkeypatch, available: set[str]) -> None:
    """Let only the runtimes in ``available`` import, each with a recognisable class."""

    def import_module(name: str):
        for runtime_name, module_name, attr in runtime.RUNTIMES:
            if module_name == name and runtime_name in available:
                module = types.SimpleNamespace()
                cls = type(f"Interp_{runtime_name}", (), {})
                if "." in attr:  # tf.lite.Interpreter
                    module.lite = types.SimpleNamespace(Interpreter=cls)
                else:
                    module.Interpreter = cls
                return module
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(runtime.importlib, "import_module", import_module)


@pytest.mark.parametrize(
    ("available", "chosen"),
    [
        ({"ai_edge_litert", "tflite_runtime", "tf.lite"}, "ai_edge_litert"),
        ({"tflite_runtime", "tf.lite"}, "tflite_runtime"),
        ({"tf.lite"}, "tf.lite"),
    ],
)
def test_runtime_falls_back_in_order(monkeypatch, available, chosen) -> None:
    fake_imports(monkeypatch, available)
    name, cls = find_interpreter()
    assert name == chosen
    assert cls.__name__ == f"Interp_{chosen}"


def test_no_runtime_at_all_says_how_to_install_one(monkeypatch) -> None:
    fake_imports(monkeypatch, set())
    with pytest.raises(ModelError, match="pip install ai-edge-litert"):
        find_interpreter()


def test_the_installed_runtime_is_litert() -> None:
    assert find_interpreter()[0] == "ai_edge_litert"


def test_predict_crops_and_returns_label_confidence_and_top_k() -> None:
    t = trained()
    clf = Classifier.from_dir(t.model_dir, num_threads=2)
    assert clf.runtime == "ai_edge_litert" and clf.input_size == SIZE
    assert clf.labels == t.metrics["labels"]
    rng = np.random.default_rng(99)
    right = 0
    for index, label in enumerate(clf.labels):
        for i in range(4):
            img, bbox, _, matrix = render(label, i % 2, rng)
            p = clf.predict(img, bbox=bbox, colour_matrix=matrix, top_k=2)
            assert isinstance(p, Prediction) and len(p.top_k) == 2
            assert p.top_k[0] == (p.label, p.confidence)
            assert p.top_k[0][1] >= p.top_k[1][1]
            assert p.label == clf.labels[p.index]
            right += p.index == index
    assert right >= 10  # of 12 fresh shots


def test_tf_lite_fallback_gives_the_same_answer(monkeypatch) -> None:
    t = trained()
    frame = render("disc-red-round", 0, np.random.default_rng(5))
    litert = Classifier.from_dir(t.model_dir).predict(frame[0], frame[1], frame[3])
    original = runtime.importlib.import_module

    def without_litert(name: str):
        if name.startswith(("ai_edge_litert", "tflite_runtime")):
            raise ImportError(name)
        return original(name)

    monkeypatch.setattr(runtime.importlib, "import_module", without_litert)
    clf = Classifier.from_dir(t.model_dir)
    assert clf.runtime == "tf.lite"
    p = clf.predict(frame[0], frame[1], frame[3])
    assert p.label == litert.label and abs(p.confidence - litert.confidence) < 0.02


def test_float_model_takes_raw_pixels_too() -> None:
    t = trained()
    clf = Classifier.load(t.model_dir / "model-float.tflite", t.metrics["labels"])
    assert clf.input_dtype == np.float32
    probs = clf.probabilities(np.full((SIZE, SIZE, 3), 200, np.uint8))
    assert probs.shape == (3,) and abs(float(probs.sum()) - 1.0) < 1e-4


def test_int8_output_is_dequantized_to_probabilities() -> None:
    clf = Classifier.from_dir(trained().model_dir)
    probs = clf.invoke_raw(np.zeros((1, SIZE, SIZE, 3), np.uint8))[0]
    assert probs.dtype == np.float32 and abs(float(probs.sum()) - 1.0) < 0.02


def test_wrong_batch_shape_and_label_count_are_model_errors(tmp_path) -> None:
    t = trained()
    clf = Classifier.from_dir(t.model_dir)
    with pytest.raises(ModelError, match="batch of shape"):
        clf.invoke_raw(np.zeros((1, SIZE + 1, SIZE, 3), np.uint8))
    with pytest.raises(ModelError, match=r"labels\.txt has 2 labels"):
        Classifier.load(t.model_dir / "model.tflite", ["a", "b"])
    with pytest.raises(ModelError, match="no model file"):
        Classifier.load(tmp_path / "missing.tflite", ["a", "b"])
    (tmp_path / "labels.txt").write_text("\n")
    with pytest.raises(ModelError, match="empty"):
        Classifier.from_dir(tmp_path)


def test_decide_orders_top_k_and_clips_it_to_the_labels() -> None:
    clf = Classifier.__new__(Classifier)
    clf.labels = ["a", "b", "c"]
    p = clf.decide(np.array([0.2, 0.5, 0.3], np.float32), top_k=10)
    assert p.label == "b" and p.index == 1
    assert [lbl for lbl, _ in p.top_k] == ["b", "c", "a"]
    with pytest.raises(ModelError, match="non-finite"):
        clf.decide(np.array([np.nan, 0.5, 0.3], np.float32))
