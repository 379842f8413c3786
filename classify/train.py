"""The training recipe: snapshot in, a deployable model folder out.

Runs off the Pi, on a machine with TensorFlow (the ``train`` extra).  The flow:

1. open the snapshot and crop every shot from its stored box with
   :func:`classify.preprocess.prepare` (the sorter's own code);
2. train with turntable augmentation (:mod:`classify.augment`), class weights against
   imbalance, and early stopping on the val split (the best epoch's weights are kept);
3. export ``model.tflite`` (full int8, calibrated on training crops) and
   ``model-float.tflite``;
4. touch the test split once, at the end, through the exported models in the runtime the Pi
   uses, and write ``labels.txt``, ``metrics.json`` and ``confusion.png``.

The folder is assembled under a temporary name and renamed into place, so a model folder is
either complete or absent: ``partrig model push`` never uploads half a model.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from capture.store.files import fsync_dir, write_durably
from classify.augment import AugmentConfig, as_affine, background_patch
from classify.export import deployable, export_float, export_int8, write_model_card
from classify.export_heads import add_attribute_heads, evaluate_heads
from classify.metrics import confusion, confusion_png, summarise
from classify.model_build import build_model, check_options
from classify.preprocess import prepare, prepare_mask
from classify.runtime import Classifier
from classify.train_data import Sample, Snapshot, open_snapshot
from classify.train_epoch import Prepared, augmented_epoch, class_weights, epoch_line
from classify.train_heads import attribute_heads, compile_heads, fit_heads, parse_heads
from classify.train_output import native_output_quiet
from classify.train_stream import CropLoader, StreamSplit, at_sorter_density, index_split
from rig.errors import ModelError

Log = Callable[[str], None]
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class TrainOptions:
    """Everything that shapes a training run; recorded in ``metrics.json``."""

    backbone: str = "mobilenet_v2"
    alpha: float = 1.0
    size: int = 224
    weights: str | None = None
    epochs: int = 30
    batch: int = 32
    patience: int = 5
    learning_rate: float = 1e-3
    seed: int = 0
    #: Augmented samples per epoch at least; small datasets are repeated with fresh draws.
    min_epoch_samples: int = 512
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    #: The tiny CNN's normalisation: "batch" (momentum 0.9; folds into the convolutions, so
    #: int8 loses nothing) or "group" (no running statistics; measured in docs/benchmarks.md).
    norm: str = "batch"
    #: "cosine": linear warm-up over ``warmup_epochs``, then cosine decay to 2 % over the
    #: remaining epochs; "constant": ``learning_rate`` throughout.
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    #: Long side of the frames the sorter classifies (camera.preview_size); larger stored
    #: shots are shrunk to it before cropping, so training sees the sorter's pixel density.
    #: None trains on the stored resolution.
    sorter_px: int | None = 640
    #: Stream shots through tf.data (:mod:`classify.train_stream`): memory independent of the
    #: dataset's size.  False holds every crop in memory (the multi-worker path always does).
    stream: bool = True
    #: The model's heads: ``label`` alone (the default) or with attribute heads such as
    #: ``colour`` (:mod:`classify.train_heads`), one output each on one backbone.
    heads: tuple[str, ...] = ("label",)


def prepare_split(
    samples: list[Sample], size: int, *, for_training: bool, sorter_px: int | None = None
) -> Prepared:
    """Crop every sample; training crops stay uncorrected (augmentation corrects them)."""
    crops, classes = [], []
    out = Prepared(np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int64))
    for s in samples:
        full = s.image()
        image, bbox = at_sorter_density(full, s.bbox, sorter_px)
        matrix = None if for_training else s.colour_matrix
        crops.append(prepare(image, bbox, matrix, size))
        classes.append(s.class_index)
        if for_training:
            out.matrices.append(as_affine(s.colour_matrix))
            mask = s.mask()
            out.masks.append(None if mask is None else prepare_mask(mask, s.bbox, size))
            patch = background_patch(image, bbox, size)
            if patch is not None:
                out.backgrounds.append(patch)
    if crops:
        out.crops = np.stack(crops)
        out.classes = np.asarray(classes, np.int64)
    return out


def pick_strategy() -> tuple[Any, list[str]]:
    """MirroredStrategy across several GPUs, else the default (one GPU, or the CPU)."""
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(), gpus
    return tf.distribute.get_strategy(), gpus or ["CPU"]


Split = Prepared | StreamSplit


def _size(split: Split) -> int:
    return len(split) if isinstance(split, StreamSplit) else len(split.crops)


def fit(
    model: Any,
    train: Split,
    val: Split,
    weights: dict[int, float],
    opts: TrainOptions,
    log: Log,
) -> dict[str, Any]:
    """Train epoch by epoch on fresh augmentations; keep the best val epoch's weights."""
    rng = np.random.default_rng(opts.seed)
    best: dict[str, Any] = {
        "epoch": 0,
        "val_accuracy": -1.0,
        "val_loss": float("inf"),
        "smoothed": -1.0,
    }
    smooth: float | None = None
    best_weights = model.get_weights()
    history = []
    for epoch in range(1, opts.epochs + 1):
        if isinstance(train, StreamSplit):
            data = train.epoch(opts.seed, epoch, opts.min_epoch_samples, opts.batch)
            hist = model.fit(data, epochs=1, verbose=0, class_weight=weights, shuffle=False)
        else:
            x, y = augmented_epoch(train, opts, rng)
            hist = model.fit(
                x,
                y,
                batch_size=opts.batch,
                epochs=1,
                verbose=0,
                class_weight=weights,
                shuffle=True,
            )
        row = {
            "epoch": epoch,
            "loss": round(float(hist.history["loss"][-1]), 4),
            "accuracy": round(float(hist.history["accuracy"][-1]), 4),
        }
        if isinstance(val, StreamSplit) and len(val):
            loss, acc = model.evaluate(val.evaluation(opts.batch), verbose=0)
        elif not isinstance(val, StreamSplit) and _size(val):
            loss, acc = model.evaluate(val.crops, val.classes, batch_size=opts.batch, verbose=0)
        if _size(val):
            row.update(val_loss=round(float(loss), 4), val_accuracy=round(float(acc), 4))
            # NOTE: epochs are ranked by a moving average of val accuracy, and not before the
            # warm-up ends: on a small val split one lucky epoch (0.94 after one epoch, then
            # 0.67) otherwise wins and stops training before the model has learnt anything.
            smooth = row["val_accuracy"] if smooth is None else 0.5 * (smooth + row["val_accuracy"])
            row["val_accuracy_smoothed"] = round(smooth, 4)
            better = epoch > opts.warmup_epochs and (
                smooth > best["smoothed"]
                or (smooth == best["smoothed"] and row["val_loss"] < best["val_loss"])
            )
        else:
            # NOTE: without a val split there is nothing to stop on; keep the last epoch.
            better = True
        history.append(row)
        log(epoch_line(row))
        if better:
            best = {
                "epoch": epoch,
                "val_accuracy": row.get("val_accuracy", -1.0),
                "val_loss": row.get("val_loss", float("inf")),
                "smoothed": row.get("val_accuracy_smoothed", -1.0),
            }
            best_weights = model.get_weights()
        elif epoch - max(best["epoch"], opts.warmup_epochs) >= opts.patience:
            log(f"early stop: no val improvement for {opts.patience} epochs")
            break
    model.set_weights(best_weights)
    return {
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "history": history,
        "val_accuracy": best["val_accuracy"] if _size(val) else None,
    }


def _open_set(
    folder: Path, snap: Any, labels: list[str], train: Any, val: Any, opts: Any, log: Log
) -> dict[str, Any] | None:
    """Calibrate the open-set rule on the val split and write model.json (classify.open_set)."""
    from classify.train_sources import describe

    if not len(val.classes):
        log("no val split: model.json is written without open-set rejection")
    ids = [str(s) for s in describe(snap).get("snapshots") or [snap.id]]
    summary = write_model_card(folder, labels, train, val if len(val.classes) else None, ids,
                               opts.size)  # fmt: skip
    if summary.get("threshold") is not None:
        log(f"open set: {summary['score']} threshold {summary['threshold']:.4f} on the val split")
    return summary


def evaluate(model_path: Path, labels: list[str], test: Split) -> tuple[dict, np.ndarray]:
    """Accuracy of an exported model in the Pi's runtime; the summary and confusion matrix."""
    from classify.open_set import MODEL_JSON, read_card

    card = read_card(Path(model_path).parent / MODEL_JSON)
    clf = Classifier.load(model_path, labels, num_threads=max(1, os.cpu_count() or 1), card=card)
    if isinstance(test, StreamSplit):
        predicted = [int(np.argmax(clf.probabilities(c))) for c, _ in test.plain_crops()]
    else:
        predicted = [int(np.argmax(clf.probabilities(c))) for c in test.crops]
    matrix = confusion(test.classes, predicted, len(labels))
    summary = summarise(matrix, labels)
    summary["runtime"] = clf.runtime
    return summary, matrix


def _calibration(train: Split, rng: np.random.Generator, limit: int = 200) -> list:
    from capture.vision.colour import apply_colour_matrix

    if isinstance(train, StreamSplit):
        return train.calibration(rng, limit)
    order = rng.permutation(len(train.crops))[:limit]
    return [apply_colour_matrix(train.crops[i], train.matrices[i]) for i in order]


def train(
    snapshot_dir: Path | Snapshot, out_dir: Path, opts: TrainOptions, log: Log = print
) -> dict:
    """Train on the snapshot at ``snapshot_dir`` (or an opened one, e.g. several published
    snapshots from :func:`classify.train_sources.open_training_data`); write ``out_dir``.

    Under a TF_CONFIG naming two or more workers this process is one worker of
    :mod:`classify.train_workers`; only the chief writes ``out_dir``.
    """
    from classify.train_workers import make_strategy, worker_role

    role = worker_role()
    # NOTE: first of all: TensorFlow refuses to set up collectives after any other TF op.
    worker_strategy = make_strategy() if role is not None else None
    import keras

    started = time.monotonic()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ModelError(f"{out_dir} exists and is not empty; choose a new --out folder")
    check_options(opts.backbone, opts.alpha, opts.size, opts.weights)
    snap = snapshot_dir if isinstance(snapshot_dir, Snapshot) else open_snapshot(snapshot_dir)
    labels = snap.labels
    attr = attribute_heads(snap.manifest, labels, parse_heads(opts.heads))
    if attr and role is not None:
        raise ModelError("multi-head training (--heads) runs on one machine, not several workers")
    keras.utils.set_random_seed(opts.seed)
    splits: dict[str, Any]
    streaming = opts.stream and role is None and type(snap) is Snapshot
    if role is not None:
        from classify.train_sources import worker_samples

        splits = {"train": worker_samples(snap, "train", role.index, role.count)}
        splits.update({name: snap.samples(name) for name in ("val", "test")})
    elif streaming:
        # NOTE: only a local snapshot folder streams (its files can be re-read at will);
        # object-storage and combined snapshots are read once into memory as before.
        splits = {name: index_split(snap, name) for name in ("train", "val", "test")}
    else:
        splits = {name: snap.samples(name) for name in ("train", "val", "test")}
    log(
        f"snapshot {snap.id}: {len(labels)} classes, "
        + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
    )
    train_set: Split
    val_set: Split
    test_set: Split
    if streaming:
        loader = CropLoader(opts.size, opts.sorter_px, opts.augment)
        train_set, val_set, test_set = (StreamSplit(splits[n], loader) for n in SPLIT_NAMES)
    else:
        train_set, val_set, test_set = (
            prepare_split(splits[n], opts.size, for_training=n == "train", sorter_px=opts.sorter_px)
            for n in SPLIT_NAMES
        )
    if role is not None and worker_strategy is not None:
        from classify.train_workers import shared_class_weights

        weights, total_train = shared_class_weights(snap, train_set.classes, labels)
        strategy, devices = worker_strategy, [f"worker {role.index} of {role.count}"]
    else:
        weights = class_weights(train_set.classes, labels)
        strategy, devices = pick_strategy()
    log(f"training {opts.backbone} at {opts.size} px on {', '.join(devices)}")
    with strategy.scope():
        model = build_model(
            len(labels), opts.backbone, opts.alpha, opts.size, opts.weights, opts.norm,
            heads={h.name: len(h.values) for h in attr} or None,
        )  # fmt: skip
        if attr:
            compile_heads(model, attr, learning_rate(opts, _size(train_set)))
        else:
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate(opts, _size(train_set))),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
    if role is not None:
        from classify.train_workers import fit_workers, weights_digest

        outcome = fit_workers(
            model, strategy, train_set, val_set, weights, opts, role, total_train, log
        )
        outcome["weights_sha256"] = weights_digest(model)
        log(f"worker {role.index}: final weights sha256 {outcome['weights_sha256']}")
        if not role.chief:
            return outcome
        # NOTE: export from a plain copy: the converter must not trace the distributed model.
        plain = build_model(
            len(labels), opts.backbone, opts.alpha, opts.size, opts.weights, opts.norm
        )
        plain.set_weights(model.get_weights())
        model = plain
    elif attr:
        outcome = fit_heads(model, train_set, val_set, weights, attr, opts, log, augmented_epoch)
    else:
        outcome = fit(model, train_set, val_set, weights, opts, log)
    train_seconds = time.monotonic() - started

    temp = out_dir.with_name(f".{out_dir.name}.{secrets.token_hex(4)}.partial")
    temp.mkdir(parents=True)
    try:
        rng = np.random.default_rng(opts.seed)
        with native_output_quiet():
            # NOTE: deployable() adds the feature output the open-set score needs.
            export_float(deployable(model), temp / "model-float.tflite")
            export_int8(deployable(model), _calibration(train_set, rng), temp / "model.tflite")
        open_set = _open_set(temp, snap, labels, train_set, val_set, opts, log)
        metrics = _test_once(temp, labels, test_set)
        metrics.update(_record(snap, opts, outcome, devices, splits, weights, train_seconds))
        metrics["open_set"] = open_set
        if attr:
            add_attribute_heads(temp, attr, val_set if _size(val_set) else None)
            metrics["heads"] = evaluate_heads(temp, attr, test_set)
        write_durably(temp / "labels.txt", ("\n".join(labels) + "\n").encode())
        write_durably(temp / "metrics.json", json.dumps(metrics, indent=2).encode())
        write_durably(
            temp / "confusion.png", _confusion_image(temp, snap.id, labels, metrics, val_set)
        )
        if out_dir.exists():
            out_dir.rmdir()
        temp.rename(out_dir)
        fsync_dir(out_dir.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    log(f"wrote {out_dir}")
    return metrics


def learning_rate(opts: TrainOptions, train_count: int) -> Any:
    """The optimizer's learning rate: a warm-up + cosine schedule, or the constant rate.

    Why: at a constant 1e-3 the val accuracy of a small model jumps between epochs, and early
    stopping then keeps an epoch almost at random; warming up avoids the first large steps on
    randomly initialised weights, and the cosine tail settles the weights so late epochs agree.
    """
    if opts.schedule == "constant":
        return opts.learning_rate
    if opts.schedule != "cosine":
        raise ModelError(f"schedule must be cosine or constant (got {opts.schedule!r})")
    import keras

    per_epoch = max(1, -(-max(opts.min_epoch_samples, train_count) // opts.batch))
    warmup = round(per_epoch * max(0.0, opts.warmup_epochs))
    total = per_epoch * opts.epochs
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=opts.learning_rate * (0.05 if warmup else 1.0),
        decay_steps=max(1, total - warmup),
        alpha=0.02,
        warmup_target=opts.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def _confusion_image(
    folder: Path, snapshot_id: str, labels: list[str], metrics: dict, val: Split
) -> bytes:
    """The int8 confusion on test; without a test split, on val, and the title says so."""
    if metrics["confusion_int8"] is not None:
        matrix = np.asarray(metrics["confusion_int8"])
        return confusion_png(matrix, labels, f"{snapshot_id} test, int8")
    if _size(val):
        _, matrix = evaluate(folder / "model.tflite", labels, val)
        return confusion_png(matrix, labels, f"{snapshot_id} NO TEST SPLIT: val, int8")
    empty = np.zeros((len(labels), len(labels)), np.int64)
    return confusion_png(empty, labels, f"{snapshot_id}: no test or val split")


def _test_once(folder: Path, labels: list[str], test: Split) -> dict[str, Any]:
    if not _size(test):
        return {
            "accuracy": None,
            "float_accuracy": None,
            "int8_accuracy": None,
            "int8_drop": None,
            "per_class": None,
            "confusion_int8": None,
            "runtime": None,
            "test": None,
        }
    float_summary, _ = evaluate(folder / "model-float.tflite", labels, test)
    int8_summary, matrix = evaluate(folder / "model.tflite", labels, test)
    return {
        "accuracy": int8_summary["accuracy"],
        "float_accuracy": float_summary["accuracy"],
        "int8_accuracy": int8_summary["accuracy"],
        "int8_drop": round(float_summary["accuracy"] - int8_summary["accuracy"], 4),
        "per_class": int8_summary["per_class"],
        "confusion_int8": matrix.tolist(),
        "runtime": int8_summary["runtime"],
        "test": {"float": float_summary, "int8": int8_summary},
    }


def _sources(snap: Snapshot, outcome: dict) -> dict[str, Any]:
    """Which snapshots fed the model and, for a multi-worker run, the cluster's result."""
    from classify.train_sources import describe

    extra = describe(snap)
    extra.pop("snapshot", None)
    for key in ("workers", "steps_per_epoch", "weights_sha256"):
        if key in outcome:
            extra[key] = outcome[key]
    return extra


def _record(
    snap: Snapshot,
    opts: TrainOptions,
    outcome: dict,
    devices: list[str],
    splits: dict[str, list],
    weights: dict[int, float],
    seconds: float,
) -> dict:
    options = asdict(opts)
    options["augment"] = asdict(opts.augment)
    return {
        "snapshot": snap.id,
        "labels": snap.labels,
        "backbone": opts.backbone,
        "alpha": opts.alpha,
        "input_size": opts.size,
        "weights": str(opts.weights) if opts.weights else "none",
        "val_accuracy": outcome["val_accuracy"],
        **_sources(snap, outcome),
        "best_epoch": outcome["best_epoch"],
        "epochs_run": outcome["epochs_run"],
        "history": outcome["history"],
        "counts": {k: len(v) for k, v in splits.items()},
        "class_weights": {snap.labels[i]: round(w, 4) for i, w in weights.items()},
        "devices": devices,
        "train_seconds": round(seconds, 1),
        "options": options,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
