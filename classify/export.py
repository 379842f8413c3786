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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from capture.store.files import write_durably
from rig.errors import ModelError

#: Calibration images used at most; more barely changes the ranges and costs time.
MAX_CALIBRATION = 200


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
    if info["input_dtype"] != "uint8" or info["output_dtype"] != "uint8":
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
    out = interpreter.get_output_details()[0]
    return {
        "input_shape": [int(v) for v in inp["shape"]],
        "input_dtype": np.dtype(inp["dtype"]).name,
        "input_quantization": (float(inp["quantization"][0]), int(inp["quantization"][1])),
        "output_dtype": np.dtype(out["dtype"]).name,
        "output_quantization": (float(out["quantization"][0]), int(out["quantization"][1])),
        "bytes": len(blob),
    }
