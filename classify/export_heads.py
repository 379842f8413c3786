"""The attribute heads of an exported multi-head model: where each output is, its open-set rule in
``model.json``, and its accuracy on the test split.

Why outputs are found by name: the TFLite converter lists outputs in its own order, and two heads
may have the same width (three colours, three labels), so the width trick of
:func:`classify.export.output_indices` cannot tell them apart.  The converter names each output
``StatefulPartitionedCall...:k`` with ``k`` the Keras output's index, in the float and the int8
model alike (checked by :func:`keras_order`, which refuses a model whose names do not say).

The Keras order of a deployable multi-head model (:func:`classify.export.deployable`) is: the
label's probabilities, the pooled features, then one output per attribute head in ``--heads``
order.  Each attribute head gets a ``max_softmax`` open-set rule calibrated on the val split
like the label's (the same known-part acceptance), so the sorter can tell when that head is unsure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from capture.store.files import write_durably
from classify.metrics import confusion, summarise
from classify.open_set import (
    DEFAULT_ACCEPTANCE,
    MODEL_JSON,
    Head,
    OpenSet,
    calibrate_threshold,
    read_card,
)
from classify.tflite_outputs import keras_order
from classify.train_heads import AttributeHead
from rig.errors import ModelError

#: Keras outputs of a deployable multi-head model before the attribute heads.
FIRST_HEAD_OUTPUT = 2


def head_scores(
    model_path: Path, crops: Sequence[np.ndarray], positions: list[int]
) -> list[np.ndarray]:
    """Dequantized scores of the outputs at ``positions`` over prepared crops, one array each."""
    from classify.runtime import find_interpreter

    _, interpreter_class = find_interpreter()
    interp = interpreter_class(model_path=str(model_path))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    rows: list[list[np.ndarray]] = [[] for _ in positions]
    for crop in crops:
        interp.set_tensor(inp["index"], np.asarray(crop)[None].astype(inp["dtype"]))
        interp.invoke()
        for row, i in zip(rows, positions, strict=True):
            raw = interp.get_tensor(outs[i]["index"])[0]
            scale, zero = outs[i]["quantization"]
            row.append((raw.astype(np.float32) - zero) * scale if scale else raw.astype(np.float32))
    return [np.stack(r) if r else np.zeros((0, 0), np.float32) for r in rows]


def _plain(split: Any) -> tuple[list[np.ndarray], np.ndarray]:
    from classify.export import plain_pairs

    pairs = list(plain_pairs(split))
    return [c for c, _ in pairs], np.asarray([k for _, k in pairs], np.int64)


def add_attribute_heads(
    folder: Path,
    heads: list[AttributeHead],
    val: Any | None,
    acceptance: float = DEFAULT_ACCEPTANCE,
) -> dict[str, Any]:
    """Append the attribute heads to ``folder/model.json`` (written by
    :func:`classify.export.write_model_card`); a per-head summary for metrics.json."""
    folder = Path(folder)
    card = read_card(folder / MODEL_JSON)
    if card is None:
        raise ModelError(f"{folder} has no model.json to add heads to")
    positions = keras_order(folder / "model.tflite")
    float_path = folder / "model-float.tflite"
    if float_path.is_file() and keras_order(float_path) != positions:
        raise ModelError("model-float.tflite orders its outputs differently from model.tflite")
    wanted = [positions[FIRST_HEAD_OUTPUT + i] for i in range(len(heads))]
    crops, _ = _plain(val) if val is not None and len(val.classes) else ([], np.zeros(0))
    scores = head_scores(folder / "model.tflite", crops, wanted) if crops else []
    added, summary = [], {}
    for i, head in enumerate(heads):
        rule = None
        if scores:
            label_rule = card.head.open_set
            snapshot = None if label_rule is None else label_rule.calibrated_on.get("snapshot")
            calibrated = {"snapshot": snapshot, "split": "val", "count": len(crops),
                          "known_acceptance": acceptance}  # fmt: skip
            threshold = calibrate_threshold(1.0 - scores[i].max(axis=1), acceptance)
            rule = OpenSet("max_softmax", threshold, calibrated)
        added.append(Head(head.name, list(head.values), wanted[i], rule, 0.0))
        summary[head.name] = {
            "output_index": wanted[i],
            "labels": list(head.values),
            "open_set": None if rule is None else {"method": rule.method,
                                                   "threshold": round(rule.threshold, 6)},
        }  # fmt: skip
    card = replace(card, heads=[card.head, *added])
    write_durably(folder / MODEL_JSON, card.dumps())
    return summary


def evaluate_heads(folder: Path, heads: list[AttributeHead], test: Any) -> dict[str, Any]:
    """Each attribute head's accuracy on the test split, int8 and float, with per-value recall."""
    folder = Path(folder)
    if not len(test.classes):
        return {h.name: {"int8_accuracy": None, "float_accuracy": None} for h in heads}
    crops, classes = _plain(test)
    out: dict[str, Any] = {}
    results = {}
    for name in ("model.tflite", "model-float.tflite"):
        positions = keras_order(folder / name)
        wanted = [positions[FIRST_HEAD_OUTPUT + i] for i in range(len(heads))]
        results[name] = head_scores(folder / name, crops, wanted)
    for i, head in enumerate(heads):
        truth = head.table[classes]
        int8 = summarise(confusion(truth, results["model.tflite"][i].argmax(axis=1),
                                   len(head.values)), head.values)  # fmt: skip
        flt = summarise(confusion(truth, results["model-float.tflite"][i].argmax(axis=1),
                                  len(head.values)), head.values)  # fmt: skip
        out[head.name] = {
            "labels": list(head.values),
            "int8_accuracy": int8["accuracy"],
            "float_accuracy": flt["accuracy"],
            "per_class": int8["per_class"],
            "confusion_int8": int8["confusion"],
        }
    return out
