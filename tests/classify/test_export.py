"""TFLite export: full int8 with raw-pixel uint8 input, and agreement with the float model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trained_model import SIZE, trained

from classify.export import describe, export_int8
from classify.runtime import Classifier
from classify.train import prepare_split
from classify.train_data import open_snapshot
from rig.errors import ModelError


def test_int8_model_takes_uint8_pixels_with_scale_one_and_zero_point_zero() -> None:
    info = describe((trained().model_dir / "model.tflite").read_bytes())
    assert info["input_shape"] == [1, SIZE, SIZE, 3]
    assert info["input_dtype"] == "uint8" and info["output_dtype"] == "uint8"
    assert info["input_quantization"] == (1.0, 0)


def test_float_model_is_float32_and_larger() -> None:
    folder = trained().model_dir
    info = describe((folder / "model-float.tflite").read_bytes())
    assert info["input_dtype"] == "float32" and info["output_dtype"] == "float32"
    assert info["bytes"] > (folder / "model.tflite").stat().st_size


def test_int8_agrees_with_float_on_the_test_split() -> None:
    t = trained()
    test = prepare_split(open_snapshot(t.snapshot).samples("test"), SIZE, for_training=False)
    labels = t.metrics["labels"]
    f = Classifier.load(t.model_dir / "model-float.tflite", labels)
    q = Classifier.load(t.model_dir / "model.tflite", labels)
    pf = np.stack([f.probabilities(c) for c in test.crops])
    pq = np.stack([q.probabilities(c) for c in test.crops])
    agree = (pf.argmax(1) == pq.argmax(1)).mean()
    assert agree >= 0.9
    assert float(np.abs(pf - pq).mean()) < 0.05


def test_int8_export_needs_calibration_images(tmp_path) -> None:
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    with pytest.raises(ModelError, match="at least one representative image"):
        export_int8(model, [], tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()
