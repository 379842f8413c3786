"""Build the Keras classifier: a backbone with the pixel scaling inside the model.

Why scaling inside: the model then takes raw ``uint8`` camera pixels, so a full-int8 export has
``uint8`` input with scale 1 and zero point 0 and the Pi does no float maths before
``invoke()`` (``ml-and-datasets.md``, "Preprocessing").

Backbones:

- ``mobilenet_v2`` and ``mobilenet_v3_small`` (Keras applications) at width ``alpha`` and any
  input ``size`` of at least 32 pixels;
- ``tiny``: a three-block CNN for fast tests and small datasets, about 25k parameters.

Weights: ``None``/``"none"`` trains from scratch (offline, the tests' path); ``"imagenet"``
downloads the backbone's ImageNet weights (needs the internet); a file path loads weights
from that file: for the MobileNets a Keras *no-top* backbone file (e.g.
``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5``), for ``tiny`` a
``.weights.h5`` of a whole model built with the same arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rig.errors import ModelError

BACKBONES = ("mobilenet_v2", "mobilenet_v3_small", "tiny")
#: Batch-norm moving-average momentum: faster than Keras' defaults (0.99, 0.999 in the
#: MobileNets) because small rig datasets give few steps per epoch.
BN_MOMENTUM = 0.9
MOBILENET_ALPHAS = {
    "mobilenet_v2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    "mobilenet_v3_small": (0.75, 1.0),
}


def _weights_arg(weights: str | Path | None) -> str | Path | None:
    if weights is None or str(weights).lower() == "none":
        return None
    if str(weights) == "imagenet":
        return "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise ModelError(f"no weights file at {path}; give a file, 'imagenet' or 'none'")
    return path


#: Normalisation of the tiny CNN: ``batch`` (default) or ``group``.
NORMS = ("batch", "group")


def _tiny(keras: Any, x: Any, norm: str = "batch") -> Any:
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        if norm == "group":
            # NOTE: GroupNorm keeps no running statistics, so what val sees is what training
            # saw.  It exports to full int8 (mean, rsqrt) and runs in LiteRT, but unlike
            # BatchNorm it does not fold into the convolution: on the real belt photos its
            # int8 models lost up to 0.045 accuracy against float, BatchNorm's none, and with
            # the warm-up + cosine schedule BatchNorm's val accuracy no longer swings.
            x = keras.layers.GroupNormalization(groups=8)(x)
        else:
            x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    return keras.layers.GlobalAveragePooling2D()(x)


def head_layer(name: str) -> str:
    """The Keras layer (and output) name of the attribute head ``name``."""
    return f"head_{name}"


def check_options(backbone: str, alpha: float, size: int, weights: str | Path | None) -> None:
    """Refuse bad build options at once, before a trainer spends minutes preparing data."""
    if backbone not in BACKBONES:
        raise ModelError(f"backbone must be one of {BACKBONES} (got {backbone!r})")
    if not 32 <= size <= 1024:
        raise ModelError(f"input size must be between 32 and 1024 pixels (got {size})")
    if backbone in MOBILENET_ALPHAS and alpha not in MOBILENET_ALPHAS[backbone]:
        raise ModelError(f"{backbone} supports alpha in {MOBILENET_ALPHAS[backbone]} (got {alpha})")
    resolved = _weights_arg(weights)
    if backbone == "tiny" and resolved == "imagenet":
        raise ModelError("the tiny backbone has no ImageNet weights; use --weights none")


def _mobilenet(keras: Any, backbone: str, alpha: float, size: int, weights: Any) -> Any:
    shape = (size, size, 3)
    weights_arg = str(weights) if isinstance(weights, Path) else weights
    try:
        if backbone == "mobilenet_v2":
            return keras.applications.MobileNetV2(
                input_shape=shape,
                alpha=alpha,
                include_top=False,
                weights=weights_arg,
                pooling="avg",
            )
        return keras.applications.MobileNetV3Small(
            input_shape=shape,
            alpha=alpha,
            include_top=False,
            weights=weights_arg,
            pooling="avg",
            include_preprocessing=False,
        )
    except Exception as exc:  # Keras raises a bare Exception when a download fails
        hint = (
            "ImageNet weights need the internet; download them on a connected machine and pass "
            "the file with --weights PATH, or use --weights none"
            if weights_arg == "imagenet"
            else "check that the file is a no-top backbone weights file for this alpha and size"
        )
        raise ModelError(
            f"cannot build {backbone} with weights {weights_arg}: {exc}. {hint}"
        ) from None


def build_model(
    num_classes: int,
    backbone: str = "mobilenet_v2",
    alpha: float = 1.0,
    size: int = 224,
    weights: str | Path | None = None,
    norm: str = "batch",
    heads: dict[str, int] | None = None,
) -> Any:
    """A compiled-ready ``keras.Model``: uint8-range pixels in, class probabilities out.

    ``norm`` chooses the tiny CNN's normalisation (:data:`NORMS`); the MobileNets keep their
    BatchNorm (their weights were trained with it), at momentum :data:`BN_MOMENTUM`.

    ``heads`` (attribute name -> number of values) adds one softmax output per attribute on the
    same pooled features, named :func:`head_layer` (``head_colour``); the label's output stays
    ``probs`` and first.  Without it the model is the single-head one, unchanged."""
    import keras

    check_options(backbone, alpha, size, weights)
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes (got {num_classes})")
    weights = _weights_arg(weights)
    inputs = keras.Input(shape=(size, size, 3), name="pixels")
    if backbone == "tiny":
        x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
        if norm not in NORMS:
            raise ModelError(f"norm must be one of {NORMS} (got {norm!r})")
        x = _tiny(keras, x, norm)
    else:
        # NOTE: MobileNets were trained on pixels in [-1, 1].
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
        base = _mobilenet(keras, backbone, float(alpha), size, weights)
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                # NOTE: Keras' MobileNets average batch statistics with momentum 0.999, which
                # needs thousands of steps; a rig dataset gives tens per epoch, and stale
                # statistics make every val prediction one class for many epochs.
                layer.momentum = BN_MOMENTUM
        x = base(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probs")(x)
    if heads:
        extra = []
        for name, count in heads.items():
            if count < 2:
                raise ModelError(f"the {name} head needs at least 2 values (got {count})")
            extra.append(keras.layers.Dense(count, activation="softmax", name=head_layer(name))(x))
        model = keras.Model(inputs, [outputs, *extra], name=f"partrig_{backbone}")
    else:
        model = keras.Model(inputs, outputs, name=f"partrig_{backbone}")
    if backbone == "tiny" and isinstance(weights, Path):
        try:
            model.load_weights(str(weights))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load {weights} into the tiny model: {exc}") from None
    return model
