"""build_model: backbones, the Rescaling inside, option checks and local weights files."""

from __future__ import annotations

import numpy as np
import pytest

from classify.model_build import build_model, check_options
from rig.errors import ModelError


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("resnet", 1.0, 224, None), "backbone must be one of"),
        (("mobilenet_v2", 0.3, 224, None), "supports alpha in"),
        (("mobilenet_v3_small", 0.5, 224, None), "supports alpha in"),
        (("tiny", 1.0, 16, None), "between 32 and 1024"),
        (("tiny", 1.0, 96, "imagenet"), "no ImageNet weights"),
        (("mobilenet_v2", 1.0, 224, "/nonexistent/w.h5"), "no weights file"),
    ],
)
def test_bad_options_are_refused_with_what_to_change(args, message) -> None:
    with pytest.raises(ModelError, match=message):
        check_options(*args)


def test_models_start_with_rescaling_and_end_in_probabilities() -> None:
    import keras

    for backbone, size in (("tiny", 32), ("mobilenet_v3_small", 32)):
        model = build_model(3, backbone, 0.75 if backbone != "tiny" else 1.0, size)
        assert isinstance(model.layers[1], keras.layers.Rescaling)
        out = model.predict(np.full((2, size, size, 3), 255, np.uint8), verbose=0)
        assert out.shape == (2, 3) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


def backbone_of(model):
    return next(layer for layer in model.layers if layer.name.startswith("mobilenet"))


def test_a_local_weights_file_is_loaded_into_the_backbone(tmp_path) -> None:
    first = build_model(2, "mobilenet_v2", 0.35, 32)
    backbone = backbone_of(first)
    path = tmp_path / "mobilenet_v2_0.35_no_top.weights.h5"
    backbone.save_weights(str(path))
    second = build_model(2, "mobilenet_v2", 0.35, 32, weights=path)
    other = backbone_of(second)
    for a, b in zip(backbone.get_weights(), other.get_weights(), strict=True):
        assert np.array_equal(a, b)
    fresh = build_model(2, "mobilenet_v2", 0.35, 32)
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(backbone.get_weights(), backbone_of(fresh).get_weights(), strict=True)
    )


def test_tiny_weights_file_restores_the_whole_model(tmp_path) -> None:
    first = build_model(3, "tiny", size=32)
    path = tmp_path / "tiny.weights.h5"
    first.save_weights(str(path))
    second = build_model(3, "tiny", size=32, weights=path)
    x = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3)).astype(np.float32)
    assert np.allclose(first.predict(x, verbose=0), second.predict(x, verbose=0))
