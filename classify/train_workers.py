"""``partrig train`` as one worker of TensorFlow's MultiWorkerMirroredStrategy (TF_CONFIG).

Usage: start the same command on every machine with its own ``TF_CONFIG``::

    TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
                "task": {"type": "worker", "index": 0}}' partrig train --dataset s3://... --out m

Why TensorFlow's own strategy: the model is Keras and the export is TFLite, so the engine that
already trains it synchronises the gradients (all-reduce over gRPC); a cluster manager only has
to start the processes with their TF_CONFIG (docs/training.md shows Kubernetes).

How the work is shared: ``--batch`` is the *global* batch; each of N workers reads its own
shards (:func:`classify.train_sources.worker_samples`) and contributes batch/N samples per step.
Every worker runs the same number of steps per epoch, computed from the manifests and the
options alone, so no worker waits on a step the others never take.  Every worker reads the
whole val split and scores it on its own copy of the weights; the copies are identical after
each all-reduced step, so all of them take the same early-stopping decision without talking.
Only the chief (``task.index`` 0, or the ``chief`` task) exports the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from rig.errors import ConfigError, ModelError

TF_CONFIG = "TF_CONFIG"


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in the cluster: ``index`` of ``count``, and whether it exports."""

    index: int
    count: int
    chief: bool


def worker_role(environ: Any = None) -> WorkerRole | None:
    """The role TF_CONFIG gives this process, or None for the single-machine path."""
    raw = (environ if environ is not None else os.environ).get(TF_CONFIG, "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        kind, index = str(task["type"]), int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"TF_CONFIG is not a valid cluster description ({exc}); it needs "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}'
        ) from None
    members = {"chief": chiefs, "worker": workers}
    if kind not in members or not 0 <= index < len(members[kind]):
        raise ConfigError(f"TF_CONFIG task {kind}[{index}] is not in its cluster")
    count = len(chiefs) + len(workers)
    if count < 2:
        return None
    overall = index if kind == "chief" else len(chiefs) + index
    return WorkerRole(overall, count, chief=overall == 0)


def make_strategy() -> Any:
    """MultiWorkerMirroredStrategy; TensorFlow requires it before any other TF operation."""
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def weights_digest(model: Any) -> str:
    """sha256 of every weight's bytes: equal digests mean bit-identical models."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def steps_per_epoch(total_train: int, min_epoch_samples: int, global_batch: int) -> int:
    """The same on every worker: from manifest counts and options only."""
    return max(1, -(-max(total_train, min_epoch_samples) // global_batch))


def check_batch(global_batch: int, role: WorkerRole) -> int:
    if global_batch % role.count:
        raise ModelError(
            f"--batch {global_batch} is the global batch and must divide by the {role.count} "
            "workers; choose a multiple"
        )
    return global_batch // role.count


def _predict(model: Any, crops: np.ndarray, batch: int) -> np.ndarray:
    # NOTE: the model is called directly, not through predict(): under the strategy predict()
    # is a collective step, and each worker scores the val split alone.
    out = [
        np.asarray(model(crops[i : i + batch], training=False)) for i in range(0, len(crops), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 1))


def val_scores(
    model: Any, crops: np.ndarray, classes: np.ndarray, batch: int
) -> tuple[float, float]:
    """(loss, accuracy) of the val split, computed locally (identical on every worker)."""
    probs = _predict(model, crops, batch)
    picked = probs[np.arange(len(classes)), classes]
    loss = float(np.mean(-np.log(np.clip(picked, 1e-7, 1.0))))
    return loss, float(np.mean(np.argmax(probs, axis=1) == classes))


def _train_step(model: Any, strategy: Any, global_batch: int) -> Any:
    """One synchronous step on every worker: the loss is averaged over the *global* batch,
    and the optimizer all-reduces (sums) the gradients, so every copy takes the same update.

    NOTE: a loop of our own, not ``model.fit``: Keras 3 (3.15) fails inside ``fit`` under
    MultiWorkerMirroredStrategy with more than one worker (it reduces the first data batch and
    the scalar metrics across workers and trips on both).  ``strategy.run`` is TensorFlow's
    documented custom-loop API for this strategy.
    """
    import keras
    import tensorflow as tf

    optimizer = model.optimizer
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            # NOTE: batch statistics over the global batch (all-reduced), as one worker would
            # see them; per-worker statistics would leave each worker's moving averages, and so
            # its weights, different.
            layer.synchronized = True
    with strategy.scope():
        optimizer.build(model.trainable_variables)

    def replica_step(x: Any, y: Any, w: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            per_sample = keras.losses.sparse_categorical_crossentropy(y, probs) * w
            loss = tf.nn.compute_average_loss(per_sample, global_batch_size=global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        hits = tf.equal(tf.argmax(probs, axis=1, output_type=tf.int32), tf.cast(y, tf.int32))
        return loss, tf.reduce_sum(tf.cast(hits, tf.float32))

    @tf.function
    def step(batches: Any) -> tuple[Any, Any]:
        loss, hits = strategy.run(replica_step, args=next(batches))
        sum_ = tf.distribute.ReduceOp.SUM
        return strategy.reduce(sum_, loss, axis=None), strategy.reduce(sum_, hits, axis=None)

    return step


def fit_workers(
    model: Any,
    strategy: Any,
    train: Any,
    val: Any,
    weights: dict[int, float],
    opts: Any,
    role: WorkerRole,
    total_train: int,
    log: Any,
) -> dict[str, Any]:
    """:func:`classify.train.fit` for one worker: same schedule, same best-epoch rule."""
    import tensorflow as tf

    from classify.train_epoch import augmented_epoch, epoch_line

    check_batch(opts.batch, role)
    steps = steps_per_epoch(total_train, opts.min_epoch_samples, opts.batch)
    # NOTE: a different stream of augmentations per worker (their samples differ anyway), the
    # same on every run: the seed fixes the whole cluster's run.
    rng = np.random.default_rng([opts.seed, role.index])
    step = _train_step(model, strategy, opts.batch)
    best: dict[str, Any] = {"epoch": 0, "val_accuracy": -1.0, "val_loss": float("inf")}
    best_weights, history = model.get_weights(), []
    for epoch in range(1, opts.epochs + 1):
        x, y = augmented_epoch(train, opts, rng)
        order = np.resize(rng.permutation(len(x)), steps * opts.batch)
        x, y = x[order], y[order]
        w = np.asarray([weights[int(c)] for c in y], np.float32)

        # NOTE: batched at the global batch: the strategy rebatches it to batch/N per worker,
        # and with auto-sharding off each worker's pipeline holds only its own shards.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        # NOTE: float32 crops are the model's input dtype; the values are the same 0-255.
        data = (
            tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y.astype(np.float32), w))
            .repeat()
            .batch(opts.batch)
            .with_options(options)
        )
        loss_sum = correct = 0.0
        batches = iter(strategy.experimental_distribute_dataset(data))
        for _ in range(steps):
            step_loss, step_correct = step(batches)
            loss_sum += float(step_loss)
            correct += float(step_correct)
        row = {
            "epoch": epoch,
            "loss": round(loss_sum / steps, 4),
            "accuracy": round(correct / (steps * opts.batch), 4),
        }
        better = True
        if len(val.crops):
            loss, acc = val_scores(model, val.crops, val.classes, opts.batch)
            row.update(val_loss=round(loss, 4), val_accuracy=round(acc, 4))
            better = row["val_accuracy"] > best["val_accuracy"] or (
                row["val_accuracy"] == best["val_accuracy"] and row["val_loss"] < best["val_loss"]
            )
        history.append(row)
        log(f"{epoch_line(row)} weights {weights_digest(model)[:16]}")
        if better:
            best = {"epoch": epoch, "val_accuracy": row.get("val_accuracy", -1.0),
                    "val_loss": row.get("val_loss", float("inf"))}  # fmt: skip
            best_weights = model.get_weights()
        elif epoch - best["epoch"] >= opts.patience:
            log(f"early stop: no val improvement for {opts.patience} epochs")
            break
    model.set_weights(best_weights)
    return {
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "history": history,
        "val_accuracy": best["val_accuracy"] if len(val.crops) else None,
        "workers": role.count,
        "steps_per_epoch": steps,
    }


def shared_class_weights(
    snap: Any, local_classes: np.ndarray, labels: list[str]
) -> tuple[dict[int, float], int]:
    """Class weights and the train-set size every worker agrees on (from the manifests).

    A manifest without per-class counts (an older or hand-made snapshot) falls back to this
    worker's own counts and the options' epoch size, which still keeps the steps equal.
    """
    from classify.train_epoch import class_weights
    from classify.train_sources import train_counts

    counts = train_counts(snap)
    if not counts:
        return class_weights(local_classes, labels), 0
    total = sum(counts.values())
    missing = [label for label in labels if not counts.get(label)]
    if missing:
        raise ModelError(f"the train split has no shots of {', '.join(missing)}")
    weights = {i: float(total / (len(labels) * counts[label])) for i, label in enumerate(labels)}
    return weights, total
