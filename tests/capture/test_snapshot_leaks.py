"""The leak check: exact and near-duplicate images across splits, in a snapshot's report and in
any folder-format dataset on disk (planted duplicates are found, real photos included)."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from snapshot_data import add_shots

from capture.snapshots.build import create_snapshot, snapshot_dir
from capture.snapshots.filter import SnapshotFilter
from capture.snapshots.leaks import ImageEntry, distance, leak_report, near_cross_split, phash
from capture.snapshots.splits import SplitRules
from capture.store import DatasetStore, ShotRecord
from rig.config import Settings
from rig.errors import NotFound
from web.cli import app

#: A split seed that puts nut-i0 and its copy nut-x in different splits.
SEED = 3


def _near_copy(data: bytes) -> bytes:
    """The same photo re-encoded at another quality, slightly brighter: a disguised duplicate."""
    with Image.open(io.BytesIO(data)) as im:
        brighter = ImageEnhance.Brightness(im.convert("RGB")).enhance(1.06)
        buf = io.BytesIO()
        brighter.save(buf, "JPEG", quality=70)
    return buf.getvalue()


@pytest.fixture
def snapshot_folder(tmp_path: Path) -> Path:
    with DatasetStore.open(tmp_path / "data") as store:
        add_shots(store, size=(96, 72))
        m = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules(), formats=("folder",))
        report = json.loads((snapshot_dir(store.data_dir, m["id"]) / "report.json").read_text())
        assert report["duplicates"]["exact_cross_split"] == 0
        assert report["duplicates"]["near_cross_split"] == 0
        return snapshot_dir(store.data_dir, m["id"]) / "folder"


def test_a_clean_snapshot_folder_has_no_leaks(snapshot_folder: Path) -> None:
    result = leak_report(snapshot_folder)
    assert result["images"] == 72
    assert result["duplicates"]["exact_cross_split"] == 0
    assert result["duplicates"]["near_cross_split"] == 0


def test_planted_exact_and_near_duplicates_across_splits_are_flagged(
    snapshot_folder: Path,
) -> None:
    # NOTE: the snapshot's images are hard links to the store; a copy keeps the store intact.
    folder = snapshot_folder.parent / "planted"
    shutil.copytree(snapshot_folder, folder)
    train_image = sorted((folder / "train").glob("001-*/*.jpg"))[0]
    exact = folder / "test" / train_image.parent.name / "leak-exact.jpg"
    exact.write_bytes(train_image.read_bytes())
    other = sorted((folder / "train").glob("002-*/*.jpg"))[1]
    near = folder / "val" / other.parent.name / "leak-near.jpg"
    near.write_bytes(_near_copy(other.read_bytes()))
    same_split = folder / "train" / train_image.parent.name / "same-split-copy.jpg"
    same_split.write_bytes(train_image.read_bytes())

    dup = leak_report(folder)["duplicates"]
    assert dup["exact_cross_split"] == 1
    names = {i["name"] for i in dup["exact"][0]["images"]}
    assert f"test/{train_image.parent.name}/leak-exact.jpg" in names
    assert train_image.relative_to(folder).as_posix() in names
    assert dup["near_cross_split"] == 1
    pair = dup["near"][0]
    assert {pair["a"]["name"], pair["b"]["name"]} == {
        other.relative_to(folder).as_posix(),
        near.relative_to(folder).as_posix(),
    }

    result = CliRunner().invoke(app, ["dataset", "check-leaks", str(folder)])
    assert result.exit_code == 1, result.output
    assert "leak-exact.jpg" in result.output and "leak-near.jpg" in result.output
    clean = CliRunner().invoke(app, ["dataset", "check-leaks", str(snapshot_folder)])
    assert clean.exit_code == 0 and "0 exact and 0 near" in clean.output


def test_check_leaks_on_something_that_is_not_a_folder_dataset_says_what_to_pass(
    tmp_path: Path,
) -> None:
    with pytest.raises(NotFound, match="train/, val/ and test/"):
        leak_report(tmp_path)
    result = CliRunner().invoke(app, ["dataset", "check-leaks", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a folder" in result.output


def test_the_snapshot_report_flags_a_shot_stored_twice_in_different_splits(
    tmp_path: Path,
) -> None:
    with DatasetStore.open(tmp_path / "data") as store:
        add_shots(store)
        # the same bytes stored again as another instance: a leak only the report can see
        copies = store.query(
            "SELECT * FROM shots WHERE instance_id = 'nut-i0' AND background_id = 1 ORDER BY id"
        )
        run = store.create_run("copies", "", "{}", len(copies))
        for n, row in enumerate(copies):
            data = store.path_of(row["path"]).read_bytes()
            record = ShotRecord(
                label="nut",
                instance_id="nut-x",
                path="",
                sha256="0" * 64,
                size=0,
                run_id=run,
                shot_index=n,
                background_id=1,
            )
            store.save_shots([(f"images/{run}/{n:06d}.jpg", data, record)])
        m = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules(seed=SEED))
        root = snapshot_dir(store.data_dir, m["id"])
        report = json.loads((root / "report.json").read_text())
    splits = {}
    for split in ("train", "val", "test"):
        for line in (root / "folder" / split / "metadata.jsonl").read_text().splitlines():
            row = json.loads(line)
            splits[row["instance_id"]] = split
    assert splits["nut-i0"] != splits["nut-x"]
    assert report["duplicates"]["exact_cross_split"] == 3
    assert report["instances_per_class"]["nut"]["total"] == 5
    md = (root / "report.md").read_text()
    assert "exact (same sha256): **3**" in md


def test_phash_survives_re_encoding_and_tells_different_images_apart() -> None:
    rng = np.random.default_rng(1)
    a = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).resize((320, 240))
    b = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).resize((320, 240))
    buf_a, buf_b = io.BytesIO(), io.BytesIO()
    a.save(buf_a, "JPEG", quality=95)
    b.save(buf_b, "JPEG", quality=95)
    ha, hb = phash(buf_a.getvalue()), phash(buf_b.getvalue())
    assert len(ha) == 32
    assert distance(ha, phash(_near_copy(buf_a.getvalue()))) <= 20
    assert distance(ha, hb) > 60


hashes = st.lists(
    st.tuples(st.binary(min_size=32, max_size=32), st.sampled_from(["train", "val", "test"])),
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(hashes, st.integers(0, 30), st.randoms(use_true_random=False))
def test_banded_near_duplicate_search_equals_brute_force(items, max_distance, rnd) -> None:
    # NOTE: derive near neighbours of some hashes so that close pairs really occur.
    entries = []
    for i, (h, split) in enumerate(items):
        if entries and rnd.random() < 0.5:
            value = int.from_bytes(entries[rnd.randrange(len(entries))].phash, "big")
            for _ in range(rnd.randrange(0, 40)):
                value ^= 1 << rnd.randrange(256)
            h = value.to_bytes(32, "big")
        entries.append(ImageEntry(f"n{i}", split, "x", f"sha{i}", h))
    got = {
        frozenset((p["a"]["name"], p["b"]["name"])) for p in near_cross_split(entries, max_distance)
    }
    want = {
        frozenset((a.name, b.name))
        for i, a in enumerate(entries)
        for b in entries[i + 1 :]
        if a.split != b.split and distance(a.phash, b.phash) <= max_distance
    }
    assert got == want


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def test_leak_check_on_real_pi_photos_finds_the_planted_duplicates(
    shared_data: Path, tmp_path: Path
) -> None:
    """Real 640x480 Pi camera photos, split by file into a folder dataset in a tmp dir."""
    folder = tmp_path / "real"
    classes = sorted(p for p in shared_data.iterdir() if p.is_dir() and p.name != "reference")
    rnd = random.Random(0)
    for index, cls in enumerate(classes):
        photos = sorted(cls.glob("*.jpg"))
        for n, photo in enumerate(photos):
            # NOTE: contiguous blocks per split: neighbouring photos of one part on the belt
            # are near-duplicates of each other, as a turntable's neighbouring angles are.
            split = (
                "train" if n < 0.7 * len(photos) else "val" if n < 0.85 * len(photos) else "test"
            )
            _link(photo, folder / split / f"{index:03d}-{cls.name}" / photo.name)
    baseline = leak_report(folder)["duplicates"]
    # NOTE: distinct real photos stay far apart (no false alarm), which a 64-bit dHash missed.
    assert baseline["exact_cross_split"] == 0 and baseline["near_cross_split"] == 0
    victim = rnd.choice(sorted((folder / "train").glob("001-*/*.jpg")))
    exact = folder / "test" / victim.parent.name / "planted-exact.jpg"
    exact.write_bytes(victim.read_bytes())
    victim2 = rnd.choice(sorted((folder / "train").glob("002-*/*.jpg")))
    near = folder / "val" / victim2.parent.name / "planted-near.jpg"
    near.write_bytes(_near_copy(victim2.read_bytes()))

    result = leak_report(folder)
    dup = result["duplicates"]
    assert result["images"] >= 500
    assert dup["exact_cross_split"] == 1
    assert {i["name"] for i in dup["exact"][0]["images"]} == {
        victim.relative_to(folder).as_posix(),
        exact.relative_to(folder).as_posix(),
    }
    planted_near = near.relative_to(folder).as_posix()
    assert dup["near_cross_split"] == 1
    pair = dup["near"][0]
    assert {pair["a"]["name"], pair["b"]["name"]} == {
        victim2.relative_to(folder).as_posix(),
        planted_near,
    }
