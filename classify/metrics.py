"""Accuracy, per-class precision and recall, and the confusion-matrix picture.

Pure numpy and Pillow, so the rig can compute the same figures when it validates an uploaded
model (helper "models") without TensorFlow.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def confusion(
    truth: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(truth, int), np.asarray(predicted, int)), 1)
    return matrix


def summarise(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy and per-class precision/recall/support from a confusion matrix.

    A class never predicted has precision None (undefined), not 0: the report should not
    claim the model was wrong about something it never said.
    """
    total = int(matrix.sum())
    correct = int(np.trace(matrix))
    per_class = {}
    for i, label in enumerate(labels):
        predicted = int(matrix[:, i].sum())
        support = int(matrix[i, :].sum())
        hit = int(matrix[i, i])
        per_class[label] = {
            "precision": round(hit / predicted, 4) if predicted else None,
            "recall": round(hit / support, 4) if support else None,
            "support": support,
        }
    return {
        "accuracy": round(correct / total, 4) if total else None,
        "count": total,
        "per_class": per_class,
        "confusion": matrix.tolist(),
    }


def top_k_accuracy(truth: Sequence[int], scores: np.ndarray, k: int) -> float | None:
    """Share of rows whose true class is among the ``k`` highest scores (None: no rows).

    Why: the labelling station offers the model's top-k as choices, so top-3 accuracy says how
    often the right label is one key press away even when top-1 is wrong.
    """
    scores = np.asarray(scores, np.float64)
    truth_arr = np.asarray(truth, int)
    if scores.ndim != 2 or len(truth_arr) != len(scores):
        raise ValueError("scores must be one row per truth value")
    if not len(truth_arr):
        return None
    k = max(1, min(int(k), scores.shape[1]))
    # NOTE: a stable sort breaks ties by class index, as Classifier.decide does.
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return round(float(np.mean(np.any(top == truth_arr[:, None], axis=1))), 4)


def confusion_png(matrix: np.ndarray, labels: Sequence[str], title: str = "") -> bytes:
    """A PNG of the confusion matrix, rows true and columns predicted, drawn with Pillow."""
    n = len(labels)
    cell, pad = 36, 8
    font = ImageFont.load_default()
    names = [str(lbl)[:24] for lbl in labels]
    left = max(60, 7 * max((len(s) for s in names), default=4) + 2 * pad)
    top = 40 + 7 * max((len(s) for s in names), default=4)
    width, height = left + n * cell + pad, top + n * cell + pad
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text(
        (pad, pad), title or "confusion (rows: truth, columns: predicted)", fill="black", font=font
    )
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    share = matrix / rows
    for i, name in enumerate(names):
        draw.text((pad, top + i * cell + cell // 3), name, fill="black", font=font)
        label_img = Image.new("RGB", (top - 30, 12), "white")
        ImageDraw.Draw(label_img).text((0, 0), name, fill="black", font=font)
        img.paste(label_img.rotate(90, expand=True), (left + i * cell + cell // 3, 30))
        for j in range(n):
            level = int(255 - 200 * share[i, j])
            colour = (level, level, 255) if i == j else (255, level, level)
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell, top + (i + 1) * cell)
            draw.rectangle(box, fill=colour, outline="grey")
            draw.text(
                (box[0] + 4, box[1] + cell // 3), str(int(matrix[i, j])), fill="black", font=font
            )
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
