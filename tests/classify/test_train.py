"""The training recipe: reading snapshots, augmentation, class weights, and a real tiny run."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from snapshot_factory import PARTS, make_snapshot
from trained_model import SIZE, trained

from classify.augment import (
    IDENTITY,
    AugmentConfig,
    augment,
    background_patch,
    jitter_matrix,
)
from classify.train import class_weights
from classify.train_data import open_snapshot, record_bbox, record_matrix
from rig.errors import ModelError, NotFound, StoreError

# --- the tiny training run (shared with test_export and test_runtime) ------------------------


def test_training_writes_every_artefact() -> None:
    folder = trained().model_dir
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "confusion.png",
        "labels.txt",
        "metrics.json",
        "model-float.tflite",
        "model.json",
        "model.tflite",
    ]
    assert not list(folder.parent.glob(".*partial"))  # the temporary folder was renamed


def test_labels_follow_the_manifest_class_order() -> None:
    t = trained()
    manifest = json.loads((t.snapshot / "manifest.json").read_text())
    order = [c["label"] for c in sorted(manifest["classes"], key=lambda c: c["index"])]
    assert (t.model_dir / "labels.txt").read_text().splitlines() == order == list(PARTS)


def test_metrics_are_sane_and_name_the_snapshot() -> None:
    t = trained()
    m = json.loads((t.model_dir / "metrics.json").read_text())
    assert m["snapshot"] == "snap-0007"
    assert m["backbone"] == "tiny" and m["input_size"] == SIZE and m["weights"] == "none"
    assert m["runtime"] == "ai_edge_litert"
    assert m["counts"] == {"train": 72, "val": 18, "test": 24}
    assert m["accuracy"] == m["int8_accuracy"] >= 0.8
    assert m["float_accuracy"] >= 0.8
    assert m["int8_drop"] == pytest.approx(m["float_accuracy"] - m["int8_accuracy"], abs=1e-4)
    assert set(m["per_class"]) == set(PARTS)
    for stats in m["per_class"].values():
        assert stats["support"] == 8 and 0 <= stats["recall"] <= 1
    assert np.asarray(m["confusion_int8"]).sum() == 24
    assert 1 <= m["best_epoch"] <= m["epochs_run"] <= 12
    assert len(m["history"]) == m["epochs_run"] and "val_accuracy" in m["history"][0]


def test_confusion_png_is_an_image() -> None:
    img = Image.open(io.BytesIO((trained().model_dir / "confusion.png").read_bytes()))
    assert img.format == "PNG" and img.width > 100 and img.height > 100


def test_training_refuses_a_folder_that_is_not_empty(tmp_path) -> None:
    from classify.train import TrainOptions, train

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.tflite").write_bytes(b"old")
    with pytest.raises(ModelError, match="not empty"):
        train(trained().snapshot, tmp_path / "out", TrainOptions(backbone="tiny", size=48))
    assert (tmp_path / "out" / "model.tflite").read_bytes() == b"old"


# --- reading snapshots ------------------------------------------------------------------------


def test_shards_and_folder_format_give_the_same_samples(tmp_path) -> None:
    root = make_snapshot(tmp_path / "s", per_class={"train": 2, "val": 1})
    snap = open_snapshot(root)
    from_shards = snap.samples("train")
    assert all(s.mask_png is not None for s in from_shards)
    snap.manifest["files"] = [f for f in snap.manifest["files"] if f["format"] != "webdataset"]
    from_folder = snap.samples("train")
    assert [(s.key, s.label, s.class_index, s.bbox) for s in from_shards] == [
        (s.key, s.label, s.class_index, s.bbox) for s in from_folder
    ]
    assert [s.image_bytes for s in from_shards] == [s.image_bytes for s in from_folder]
    assert snap.samples("test") == []
    img = from_shards[0].image()
    assert img.shape == (120, 160, 3) and from_shards[0].mask().shape == (120, 160)


def test_missing_split_files_and_foreign_labels_are_store_errors(tmp_path) -> None:
    root = make_snapshot(tmp_path / "s", per_class={"train": 1})
    (root / "webdataset" / "train-000000.tar").unlink()
    (root / "folder" / "train" / "metadata.jsonl").unlink()
    with pytest.raises(StoreError, match="pull it again"):
        open_snapshot(root).samples("train")
    with pytest.raises(NotFound, match=r"no manifest\.json"):
        open_snapshot(tmp_path)
    root = make_snapshot(tmp_path / "t", per_class={"train": 1})
    snap = open_snapshot(root)
    snap.manifest["classes"] = snap.manifest["classes"][:2]
    with pytest.raises(StoreError, match="not in the manifest"):
        snap.samples("train")


def test_record_fields_in_either_spelling() -> None:
    assert record_bbox({"bbox": [1, 2, 3, 4]}) == (1, 2, 3, 4)
    assert record_bbox({"bbox": {"x": 1, "y": 2, "w": 3, "h": 4}}) == (1, 2, 3, 4)
    assert record_bbox({"bbox_x": 1, "bbox_y": 2, "bbox_w": 3, "bbox_h": 4}) == (1, 2, 3, 4)
    assert record_bbox({"bbox": None}) is None and record_bbox({"bbox": [0, 0, 0, 5]}) is None
    assert record_matrix({"colour_matrix": "[[1, 0, 0], [0, 1, 0], [0, 0, 1]]"})[1][1] == 1
    assert record_matrix({}) is None


# --- class weights and augmentation ----------------------------------------------------------


def test_class_weights_are_inverse_frequency() -> None:
    w = class_weights(np.array([0, 0, 0, 1]), ["a", "b"])
    assert w[1] == pytest.approx(3 * w[0]) and w[0] * 3 + w[1] == pytest.approx(4)
    with pytest.raises(StoreError, match="no shots of b"):
        class_weights(np.array([0, 0]), ["a", "b"])


def test_colour_jitter_stays_between_uncorrected_and_overcorrected() -> None:
    recorded = np.hstack([np.diag([1.5, 1.0, 0.8]), np.zeros((3, 1))])
    cfg = AugmentConfig(gain_jitter=0.0, brightness=(1, 1), saturation=(1, 1))
    rng = np.random.default_rng(0)
    reds = [jitter_matrix(recorded, rng, cfg)[0, 0] for _ in range(200)]
    assert min(reds) >= 1.0 + 0.5 * 0.5 - 1e-9 and max(reds) <= 1.0 + 1.25 * 0.5 + 1e-9
    assert np.allclose(jitter_matrix(IDENTITY, rng, cfg), IDENTITY)  # no cast, no jitter


def test_background_swap_pastes_the_part_onto_another_background() -> None:
    crop = np.full((32, 32, 3), 50, np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    patch = np.full((32, 32, 3), 220, np.uint8)
    cfg = AugmentConfig(
        colour_scale=(1, 1),
        gain_jitter=0,
        brightness=(1, 1),
        saturation=(1, 1),
        rotate=False,
        scale=(1, 1),
        background_swap=1.0,
    )
    out = augment(crop, IDENTITY, mask, [patch], np.random.default_rng(0), cfg)
    assert (out[mask] == 50).all() and (out[~mask] == 220).all()
    unmasked = augment(crop, IDENTITY, None, [patch], np.random.default_rng(0), cfg)
    assert (unmasked == 50).all()


def test_background_patch_avoids_the_part() -> None:
    img = np.full((100, 200, 3), 200, np.uint8)
    img[40:60, 90:110] = 0
    patch = background_patch(img, (90, 40, 20, 20), 16)
    assert patch is not None and patch.min() == 200
    assert background_patch(img, (0, 0, 200, 100), 16) is None


def test_rotation_keeps_shape_and_content() -> None:
    crop = np.random.default_rng(3).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    out = augment(crop, IDENTITY, None, [], np.random.default_rng(1), AugmentConfig(rotate="crop"))
    assert out.shape == crop.shape and out.dtype == np.uint8 and not np.array_equal(out, crop)


STILL = {"colour_scale": (1, 1), "gain_jitter": 0, "brightness": (1, 1), "saturation": (1, 1)}


def _sheet_with_bar() -> tuple[np.ndarray, np.ndarray]:
    """A 32 px crop: a left-to-right gradient sheet and a horizontal bar (the masked part)."""
    crop = np.repeat(np.linspace(60, 200, 32, dtype=np.uint8)[None, :, None], 32, 0)
    crop = np.repeat(crop, 3, 2).copy()
    mask = np.zeros((32, 32), bool)
    mask[14:18, 4:28] = True
    crop[mask] = (250, 20, 20)
    return crop, mask


def test_part_rotation_turns_the_masked_part_and_leaves_the_sheet_alone() -> None:
    crop, mask = _sheet_with_bar()
    cfg = AugmentConfig(rotate="part", scale=(1, 1), background_swap=0.0, **STILL)
    rng = np.random.default_rng(5)
    outs = [augment(crop, IDENTITY, mask, [], rng, cfg) for _ in range(8)]
    red = [(o[..., 0] > 200) & (o[..., 1] < 80) for o in outs]
    # the part keeps its size but points elsewhere: its pixels leave the bar's rows
    assert all(abs(int(r.sum()) - int(mask.sum())) < 0.35 * mask.sum() for r in red)
    assert any(r[:10].any() or r[22:].any() for r in red)
    # far from the part the sheet is the sheet, unturned (a turned crop would move the gradient)
    corner = (slice(0, 4), slice(0, 4))
    assert all(np.abs(o[corner].astype(int) - crop[corner]).max() <= 2 for o in outs)


def test_without_a_mask_the_default_does_not_rotate_and_crop_mode_does() -> None:
    crop, _ = _sheet_with_bar()
    fixed = AugmentConfig(scale=(1, 1), **STILL)
    assert np.array_equal(augment(crop, IDENTITY, None, [], np.random.default_rng(0), fixed), crop)
    turned = AugmentConfig(rotate="crop", scale=(1, 1), **STILL)
    assert not np.array_equal(
        augment(crop, IDENTITY, None, [], np.random.default_rng(0), turned), crop
    )
    assert (
        AugmentConfig(rotate=True).rotate == "crop" and AugmentConfig(rotate=False).rotate == "off"
    )
    with pytest.raises(ValueError, match="rotate must be one of"):
        AugmentConfig(rotate="sideways")


def test_strong_colour_jitter_moves_a_tan_brick_far_more_than_light() -> None:
    tan = np.full((8, 8, 3), (200, 170, 120), np.uint8)
    spreads = {}
    for preset in ("light", "strong"):
        cfg = AugmentConfig.preset(preset)
        rng = np.random.default_rng(0)
        means = [
            augment(tan, IDENTITY, None, [], rng, cfg).reshape(-1, 3).mean(0) for _ in range(200)
        ]
        spreads[preset] = np.std(np.asarray(means), axis=0).mean()
    assert spreads["strong"] > 4 * spreads["light"]
    with pytest.raises(ValueError, match="colour must be one of"):
        AugmentConfig.preset("neon")


def test_a_snapshot_made_by_the_rig_reads_with_boxes_and_masks(tmp_path) -> None:
    """The contract end to end: capture/snapshots/build.py writes it, train_data reads it."""
    from registry_helpers import add_colour_shots

    from capture.snapshots.build import create_snapshot
    from capture.snapshots.filter import SnapshotFilter
    from capture.snapshots.splits import SplitRules
    from capture.store import DatasetStore
    from rig.config import parse_settings

    settings = parse_settings({"data": {"dir": str(tmp_path / "data")}})
    store = DatasetStore.open(settings.data.dir)
    try:
        add_colour_shots(store, instances=4, per_instance=2)
        rules = SplitRules(train=0.5, val=0.25, test=0.25, seed=0, group_by="instance")
        manifest = create_snapshot(
            store, settings, SnapshotFilter(), rules, formats=("webdataset", "folder")
        )
    finally:
        store.close()
    root = settings.data.dir / "snapshots" / manifest["id"]
    snap = open_snapshot(root)
    assert snap.id == manifest["id"] and sorted(snap.labels) == ["part-blue", "part-red"]
    shards = snap.samples("train")
    assert shards and all(s.bbox is not None and s.bbox[2:] == (24, 20) for s in shards)
    assert all(s.mask() is not None and s.mask().sum() == 24 * 20 for s in shards)
    assert all(s.instance for s in shards)
    snap.manifest["files"] = [f for f in snap.manifest["files"] if f["format"] != "webdataset"]
    folder = snap.samples("train")
    assert [(s.key, s.label, s.bbox) for s in folder] == [(s.key, s.label, s.bbox) for s in shards]
    assert sum(len(snap.samples(split)) for split in ("train", "val", "test")) == 16


def test_a_failed_export_leaves_no_model_folder(tmp_path, monkeypatch) -> None:
    import classify.train as recipe

    def broken(*args, **kwargs):
        raise ModelError("int8 conversion failed: simulated")

    monkeypatch.setattr(recipe, "export_int8", broken)
    snap = make_snapshot(tmp_path / "snap", per_class={"train": 3, "val": 1, "test": 1})
    opts = recipe.TrainOptions(backbone="tiny", size=32, epochs=1, min_epoch_samples=9)
    with pytest.raises(ModelError, match="simulated"):
        recipe.train(snap, tmp_path / "model", opts, log=lambda line: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]
