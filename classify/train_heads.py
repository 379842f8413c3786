"""Multi-head training: one backbone, the label head plus one head per attribute.

``partrig train --heads label,colour,category`` trains a model whose pooled features feed the
label's softmax (``probs``, as before) and one softmax per attribute (``head_colour``...).  Why
one backbone: the Pi runs one invoke per part and gets every head's answer from it, and an
attribute head generalises across labels (a red part the model never saw is still red).

Where the attribute values come from: the snapshot's catalogue, per label - the manifest's
``classes[i].attributes`` (``{"colour": "red", "category": "brick"}``), else its top-level
``attributes`` (label -> attributes).  Every label must have a value for every head asked for;
a label without one is refused, naming it, because a head trained on a guessed value would
teach the sorter the guess.  Each head's values are sorted, so their order (the head's output
order in ``model.json``) is stable.

The targets of a head are a lookup of the label's class (:attr:`AttributeHead.table`), so the
in-memory and streamed splits (:mod:`classify.train_stream`) need no extra data, only a map of
their ``(crops, classes)`` batches to ``(crops, {output: targets}, sample weights)``.  Keras
refuses ``class_weight`` for several outputs, so the label's class weights become sample
weights, which weight every head's loss alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from classify.model_build import head_layer
from rig.errors import ModelError, StoreError

LABEL = "label"
LABEL_OUTPUT = "probs"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_HEADS = 8


def parse_heads(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"label,colour"`` -> ``("label", "colour")``; the label head is always there and first."""
    raw = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip() for n in raw if n.strip()]
    if LABEL not in names:
        raise ModelError(f"--heads must include {LABEL!r} (the part's label), e.g. label,colour")
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise ModelError(
            f"head names are lower-case letters, digits and _ (got {', '.join(map(repr, bad))})"
        )
    if len(set(names)) != len(names):
        raise ModelError(f"--heads names a head twice: {','.join(names)}")
    if len(names) > MAX_HEADS:
        raise ModelError(f"at most {MAX_HEADS} heads (got {len(names)})")
    return (LABEL, *[n for n in names if n != LABEL])


@dataclass(frozen=True)
class AttributeHead:
    """One attribute head: its values (output order) and the value index of each label class."""

    name: str
    values: list[str]
    table: np.ndarray  # class index -> value index

    @property
    def output(self) -> str:
        return head_layer(self.name)


def class_attributes(manifest: dict[str, Any], labels: list[str]) -> dict[str, dict[str, str]]:
    """label -> {attribute: value} from the snapshot manifest's catalogue."""
    top = manifest.get("attributes") or {}
    out: dict[str, dict[str, str]] = {label: {} for label in labels}
    if isinstance(top, dict):
        for label in labels:
            found = top.get(label)
            if isinstance(found, dict):
                out[label].update({str(k): str(v) for k, v in found.items() if v not in (None, "")})
    for entry in manifest.get("classes") or []:
        found = entry.get("attributes") if isinstance(entry, dict) else None
        if isinstance(found, dict) and entry.get("label") in out:
            out[entry["label"]].update(
                {str(k): str(v) for k, v in found.items() if v not in (None, "")}
            )
    return out


def attribute_heads(
    manifest: dict[str, Any], labels: list[str], names: tuple[str, ...]
) -> list[AttributeHead]:
    """The attribute heads ``names`` asks for (the label head left out), or StoreError naming
    the labels that lack a value."""
    catalogue = class_attributes(manifest, labels)
    heads = []
    for name in names:
        if name == LABEL:
            continue
        missing = [label for label in labels if name not in catalogue[label]]
        if missing:
            raise StoreError(
                f"the {name} head needs a {name} for every label; the snapshot's catalogue has "
                f"none for {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}. Set it "
                "in the part catalogue (or the plan), make a new snapshot, or leave the head out"
            )
        values = sorted({catalogue[label][name] for label in labels})
        if len(values) < 2:
            raise StoreError(
                f"every label has {name} {values[0]!r}: a head needs at least two values to learn"
            )
        table = np.asarray([values.index(catalogue[label][name]) for label in labels], np.int64)
        heads.append(AttributeHead(name, values, table))
    return heads


def targets(classes: np.ndarray, heads: list[AttributeHead]) -> dict[str, np.ndarray]:
    """Every output's targets for a batch of label classes."""
    out = {LABEL_OUTPUT: np.asarray(classes, np.int64)}
    for head in heads:
        out[head.output] = head.table[np.asarray(classes, np.int64)]
    return out


def weight_vector(weights: dict[int, float], count: int) -> np.ndarray:
    return np.asarray([weights.get(i, 1.0) for i in range(count)], np.float32)


def compile_heads(model: Any, heads: list[AttributeHead], rate: Any) -> None:
    """Compile with one sparse cross-entropy and one accuracy per output."""
    import keras

    outputs = [LABEL_OUTPUT, *(h.output for h in heads)]
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss={o: "sparse_categorical_crossentropy" for o in outputs},
        metrics={o: ["accuracy"] for o in outputs},
    )


def _dataset(ds: Any, heads: list[AttributeHead], weights: np.ndarray | None) -> Any:
    """Map a streamed split's ``(crops, classes)`` batches to every head's targets."""
    import tensorflow as tf

    tables = {h.output: tf.constant(h.table) for h in heads}
    vec = None if weights is None else tf.constant(weights)

    def mapped(x: Any, y: Any) -> Any:
        ys = {LABEL_OUTPUT: y, **{k: tf.gather(t, y) for k, t in tables.items()}}
        return (x, ys) if vec is None else (x, ys, tf.gather(vec, y))

    return ds.map(mapped)


def _row(epoch: int, hist: dict[str, Any], heads: list[AttributeHead]) -> dict[str, Any]:
    def last(key: str) -> float:
        return round(float(hist[key][-1]), 4)

    row: dict[str, Any] = {
        "epoch": epoch,
        "loss": last("loss"),
        "accuracy": last(f"{LABEL_OUTPUT}_accuracy"),
    }
    for head in heads:
        row[f"{head.name}_accuracy"] = last(f"{head.output}_accuracy")
    return row


def fit_heads(
    model: Any,
    train: Any,
    val: Any,
    weights: dict[int, float],
    heads: list[AttributeHead],
    opts: Any,
    log: Callable[[str], None],
    augmented_epoch: Callable[..., tuple[np.ndarray, np.ndarray]],
) -> dict[str, Any]:
    """:func:`classify.train.fit` for a multi-head model: the best epoch by the label head's
    smoothed val accuracy (the same rule), every head's accuracy in the history."""
    from classify.train_stream import StreamSplit

    rng = np.random.default_rng(opts.seed)
    vec = weight_vector(weights, len(weights))
    best: dict[str, Any] = {"epoch": 0, "val_accuracy": -1.0, "val_loss": float("inf"), "s": -1.0}
    smooth: float | None = None
    best_weights = model.get_weights()
    history = []
    has_val = len(val.classes) > 0
    for epoch in range(1, opts.epochs + 1):
        if isinstance(train, StreamSplit):
            data = _dataset(train.epoch(opts.seed, epoch, opts.min_epoch_samples, opts.batch),
                            heads, vec)  # fmt: skip
            hist = model.fit(data, epochs=1, verbose=0, shuffle=False)
        else:
            x, y = augmented_epoch(train, opts, rng)
            hist = model.fit(x, targets(y, heads), sample_weight=vec[y], batch_size=opts.batch,
                             epochs=1, verbose=0, shuffle=True)  # fmt: skip
        row = _row(epoch, hist.history, heads)
        if has_val:
            if isinstance(val, StreamSplit):
                scores = model.evaluate(_dataset(val.evaluation(opts.batch), heads, None),
                                        verbose=0, return_dict=True)  # fmt: skip
            else:
                scores = model.evaluate(
                    val.crops,
                    targets(val.classes, heads),
                    batch_size=opts.batch,
                    verbose=0,
                    return_dict=True,
                )
            row["val_loss"] = round(float(scores["loss"]), 4)
            row["val_accuracy"] = round(float(scores[f"{LABEL_OUTPUT}_accuracy"]), 4)
            for head in heads:
                row[f"val_{head.name}_accuracy"] = round(
                    float(scores[f"{head.output}_accuracy"]), 4
                )
            smooth = row["val_accuracy"] if smooth is None else 0.5 * (smooth + row["val_accuracy"])
            better = epoch > opts.warmup_epochs and (
                smooth > best["s"] or (smooth == best["s"] and row["val_loss"] < best["val_loss"])
            )
        else:
            better = True
        history.append(row)
        log(" ".join(f"{k} {v}" for k, v in row.items()))
        if better:
            best = {"epoch": epoch, "val_accuracy": row.get("val_accuracy", -1.0),
                    "val_loss": row.get("val_loss", float("inf")), "s": smooth or -1.0}  # fmt: skip
            best_weights = model.get_weights()
        elif epoch - max(best["epoch"], opts.warmup_epochs) >= opts.patience:
            log(f"early stop: no val improvement for {opts.patience} epochs")
            break
    model.set_weights(best_weights)
    return {
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "history": history,
        "val_accuracy": best["val_accuracy"] if has_val else None,
    }
