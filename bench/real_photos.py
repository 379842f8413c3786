"""Train on real Raspberry Pi photos and measure float and int8 accuracy on held-out days.

Data: ``../shared/data/lego-belt-3class`` (581 photos of three LEGO parts on a white belt,
640x480, boxes from a commercial recogniser in ``boxes.csv``; see ml-and-datasets.md).  It is
never copied into the project: the snapshot-like folder is built in a temporary directory.

Why split by capture day: photos taken minutes apart on the same belt under the same light
are near-duplicates, so an image-by-image split would measure memory, not sorting.  Whole days
(contiguous time blocks) go to one split, round-robin in date order: days 0, 1 train, day 2
test, day 3 val, and so on.  The recipe is the real one (``classify.train.train``): crops from
the boxes with ``prepare``, augmentation, class weights, early stopping on val, the test split
evaluated once through the exported TFLite models in LiteRT.

Usage: ``python bench/real_photos.py [--backbone tiny] [--size 96] [--epochs 40] [--seeds 3]``.
The last line printed is one JSON object:
``{"bench": "real_photos", "int8_accuracy": {"mean", "min", "max", "range"}, "seeds": [...],
"wall_seconds_per_seed", "load_average", ...}``, or
``{"bench": "real_photos", "skipped": "<why>"}`` when the data or TensorFlow is absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "lego-belt-3class"
SPLIT_CYCLE = ("train", "train", "test", "val")


def read_boxes(data: Path) -> list[dict]:
    """One record per photo: file, label (the folder), day, time and the box as x, y, w, h."""
    rows = []
    with (data / "boxes.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            folder, name = row["file"].split("/")
            left, upper = float(row["left"]), float(row["upper"])
            w, h = float(row["right"]) - left, float(row["lower"]) - upper
            stamp = Path(name).stem
            rows.append(
                {
                    "file": row["file"],
                    "label": folder,
                    "day": stamp[:8],
                    "time": stamp,
                    "bbox": [round(left), round(upper), round(w), round(h)],
                }
            )
    return rows


def split_by_day(rows: list[dict]) -> dict[str, str]:
    """Day -> split: whole days round-robin over :data:`SPLIT_CYCLE` in date order."""
    days = sorted({r["day"] for r in rows})
    return {day: SPLIT_CYCLE[i % len(SPLIT_CYCLE)] for i, day in enumerate(days)}


def build_snapshot(data: Path, root: Path) -> dict:
    """Write manifest.json and the image-folder format for the photos under ``root``."""
    rows = read_boxes(data)
    labels = sorted({r["label"] for r in rows})
    day_split = split_by_day(rows)
    records: dict[str, list[dict]] = defaultdict(list)
    for n, r in enumerate(sorted(rows, key=lambda r: r["time"]), start=1):
        split = day_split[r["day"]]
        index = labels.index(r["label"])
        name = f"{index:03d}-{r['label']}/s{n:08d}.jpg"
        target = root / "folder" / split / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data / r["file"], target)
        records[split].append(
            {
                "file_name": name,
                "label": r["label"],
                "class_index": index,
                "bbox": r["bbox"],
                "colour_matrix": None,
                "captured_at": r["time"],
            }
        )
    files = []
    for split, recs in records.items():
        meta = root / "folder" / split / "metadata.jsonl"
        meta.write_text("".join(json.dumps(rec) + "\n" for rec in recs))
        files.append({"path": f"folder/{split}/metadata.jsonl", "format": "folder"})
    manifest = {
        "id": "snap-real",
        "classes": [{"index": i, "label": lbl} for i, lbl in enumerate(labels)],
        "files": files,
        "days": day_split,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--min-epoch-samples", type=int, default=1024)
    parser.add_argument("--norm", default="group", choices=("group", "batch"))
    parser.add_argument("--rotate", default="part", choices=("part", "crop", "off"))
    parser.add_argument("--colour", default="strong", choices=("strong", "light", "off"))
    args = parser.parse_args()
    if not (DATA / "boxes.csv").is_file():
        print(json.dumps({"bench": "real_photos", "skipped": f"{DATA} is not present"}))
        return
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        print(json.dumps({"bench": "real_photos", "skipped": "TensorFlow is not installed"}))
        return
    import os

    from classify.augment import AugmentConfig
    from classify.train import TrainOptions, train
    from classify.train_output import seeds_summary

    load_before = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory(prefix="partrig-real-") as tmp:
        root = Path(tmp)
        manifest = build_snapshot(DATA, root / "snap")
        for seed in range(args.seeds):
            opts = TrainOptions(
                backbone=args.backbone,
                alpha=args.alpha,
                size=args.size,
                epochs=args.epochs,
                patience=args.patience,
                batch=args.batch,
                min_epoch_samples=args.min_epoch_samples,
                seed=seed,
                norm=args.norm,
                augment=AugmentConfig.preset(args.colour, args.rotate),
            )
            m = train(root / "snap", root / f"model-{seed}", opts, log=print)
            runs.append(
                {
                    "seed": seed,
                    "int8_accuracy": m["int8_accuracy"],
                    "float_accuracy": m["float_accuracy"],
                    "val_accuracy": m["val_accuracy"],
                    "wall_seconds": m["train_seconds"],
                    "best_epoch": m["best_epoch"],
                    "epochs_run": m["epochs_run"],
                    "recall_int8": {k: v["recall"] for k, v in m["per_class"].items()},
                }
            )
            print(json.dumps({"seed": seed, **runs[-1]}))
    summary = seeds_summary(runs)
    result = {
        "bench": "real_photos",
        "backbone": args.backbone,
        "alpha": args.alpha if args.backbone != "tiny" else None,
        "size": args.size,
        "epochs": args.epochs,
        "norm": args.norm,
        "rotate": args.rotate,
        "colour": args.colour,
        "weights": "none",
        "recipe": "classify.train.TrainOptions defaults (cosine schedule, streaming) with the "
        "norm, rotate and colour given",
        "split": "whole capture days, round-robin train/train/test/val",
        "days": {s: sorted(d for d, v in manifest["days"].items() if v == s) for s in m["counts"]},
        "counts": m["counts"],
        "int8_accuracy": summary["int8_accuracy"],
        "float_accuracy": summary["float_accuracy"],
        "wall_seconds_per_seed": summary["wall_seconds"],
        "seeds": runs,
        "cpus": os.cpu_count(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "runtime": m["runtime"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
