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
    from capture.pull import pull

    result = pull(base, snapshot, dest, key=key, fmt="webdataset")
    return result.root


def _open_sources(sources: list[str | Path]) -> Any:
    """One local folder goes to train() as before; s3:// or several are opened together."""
    if len(sources) == 1 and not str(sources[0]).startswith("s3://"):
        return Path(sources[0])
    from capture.objstore import TransferSettings
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
) -> None:
    """Train a classifier on a snapshot; write model.tflite (int8), model-float.tflite,
    labels.txt, metrics.json and confusion.png to --out."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        err_console.print(
            "[bold red]error:[/] training needs TensorFlow: pip install 'partrig[train]' "
            "(on a PC or a GPU machine, not on the Pi)"
        )
        raise typer.Exit(code=2) from None
    from classify.train import TrainOptions, train

    opts = TrainOptions(
        backbone=backbone,
        alpha=alpha,
        size=size,
        weights=weights,
        epochs=epochs,
        batch=batch,
        patience=patience,
        seed=seed,
    )
    try:
        sources = [d if d.startswith("s3://") else resolve_dataset(d, snapshot, dest, key)
                   for d in dataset]  # fmt: skip
        metrics = train(_open_sources(sources), out, opts, log=console.print)
    except RigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    if "float_accuracy" not in metrics:
        console.print(f"worker done: weights sha256 {metrics.get('weights_sha256')}")
        return
    if metrics["float_accuracy"] is None:
        console.print(
            f"[yellow]warning:[/] snapshot {metrics['snapshot']} has no test split, so the "
            "model's accuracy is unmeasured and the rig will reject it; make a snapshot whose "
            "test split has shots (more part instances)",
            soft_wrap=True,
        )
        return
    console.print(
        f"snapshot {metrics['snapshot']}: test accuracy float {metrics['float_accuracy']:.3f}, "
        f"int8 {metrics['int8_accuracy']:.3f} (drop {metrics['int8_drop']:+.3f}), runtime "
        f"{metrics['runtime']}"
    )
