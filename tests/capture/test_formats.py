"""The snapshot formats, read back by the loaders trainers use: webdataset, Keras, Hugging Face
datasets, torchvision (when installed), pycocotools (when installed) and csv."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from snapshot_data import add_shots

from capture.snapshots.build import create_snapshot, snapshot_dir
from capture.snapshots.filter import SnapshotFilter
from capture.snapshots.formats import rle
from capture.snapshots.formats.webdataset import shard_pattern
from capture.snapshots.splits import SplitRules
from capture.store import DatasetStore
from rig.config import Settings


def _small_shards(shard_bytes: int) -> Settings:
    # NOTE: model_copy skips validation, so a shard can be smaller than the configured minimum.
    s = Settings()
    return s.model_copy(
        update={"snapshot": s.snapshot.model_copy(update={"shard_bytes": shard_bytes})}
    )


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory):
    """One snapshot of every format, shared by the read-back tests (they only read it)."""
    data = tmp_path_factory.mktemp("formats") / "data"
    with DatasetStore.open(data) as store:
        add_shots(store, instances=4, angles=3)
        manifest = create_snapshot(store, _small_shards(40_000), SnapshotFilter(), SplitRules())
        shots = {r["id"]: r for r in store.query("SELECT * FROM shots")}
    return snapshot_dir(data, manifest["id"]), manifest, shots, data


def test_webdataset_round_trip_with_the_webdataset_package(snap) -> None:
    import webdataset as wds

    root, manifest, shots, data = snap
    files = [f["path"] for f in manifest["files"] if f["format"] == "webdataset"]
    seen: dict[str, set[int]] = {}
    for split in ("train", "val", "test"):
        pattern = shard_pattern(files, split)
        assert pattern is not None
        expected = sorted(f for f in files if Path(f).name.startswith(f"{split}-"))
        assert len(expected) >= 2, "small shard size must roll over to several shards"
        ds = wds.WebDataset(str(root / pattern), shardshuffle=False, empty_check=False)
        seen[split] = set()
        for sample in ds:
            key = sample["__key__"]
            assert "." not in key
            meta = json.loads(sample["json"])
            shot = shots[meta["id"]]
            assert key == f"s{shot['id']:08d}" and meta["split"] == split
            assert sample["jpg"] == (data / shot["path"]).read_bytes()
            assert sample["mask.png"] == (data / shot["mask_path"]).read_bytes()
            label = manifest["classes"][int(sample["cls"])]["label"]
            assert label == shot["label"] == meta["label"]
            assert meta["instance_id"] == shot["instance_id"]
            seen[split].add(shot["id"])
        assert len(seen[split]) == manifest["counts"]["by_split"][split]
    assert set().union(*seen.values()) == set(shots)
    # decoded by the package itself, too
    decoded = next(
        iter(
            wds.WebDataset(str(root / shard_pattern(files, "train")), shardshuffle=False)
            .decode("pil")
            .to_tuple("jpg", "cls")
        )
    )
    assert isinstance(decoded[0], Image.Image) and decoded[1] in (0, 1, 2)


def _class_dirs(manifest: dict) -> list[str]:
    from capture.snapshots.formats import class_dir_name

    return [class_dir_name(c["index"], c["label"]) for c in manifest["classes"]]


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="no tensorflow")
def test_folder_loads_in_keras_with_the_manifest_class_indices(snap) -> None:
    import keras

    root, manifest, shots, _data = snap
    ds = keras.utils.image_dataset_from_directory(
        root / "folder" / "val", image_size=(48, 64), batch_size=64, shuffle=False
    )
    assert ds.class_names == _class_dirs(manifest)
    labels = np.concatenate([y.numpy() for _, y in ds])
    assert len(labels) == manifest["counts"]["by_split"]["val"]
    for path, y in zip(ds.file_paths, labels, strict=True):
        shot = shots[int(Path(path).stem[1:])]
        assert manifest["classes"][int(y)]["label"] == shot["label"]


def test_folder_loads_in_hugging_face_imagefolder_with_its_metadata(snap, tmp_path: Path) -> None:
    from datasets import load_dataset

    root, manifest, shots, _data = snap
    ds = load_dataset("imagefolder", data_dir=str(root / "folder"), cache_dir=str(tmp_path))
    names = {"train": "train", "validation": "val", "test": "test"}
    assert set(ds) == set(names)
    for hf_split, split in names.items():
        rows = ds[hf_split]
        assert len(rows) == manifest["counts"]["by_split"][split]
        for row in rows:
            shot = shots[row["shot_id"]]
            assert manifest["classes"][row["class_index"]]["label"] == row["label"]
            assert row["label"] == shot["label"] and row["instance_id"] == shot["instance_id"]
            assert row["image"].size == (64, 48)
            assert row["bbox"] == [shot["bbox_x"], shot["bbox_y"], shot["bbox_w"], shot["bbox_h"]]


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="no torchvision")
def test_folder_loads_in_torchvision_imagefolder(snap) -> None:  # pragma: no cover - optional
    from torchvision.datasets import ImageFolder

    root, manifest, shots, _data = snap
    ds = ImageFolder(str(root / "folder" / "train"), allow_empty=True)
    assert ds.classes == _class_dirs(manifest)
    for path, y in ds.samples:
        assert manifest["classes"][y]["label"] == shots[int(Path(path).stem[1:])]["label"]


def test_folder_images_are_the_store_files_and_every_class_folder_exists(snap) -> None:
    root, manifest, shots, _data = snap
    for split in ("train", "val", "test"):
        assert sorted(p.name for p in (root / "folder" / split).iterdir() if p.is_dir()) == (
            _class_dirs(manifest)
        )
        lines = (root / "folder" / split / "metadata.jsonl").read_text().splitlines()
        for line in lines:
            row = json.loads(line)
            image = root / "folder" / split / row["file_name"]
            assert hashlib.sha256(image.read_bytes()).hexdigest() == row["sha256"]
            assert row["sha256"] == shots[row["shot_id"]]["sha256"]


def test_coco_json_has_boxes_and_rle_masks_that_decode_to_the_stored_mask(snap) -> None:
    root, manifest, shots, data = snap
    coco = json.loads((root / "coco" / "test.json").read_text())
    assert [c["name"] for c in coco["categories"]] == [c["label"] for c in manifest["classes"]]
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
    assert len(coco["images"]) == len(coco["annotations"]) == manifest["counts"]["by_split"]["test"]
    images = {i["id"]: i for i in coco["images"]}
    for ann in coco["annotations"]:
        shot = shots[ann["image_id"]]
        assert ann["iscrowd"] == 0
        assert ann["bbox"] == [shot["bbox_x"], shot["bbox_y"], shot["bbox_w"], shot["bbox_h"]]
        assert coco["categories"][ann["category_id"] - 1]["name"] == shot["label"]
        stored = np.asarray(Image.open(data / shot["mask_path"])) > 127
        assert isinstance(ann["segmentation"]["counts"], str)
        assert np.array_equal(rle.decode(ann["segmentation"]), stored)
        assert ann["area"] == int(stored.sum())
        assert (root / "folder" / "test" / images[ann["image_id"]]["file_name"]).is_file()


@pytest.mark.skipif(importlib.util.find_spec("pycocotools") is None, reason="no pycocotools")
def test_coco_json_loads_in_pycocotools(snap) -> None:
    from pycocotools.coco import COCO

    root, manifest, shots, data = snap
    api = COCO(str(root / "coco" / "train.json"))
    assert len(api.getImgIds()) == manifest["counts"]["by_split"]["train"]
    for ann in api.loadAnns(api.getAnnIds()):
        stored = np.asarray(Image.open(data / shots[ann["image_id"]]["mask_path"])) > 127
        assert np.array_equal(api.annToMask(ann).astype(bool), stored)


def test_csv_manifest_has_a_row_per_shot(snap) -> None:
    root, manifest, shots, _data = snap
    rows = list(csv.DictReader(io.StringIO((root / "csv" / "shots.csv").read_text())))
    assert len(rows) == len(shots)
    for row in rows:
        shot = shots[int(row["shot_id"])]
        assert row["label"] == shot["label"] and row["sha256"] == shot["sha256"]
        assert manifest["classes"][int(row["class_index"])]["label"] == shot["label"]
        assert (root / row["file_name"]).is_file() and row["has_mask"] == "1"


def test_shard_pattern_is_a_brace_range_over_the_shards() -> None:
    files = [f"webdataset/train-{i:06d}.tar" for i in range(4)] + ["webdataset/val-000000.tar"]
    assert shard_pattern(files, "train") == "webdataset/train-{000000..000003}.tar"
    assert shard_pattern(files, "val") == "webdataset/val-000000.tar"
    assert shard_pattern(files, "test") is None


masks = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda hw: arrays(np.uint8, hw, elements=st.integers(0, 1))
)


@settings(max_examples=200, deadline=None)
@given(masks)
def test_rle_round_trips_and_matches_pycocotools(mask: np.ndarray) -> None:
    encoded = rle.encode(mask)
    assert np.array_equal(rle.decode(encoded), mask)
    if importlib.util.find_spec("pycocotools") is not None:
        from pycocotools import mask as coco_mask

        ref = coco_mask.encode(np.asfortranarray(mask))
        assert encoded["counts"] == ref["counts"].decode()
        assert encoded["size"] == list(ref["size"])
