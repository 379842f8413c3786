"""Export a trained Keras model to TFLite: full int8 for the Pi, float for comparison.

Why full int8 with ``uint8`` input and output: LiteRT runs it about twice as fast as float on
the CPU, and the sorter feeds it the ``uint8`` crop from :func:`classify.preprocess.prepare`
untouched.  Dynamic-range quantization is avoided: it was slower than float here and the old
runtime cannot load it (``ml-and-datasets.md``).

The int8 model is calibrated on training images (``representative``), which must be prepared
crops (``uint8``, ``size`` x ``size`` x 3).  The input range is pinned to 0..255, so the input
tensor has scale 1 and zero point 0: a camera pixel value *is* the quantized value.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from capture.store.files import write_durably
from classify.open_set import (
    DEFAULT_ACCEPTANCE,
    MODEL_JSON,
    Head,
    ModelCard,
    OpenSet,
    calibrate_threshold,
    fit_prototypes,
)
from classify.preprocess import CROP_MARGIN
from rig.errors import ModelError

#: Calibration images used at most; more barely changes the ranges and costs time.
MAX_CALIBRATION = 200
#: Training shots whose features make the open-set prototypes, at most.
MAX_PROTOTYPE_SHOTS = 4000


def _converter(model: Any) -> Any:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model)


def _convert(converter: Any, what: str) -> bytes:
    # NOTE: the Keras exporter prints every captured tensor to stdout; keep the CLI readable.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return converter.convert()
    except Exception as exc:  # the converter raises many unrelated types
        raise ModelError(f"{what} conversion failed: {exc}") from None


def _calibration(representative: Iterable[np.ndarray]) -> Iterator[list[np.ndarray]]:
    count = 0
    for image in representative:
        if count >= MAX_CALIBRATION:
            break
        batch = np.asarray(image, np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        if count == 0:
            # NOTE: one black and one white pixel pin the calibrated input range to exactly
            # 0..255, hence input scale 1 and zero point 0; two pixels do not move the
            # activation ranges measurably.
            batch = batch.copy()
            batch[0, 0, 0, :] = 0.0
            batch[0, -1, -1, :] = 255.0
        count += 1
        yield [batch]
    if count == 0:
        raise ModelError("int8 calibration needs at least one representative image")


def export_int8(model: Any, representative: Iterable[np.ndarray], path: Path) -> dict[str, Any]:
    """Write the full-int8 model (uint8 in and out) to ``path``; return its input quantization.

    Raises ModelError if the converter produced anything but a uint8 input with scale 1 and
    zero point 0, because the sorter relies on feeding raw pixels.
    """
    import tensorflow as tf

    converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    images = list(representative)
    converter.representative_dataset = lambda: _calibration(images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    blob = _convert(converter, "int8")
    info = describe(blob)
    scale, zero = info["input_quantization"]
    dtypes = {info["input_dtype"], *(o["dtype"] for o in info["outputs"])}
    if dtypes != {"uint8"}:
        raise ModelError(f"int8 export has {info['input_dtype']}/{info['output_dtype']} I/O")
    if abs(scale - 1.0) > 1e-6 or zero != 0:
        raise ModelError(
            f"int8 export has input scale {scale} and zero point {zero}, not 1 and 0; "
            "check that the model starts with its Rescaling layer"
        )
    write_durably(Path(path), blob)
    return info


def export_float(model: Any, path: Path) -> dict[str, Any]:
    """Write the float32 model to ``path``; it takes raw 0..255 pixels as float32."""
    converter = _converter(model)
    blob = _convert(converter, "float")
    write_durably(Path(path), blob)
    return describe(blob)


def describe(blob: bytes) -> dict[str, Any]:
    """Input/output dtypes, shapes and quantization of a TFLite model held in memory."""
    from classify.runtime import find_interpreter

    _, interpreter_class = find_interpreter()
    interpreter = interpreter_class(model_content=blob)
    inp = interpreter.get_input_details()[0]
    outs = interpreter.get_output_details()
    out = outs[0]
    return {
        "input_shape": [int(v) for v in inp["shape"]],
        "input_dtype": np.dtype(inp["dtype"]).name,
        "input_quantization": (float(inp["quantization"][0]), int(inp["quantization"][1])),
        "output_dtype": np.dtype(out["dtype"]).name,
        "output_quantization": (float(out["quantization"][0]), int(out["quantization"][1])),
        "outputs": [
            {"shape": [int(v) for v in o["shape"]], "dtype": np.dtype(o["dtype"]).name}
            for o in outs
        ],
        "bytes": len(blob),
    }


def deployable(model: Any) -> Any:
    """The trained classifier with a second output: the pooled features under its last layer.

    Why: the open-set score (:mod:`classify.open_set`) measures a part's distance from the
    training classes in these features; on the Pi they come out of the same invoke.  The last
    layer must be the ``probs`` Dense layer of :func:`classify.model_build.build_model`.
    """
    import keras

    try:
        features = model.get_layer("probs").input
    except ValueError:
        raise ModelError("the model has no 'probs' layer; build it with build_model") from None
    # NOTE: a multi-head model's attribute heads follow (classify.export_heads finds them).
    outputs = [model.outputs[0], features, *model.outputs[1:]]
    return keras.Model(model.inputs, outputs, name=model.name)


def output_indices(model_path: Path, num_classes: int) -> tuple[int, int | None]:
    """``(class output, feature output or None)`` of an exported model, by tensor shape.

    NOTE: the converter orders outputs by its own tensor names, not the Keras order; the
    feature output is the other one.  Equal widths would be ambiguous, so they are refused.
    """
    from classify.runtime import find_interpreter

    _, interpreter_class = find_interpreter()
    outs = interpreter_class(model_path=str(model_path)).get_output_details()
    widths = [int(o["shape"][-1]) for o in outs]
    if len(outs) == 1:
        return 0, None
    if len(outs) > 2:
        from classify.tflite_outputs import keras_order

        positions = keras_order(model_path)  # a multi-head model: by the converter's names
        return positions[0], positions[1]
    if len(outs) != 2 or widths.count(num_classes) != 1:
        raise ModelError(
            f"{model_path.name} has outputs of widths {widths}; expected {num_classes} class "
            "scores and one feature vector of another width"
        )
    probs = widths.index(num_classes)
    return probs, 1 - probs


def plain_pairs(split: Any) -> Iterator[tuple[np.ndarray, int]]:
    """``(colour-corrected crop, class)`` of every shot of a split, in memory or streamed."""
    from capture.vision.colour import apply_colour_matrix

    if hasattr(split, "plain_crops"):
        yield from split.plain_crops()
        return
    matrices = getattr(split, "matrices", None) or [None] * len(split.crops)
    for crop, matrix, cls in zip(split.crops, matrices, split.classes, strict=True):
        plain = crop if matrix is None else apply_colour_matrix(crop, matrix)
        yield plain, int(cls)


def head_outputs(
    model_path: Path, crops: Sequence[np.ndarray], indices: tuple[int, int | None]
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(probabilities, features or None)`` of an exported model over prepared crops, as the
    runtime on the Pi dequantizes them."""
    from classify.runtime import find_interpreter

    _, interpreter_class = find_interpreter()
    interp = interpreter_class(model_path=str(model_path))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    wanted = [i for i in indices if i is not None]
    rows: list[list[np.ndarray]] = [[] for _ in wanted]
    for crop in crops:
        interp.set_tensor(inp["index"], np.asarray(crop)[None].astype(inp["dtype"]))
        interp.invoke()
        for row, i in zip(rows, wanted, strict=True):
            raw = interp.get_tensor(outs[i]["index"])[0]
            scale, zero = outs[i]["quantization"]
            row.append((raw.astype(np.float32) - zero) * scale if scale else raw.astype(np.float32))
    stacked = [np.stack(r) if r else np.zeros((0, 0), np.float32) for r in rows]
    return stacked[0], (stacked[1] if len(stacked) > 1 else None)


def write_model_card(
    folder: Path,
    labels: list[str],
    train: Any,
    val: Any | None,
    snapshots: list[str],
    input_size: int,
    acceptance: float = DEFAULT_ACCEPTANCE,
) -> dict[str, Any]:
    """Calibrate the open-set rule and write ``folder/model.json``; a summary for metrics.

    ``train`` and ``val`` are the trainer's splits (in memory or streamed); every crop is
    the plain, colour-corrected one, never augmented.  Prototypes come from the train split (at
    most :data:`MAX_PROTOTYPE_SHOTS`); the threshold from the **val** split only, through the
    exported int8 model.
    """
    folder = Path(folder)
    model_path = folder / "model.tflite"
    probs_index, feature_index = output_indices(model_path, len(labels))
    float_path = folder / "model-float.tflite"
    if float_path.is_file() and output_indices(float_path, len(labels)) != (
        probs_index,
        feature_index,
    ):
        raise ModelError("model-float.tflite orders its outputs differently from model.tflite")
    card = ModelCard(
        heads=[Head("part", list(labels), probs_index, None, 0.0)],
        preprocessing={
            "function": "classify.preprocess.prepare",
            "input_size": int(input_size),
            "input_dtype": "uint8",
            "crop_margin": CROP_MARGIN,
            "colour_correction": "the shot's colour matrix, applied to the resized crop",
        },
        source_snapshots=list(snapshots),
    )
    if val is None:
        write_durably(folder / MODEL_JSON, card.dumps())
        return {"method": None, "threshold": None, "detail": "no val split to calibrate on"}
    val_crops = [c for c, _ in plain_pairs(val)]
    val_probs, val_features = head_outputs(model_path, val_crops, (probs_index, feature_index))
    calibrated = {
        "snapshot": snapshots[0] if len(snapshots) == 1 else snapshots,
        "split": "val",
        "count": len(val_crops),
        "known_acceptance": acceptance,
    }
    if feature_index is not None:
        pairs = list(itertools.islice(plain_pairs(train), MAX_PROTOTYPE_SHOTS))
        crops = [c for c, _ in pairs]
        _, train_features = head_outputs(model_path, crops, (probs_index, feature_index))
        if train_features is None:
            raise ModelError(f"the exported model has no feature output {feature_index}")
        classes = np.asarray([k for _, k in pairs], np.int64)
        protos, whitening = fit_prototypes(train_features, classes, len(labels))
        rule = OpenSet("prototype_distance", 0.0, calibrated, feature_index, protos, whitening)
    else:
        rule = OpenSet("max_softmax", 0.0, calibrated)
    scores = rule.scores(val_probs, val_features)
    threshold = calibrate_threshold(scores, acceptance)
    rule = OpenSet(rule.method, threshold, calibrated, rule.feature_output_index,
                   rule.prototypes, rule.whitening)  # fmt: skip
    card = replace(card, heads=[replace(card.head, open_set=rule)])
    write_durably(folder / MODEL_JSON, card.dumps())
    accepted = float(np.mean(scores <= threshold)) if len(scores) else None
    return {
        "method": rule.method,
        "score": rule.score_name,
        "threshold": round(threshold, 6),
        "calibrated_on": calibrated,
        "val_accepted": None if accepted is None else round(accepted, 4),
    }
