"""``partrig train``: train a model on a snapshot folder or a rig's snapshot, off the Pi.

Registered in :mod:`web.cli`.  TensorFlow is imported only when the command runs, so
``partrig`` itself starts on a Pi that has no TensorFlow, and says how to get it if asked to
train there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from rig.errors import RigError

console = Console()
err_console = Console(stderr=True)

SNAPSHOT_ID = re.compile(r"^snap-\d{4,}$")


def resolve_dataset(dataset: str, snapshot: str | None, dest: Path, key: str | None) -> Path:
    """The local snapshot folder for ``--dataset``: a folder as is, a rig URL pulled first.

    A URL may name the snapshot in its path (``http://rig:8000/api/snapshots/snap-0003``) or
    with ``--snapshot``.
    """
    if not re.match(r"^https?://", dataset):
        return Path(dataset)
    base, _, last = dataset.rstrip("/").rpartition("/")
    if SNAPSHOT_ID.match(last):
        snapshot = snapshot or last
        base = base.removesuffix("/api/snapshots")
    else:
        base = dataset.rstrip("/")
    if not snapshot:
        raise typer.BadParameter(
            "a rig URL needs the snapshot: end it with /api/snapshots/snap-NNNN or pass "
            "--snapshot snap-NNNN",
            param_hint="--dataset",
        )
    from capture.pull.client import pull

    result = pull(base, snapshot, dest, key=key, fmt="webdataset")
    return result.root


def _open_sources(sources: list[str | Path]) -> Any:
    """One local folder goes to train() as before; s3:// or several are opened together."""
    if len(sources) == 1 and not str(sources[0]).startswith("s3://"):
        return Path(sources[0])
    from capture.publish.objstore import TransferSettings
    from classify.train_sources import open_training_data
    from rig.config import load_settings

    return open_training_data(
        [str(s) for s in sources], TransferSettings.from_config(load_settings().storage)
    )


def train_command(
    dataset: Annotated[
        list[str],
        typer.Option(
            help="snapshot folder, a rig's URL to pull from, or s3://bucket/prefix/<rig.id>/"
            "snap-NNNN (streamed, not downloaded); repeat to train on several with one class index"
        ),
    ],
    out: Annotated[Path, typer.Option(help="model folder to create (must be new or empty)")],
    backbone: Annotated[
        str, typer.Option(help="mobilenet_v2 | mobilenet_v3_small | tiny")
    ] = "mobilenet_v2",
    alpha: Annotated[float, typer.Option(help="MobileNet width multiplier")] = 1.0,
    size: Annotated[int, typer.Option(help="input resolution in pixels (square)")] = 224,
    weights: Annotated[
        str, typer.Option(help="imagenet (needs the internet) | none | PATH to a weights file")
    ] = "none",
    epochs: Annotated[int, typer.Option(min=1, max=1000, help="most epochs")] = 30,
    batch: Annotated[int, typer.Option(min=1, max=4096, help="batch size")] = 32,
    patience: Annotated[int, typer.Option(min=1, help="early stop after N epochs")] = 5,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    snapshot: Annotated[str | None, typer.Option(help="snapshot id, with a URL")] = None,
    dest: Annotated[Path, typer.Option(help="where pulled snapshots go")] = Path("datasets"),
    key: Annotated[
        str | None, typer.Option(envvar="PARTRIG_KEY", help="trainer key for a rig URL")
    ] = None,
    rotate: Annotated[
        str,
        typer.Option(
            help="part: turn the masked part only (no rotation without masks); crop: turn the "
            "whole crop (a camera looking straight down); off"
        ),
    ] = "part",
    colour: Annotated[
        str,
        typer.Option(
            help="light and colour jitter: strong (breaks colour shortcuts), light (classes "
            "that differ only in colour), off"
        ),
    ] = "strong",
    background_swap: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="share of masked shots pasted on another background"),
    ] = 0.5,
    norm: Annotated[str, typer.Option(help="tiny CNN normalisation: batch | group")] = "batch",
    schedule: Annotated[
        str, typer.Option(help="learning rate: cosine (1 epoch warm-up, cosine decay) | constant")
    ] = "cosine",
    learning_rate: Annotated[float, typer.Option(min=0.0, help="peak learning rate")] = 1e-3,
    sorter_px: Annotated[
        int,
        typer.Option(
            min=0, help="long side of the sorter's frames: larger shots are shrunk to it (0: off)"
        ),
    ] = 640,
    heads: Annotated[
        str,
        typer.Option(
            help="heads to train on one backbone: label, then attributes from the snapshot's "
            "catalogue (label,colour,category); one int8 model with an output per head"
        ),
    ] = "label",
    seeds: Annotated[
        int,
        typer.Option(
            min=1,
            max=50,
            help="train N models (seeds seed..seed+N-1) into OUT/seed-S/ "
            "and report the mean and range of their test accuracy",
        ),
    ] = 1,
) -> None:
    """Train a classifier on a snapshot; write model.tflite (int8), model-float.tflite,
    labels.txt, metrics.json and confusion.png (test split; val when there is none) to --out."""
    from classify.train_heads import parse_heads
    from classify.train_output import quiet_tensorflow

    try:
        head_names = parse_heads(heads)
    except RigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    quiet_tensorflow()
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        err_console.print(
            "[bold red]error:[/] training needs TensorFlow: pip install 'partrig[train]' "
            "(on a PC or a GPU machine, not on the Pi)"
        )
        raise typer.Exit(code=2) from None
    from classify.augment import AugmentConfig
    from classify.train import TrainOptions, train
    from classify.train_output import result_lines
    from classify.train_seeds import summary_line, train_seeds

    try:
        augment = AugmentConfig.preset(colour, rotate, background_swap)
    except ValueError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    opts = TrainOptions(
        backbone=backbone,
        alpha=alpha,
        size=size,
        weights=weights,
        epochs=epochs,
        batch=batch,
        patience=patience,
        seed=seed,
        augment=augment,
        norm=norm,
        schedule=schedule,
        learning_rate=learning_rate,
        sorter_px=sorter_px or None,
        heads=head_names,
    )
    try:
        sources = [d if d.startswith("s3://") else resolve_dataset(d, snapshot, dest, key)
                   for d in dataset]  # fmt: skip
        if seeds > 1:
            summary = train_seeds(_open_sources(sources), out, opts, seeds, log=console.print)
            console.print(summary_line(summary), highlight=False)
            return
        metrics = train(_open_sources(sources), out, opts, log=console.print)
    except RigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    if "float_accuracy" not in metrics:
        console.print(f"worker done: weights sha256 {metrics.get('weights_sha256')}")
        return
    for line in result_lines(metrics):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    console.print(f"model folder {out} (confusion.png, metrics.json)", highlight=False)
