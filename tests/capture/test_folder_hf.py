"""The image folder's dataset card: Hugging Face ``datasets`` loads a snapshot whose splits
differ in which columns are null throughout (no measured shot in ``val``, an attribute only
train shots have), with every column's declared type."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from snapshot_data import add_shots

from capture.snapshots.build import create_snapshot, snapshot_dir, split_shot_ids
from capture.snapshots.filter import SnapshotFilter
from capture.snapshots.splits import SplitRules
from capture.store import DatasetStore
from capture.store.catalogue import Catalogue
from capture.store.measure_schema import measurement_row, record_measurement
from rig.config import Settings

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("datasets") is None,
    reason="Hugging Face `datasets` is not installed (pip install -e '.[dev]')",
)


def test_a_split_with_a_column_null_throughout_loads_with_the_declared_types(tmp_path) -> None:
    from datasets import Image, load_dataset

    data = tmp_path / "data"
    with DatasetStore.open(data) as store:
        add_shots(store, labels=("nut", "plate 1x2"), instances=3, angles=2)
        cat = Catalogue(store)
        cat.set_part("nut", {"category": "nut", "thread": "M4"})
        cat.set_part("plate 1x2", {"category": "plate"})
        first = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules())
        train = split_shot_ids(store, first["id"], "train")
        # NOTE: only train shots are measured, and only one train shot has a colour
        with store.transaction() as conn:
            for shot_id in train:
                record_measurement(
                    conn, measurement_row(shot_id, "measured", {"length_mm": 9.9}, "t")
                )
        cat.set_shot_attribute([train[0]], "colour", "black", "ann")
        manifest = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules())
    root = snapshot_dir(data, manifest["id"])
    assert split_shot_ids_of(root, "train") == set(train)

    val = [json.loads(x) for x in (root / "folder/val/metadata.jsonl").read_text().splitlines()]
    assert val and all(r["length_mm"] is None and r["attributes"]["colour"] is None for r in val)

    # the card is a file of the snapshot like any other: listed with its sha256, so pulls verify it
    card = root / "folder" / "README.md"
    listed = {f["path"]: f for f in manifest["files"]}["folder/README.md"]
    assert listed["sha256"] == hashlib.sha256(card.read_bytes()).hexdigest()
    assert listed["size"] == card.stat().st_size and listed["format"] == "folder"

    ds = load_dataset(str(root / "folder"), cache_dir=str(tmp_path / "hf"))
    assert set(ds) == {"train", "validation", "test"}
    features = ds["validation"].features
    assert features["length_mm"].dtype == "float64"
    assert features["attributes"]["colour"].dtype == "string"
    assert features["class_index"].dtype == "int64"
    for hf_split, split in (("train", "train"), ("validation", "val"), ("test", "test")):
        assert len(ds[hf_split]) == manifest["counts"]["by_split"][split]
    lengths = {r["shot_id"]: r["length_mm"] for s in ds.values() for r in s}
    assert lengths == {i: (9.9 if i in train else None) for i in lengths}
    colours = {r["shot_id"]: r["attributes"]["colour"] for s in ds.values() for r in s}
    assert colours == {i: ("black" if i == train[0] else None) for i in colours}

    folder = root / "folder" / "val"
    images = ds["validation"].map(lambda r: {"image": str(folder / r["file_name"])})
    row = images.cast_column("image", Image())[0]
    assert row["image"].size == (64, 48)
    assert manifest["classes"][row["class_index"]]["label"] == row["label"]


def split_shot_ids_of(root: Path, split: str) -> set[int]:
    lines = (root / "folder" / split / "metadata.jsonl").read_text().splitlines()
    return {json.loads(x)["shot_id"] for x in lines}
