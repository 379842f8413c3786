"""The recipe's knobs: the learning-rate schedule, the sorter's pixel density, the seeds summary
and what training prints, including the confusion image when there is no test split."""

from __future__ import annotations

import io
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trained_model import SIZE, trained

from classify.train import Prepared, TrainOptions, _confusion_image, at_sorter_density
from classify.train_output import native_output_quiet, result_lines, seeds_summary
from classify.train_seeds import summary_line


def test_the_schedule_warms_up_then_decays_by_cosine() -> None:
    from classify.train import learning_rate

    opts = TrainOptions(epochs=10, batch=32, min_epoch_samples=320, learning_rate=1e-3)
    schedule = learning_rate(opts, train_count=100)  # 10 steps an epoch, 1 epoch warm-up
    lr = [float(schedule(step)) for step in range(0, 101, 5)]
    assert lr[0] == pytest.approx(5e-5, rel=1e-3) and lr[2] == pytest.approx(1e-3, rel=1e-3)
    assert lr[1] < lr[2] and all(a >= b for a, b in itertools.pairwise(lr[2:]))
    assert lr[-1] == pytest.approx(2e-5, rel=0.05)
    assert learning_rate(TrainOptions(schedule="constant"), 100) == 1e-3


def test_large_shots_are_shrunk_to_the_sorters_frames_before_cropping() -> None:
    still = np.zeros((3040, 4056, 3), np.uint8)
    small, box = at_sorter_density(still, (2028, 1520, 400, 300), 640)
    assert small.shape == (480, 640, 3)
    assert box == pytest.approx((320.0, 239.9, 63.1, 47.3), abs=0.1)
    preview = np.zeros((480, 640, 3), np.uint8)
    same, same_box = at_sorter_density(preview, (1, 2, 3, 4), 640)
    assert same is preview and same_box == (1, 2, 3, 4)
    assert at_sorter_density(still, None, None)[0] is still


def test_seeds_report_mean_range_and_time() -> None:
    runs = [
        {"seed": 0, "int8_accuracy": 0.90, "float_accuracy": 0.91, "val_accuracy": 0.8,
         "wall_seconds": 100.0},
        {"seed": 1, "int8_accuracy": 0.94, "float_accuracy": 0.95, "val_accuracy": 0.9,
         "wall_seconds": 120.0},
    ]  # fmt: skip
    s = seeds_summary(runs)
    assert s["int8_accuracy"] == {"mean": 0.92, "min": 0.9, "max": 0.94, "range": 0.04}
    assert summary_line(s) == (
        "int8 test accuracy over 2 seeds: mean 0.920, range 0.040 (0.900-0.940); 110 s per seed"
    )
    none = seeds_summary([{"seed": 0, "int8_accuracy": None, "wall_seconds": 1.0}])
    assert "NO TEST SPLIT" in summary_line(none)


def test_the_result_names_accuracy_per_class_or_says_there_is_no_test_split() -> None:
    metrics = trained().metrics
    lines = result_lines(metrics)
    assert lines[0].startswith("held-out test (") and "int8 accuracy" in lines[0]
    assert len(lines) == 2 + len(metrics["labels"]) and "None" not in "".join(lines)
    missing = result_lines({"snapshot": "snap-0001", "int8_accuracy": None, "val_accuracy": 0.5})
    assert missing[0].startswith("NO TEST SPLIT") and "val split" in missing[1]
    assert not any("Statistics for quantized" in line for line in trained().log)


def test_without_a_test_split_confusion_png_shows_val_and_says_so() -> None:
    t = trained()
    labels = t.metrics["labels"]
    rng = np.random.default_rng(0)
    val = Prepared(
        rng.integers(0, 256, (6, SIZE, SIZE, 3), dtype=np.uint8), np.arange(6) % len(labels)
    )
    png = _confusion_image(t.model_dir, "snap-0007", labels, {"confusion_int8": None}, val)
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size[0] > 50
    empty = Prepared(np.zeros((0, SIZE, SIZE, 3), np.uint8), np.zeros((0,), np.int64))
    assert _confusion_image(t.model_dir, "snap-0007", labels, {"confusion_int8": None}, empty)


def test_native_noise_is_parked_and_replayed_only_on_failure(capfd) -> None:
    import os

    with native_output_quiet():
        os.write(2, b"fully_quantize: 0, inference_type: 6\n")
    assert "fully_quantize" not in capfd.readouterr().err
    with pytest.raises(RuntimeError), native_output_quiet():
        os.write(2, b"converter exploded here\n")
        raise RuntimeError("export failed")
    assert "converter exploded here" in capfd.readouterr().err


def test_the_stream_index_reads_shards_and_folders_alike_without_the_images(tmp_path) -> None:
    from snapshot_factory import make_snapshot

    from classify.augment import AugmentConfig
    from classify.train_data import open_snapshot
    from classify.train_stream import CropLoader, StreamSplit, index_split, read_blob

    snap = open_snapshot(make_snapshot(tmp_path / "s", per_class={"train": 3, "val": 1}))
    from_shards = index_split(snap, "train")
    samples = snap.samples("train")
    assert [r.key for r in from_shards] == [s.key for s in samples]
    assert [read_blob(r.image) for r in from_shards] == [s.image_bytes for s in samples]
    assert all(r.mask is not None and r.image[2] > 0 for r in from_shards)
    snap.manifest["files"] = [f for f in snap.manifest["files"] if f["format"] != "webdataset"]
    from_folder = index_split(snap, "train")
    assert [(r.key, r.class_index, r.bbox) for r in from_folder] == [
        (r.key, r.class_index, r.bbox) for r in from_shards
    ]
    assert index_split(snap, "test") == []

    loader = CropLoader(SIZE, 640, AugmentConfig())
    split = StreamSplit(from_shards, loader)
    first = [x.numpy() for x, _ in split.epoch(seed=3, epoch=1, min_samples=8, batch=4)]
    again = [x.numpy() for x, _ in split.epoch(seed=3, epoch=1, min_samples=8, batch=4)]
    other = [x.numpy() for x, _ in split.epoch(seed=3, epoch=2, min_samples=8, batch=4)]
    assert sum(len(b) for b in first) == 9  # 9 shots already make the 8 asked
    repeated = split.epoch(seed=3, epoch=1, min_samples=12, batch=4)
    assert sum(len(b) for b, _ in repeated) == 18  # whole passes until there are >= 12
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    plain = [c for c, _ in split.plain_crops()]
    evaluated = np.concatenate([x.numpy() for x, _ in split.evaluation(batch=5)])
    assert np.array_equal(np.stack(plain), evaluated)


def test_the_cli_trains_one_model_per_seed_and_prints_mean_and_range(tmp_path, monkeypatch) -> None:
    import json

    from typer.testing import CliRunner

    import classify.train as train_mod
    from web.cli import app

    (tmp_path / "manifest.json").write_text("{}")
    seen: list[int] = []

    def fake_train(dataset, out, opts, log):  # type: ignore[no-untyped-def]
        seen.append(opts.seed)
        out.mkdir(parents=True)
        return {"int8_accuracy": 0.9 + 0.01 * opts.seed, "float_accuracy": 0.95,
                "val_accuracy": 0.9, "best_epoch": 3}  # fmt: skip

    monkeypatch.setattr(train_mod, "train", fake_train)
    out = tmp_path / "models"
    result = CliRunner().invoke(
        app,
        ["train", "--dataset", str(tmp_path), "--out", str(out), "--seeds", "3", "--seed", "4",
         "--rotate", "crop", "--colour", "light"],
        terminal_width=200,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen == [4, 5, 6] and sorted(p.name for p in out.iterdir()) == [
        "seed-4",
        "seed-5",
        "seed-6",
        "seeds.json",
    ]
    summary = json.loads((out / "seeds.json").read_text())
    assert summary["int8_accuracy"]["range"] == 0.02
    assert "int8 test accuracy over 3 seeds: mean 0.950, range 0.020" in result.output
    bad = CliRunner().invoke(
        app, ["train", "--dataset", str(tmp_path), "--out", str(tmp_path / "x"), "--rotate", "up"]
    )
    assert bad.exit_code == 2 and "rotate must be one of" in bad.output
