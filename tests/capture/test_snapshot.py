"""Snapshots: the manifest matches the files, splits are leak-free and stable, refusal and the
weaker split, filters, determinism, streaming memory and atomicity under a kill."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from snapshot_data import add_shots

from capture.snapshots.build import (
    create_snapshot,
    list_snapshots,
    load_manifest,
    snapshot_dir,
    split_shot_ids,
)
from capture.snapshots.filter import SnapshotFilter
from capture.snapshots.splits import SplitError, SplitRules
from capture.store import DatasetStore
from rig.config import Settings
from rig.errors import NotFound, QueryError, StoreError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path):
    with DatasetStore.open(tmp_path / "data") as s:
        add_shots(s)
        yield s


def _files_on_disk(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }


def _instances_by_split(store: DatasetStore, sid: str) -> dict[str, set[str]]:
    out = {}
    for split in ("train", "val", "test"):
        ids = split_shot_ids(store, sid, split)
        out[split] = {store.get_shot(i)["instance_id"] for i in ids}
    return out


def test_manifest_lists_every_file_with_its_true_sha256_and_size(store: DatasetStore) -> None:
    m = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules(seed=1))
    root = snapshot_dir(store.data_dir, m["id"])
    assert m["id"] == "snap-0001" and root.is_dir()
    assert {f["path"] for f in m["files"]} == _files_on_disk(root)
    for f in m["files"]:
        data = (root / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]
        assert len(data) == f["size"]
    assert load_manifest(store.data_dir, m["id"]) == m
    assert m["classes"] == [
        {"index": 0, "label": "brick-2x4-red"},
        {"index": 1, "label": "nut"},
        {"index": 2, "label": "plate 1x2"},
    ]
    assert m["counts"]["total"] == 72 == sum(m["counts"]["by_split"].values())
    assert m["rules"] == {
        "train": 0.7,
        "val": 0.15,
        "test": 0.15,
        "seed": 1,
        "group_by": "instance",
        "weaker": False,
    }
    assert m["software_version"] and m["filter"]["labels"] == []
    assert set(m["formats"]) == {"webdataset", "folder", "coco", "csv"}
    assert {f["format"] for f in m["files"]} == {"webdataset", "folder", "coco", "csv", "report"}
    rows = list_snapshots(store)
    assert [r["id"] for r in rows] == ["snap-0001"]
    assert rows[0]["shots"] == 72 and rows[0]["bytes"] == sum(f["size"] for f in m["files"])
    assert store.snapshot_manifest("snap-0001") == m


def test_no_instance_in_two_splits_and_split_ids_cover_the_selection(store: DatasetStore) -> None:
    m = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules(seed=5))
    by_split = _instances_by_split(store, m["id"])
    assert not (by_split["train"] & by_split["val"])
    assert not (by_split["train"] & by_split["test"])
    assert not (by_split["val"] & by_split["test"])
    ids = [i for s in ("train", "val", "test") for i in split_shot_ids(store, m["id"], s)]
    assert sorted(ids) == sorted(r["id"] for r in store.query("SELECT id FROM shots"))
    for split, n in m["counts"]["by_split"].items():
        assert len(split_shot_ids(store, m["id"], split)) == n
    with pytest.raises(NotFound):
        split_shot_ids(store, "snap-0099", "test")
    with pytest.raises(NotFound):
        load_manifest(store.data_dir, "../../etc")


def test_instances_keep_their_split_in_a_later_snapshot_with_new_instances(
    store: DatasetStore,
) -> None:
    first = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules(seed=2))
    before = _instances_by_split(store, first["id"])
    add_shots(store, instances=3, prefix="new", day=2)
    # NOTE: another seed on purpose: recorded assignments win over the seed.
    second = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules(seed=99))
    after = _instances_by_split(store, second["id"])
    assert second["id"] == "snap-0002"
    for split, instances in before.items():
        assert instances <= after[split]
    assert second["counts"]["total"] == 72 + 54
    new = {i for s in after.values() for i in s if "-new" in i}
    assert len(new) == 9


def test_unchanged_content_gives_byte_identical_files(store: DatasetStore) -> None:
    a = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules(seed=4))
    b = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules(seed=4))
    skip = ("report.md",)  # names the snapshot id

    def content(m: dict) -> dict[str, str]:
        return {f["path"]: f["sha256"] for f in m["files"] if f["path"] not in skip}

    assert content(a) == content(b)
    assert any(p.startswith("webdataset/") for p in content(a))


def test_too_few_instances_is_refused_naming_the_class_and_weaker_split_is_marked(
    tmp_path: Path,
) -> None:
    with DatasetStore.open(tmp_path / "d") as s:
        add_shots(s, labels=("nut",), instances=4)
        add_shots(s, labels=("washer",), instances=2, prefix="w")
        with pytest.raises(SplitError, match=r"washer \(2 instances\).*weaker per-session"):
            create_snapshot(s, Settings(), SnapshotFilter(), SplitRules())
        assert list_snapshots(s) == []
        assert not list((s.data_dir / "snapshots").glob("snap-*"))
        m = create_snapshot(s, Settings(), SnapshotFilter(), SplitRules(group_by="session"))
        assert m["rules"]["weaker"] is True and m["rules"]["group_by"] == "session"
        root = snapshot_dir(s.data_dir, m["id"])
        report = json.loads((root / "report.json").read_text())
        assert report["split"]["weaker"] is True
        assert "WEAKER split, grouped by session" in (root / "report.md").read_text()
        # the weaker split keeps each (instance, session) together, not each instance
        sessions: dict[tuple[str, int], set[str]] = {}
        for split in ("train", "val", "test"):
            for i in split_shot_ids(s, m["id"], split):
                shot = s.get_shot(i)
                sessions.setdefault((shot["instance_id"], shot["run_id"]), set()).add(split)
        assert all(len(v) == 1 for v in sessions.values())
        assert list_snapshots(s)[0]["weaker"] is True


def test_filter_selects_labels_backgrounds_time_and_drops_small_classes(tmp_path: Path) -> None:
    with DatasetStore.open(tmp_path / "d") as s:
        add_shots(s)
        add_shots(s, labels=("rare",), instances=3, angles=1, backgrounds=(1,), prefix="r")
        m = create_snapshot(
            s,
            Settings(),
            SnapshotFilter(backgrounds=(2,), min_per_class=10),
            SplitRules(),
            formats=("csv",),
        )
        assert [c["label"] for c in m["classes"]] == ["brick-2x4-red", "nut", "plate 1x2"]
        assert m["counts"]["total"] == 36
        report = json.loads((snapshot_dir(s.data_dir, m["id"]) / "report.json").read_text())
        assert set(report["counts"]["nut"]["train"]) == {"2"}
        assert m["formats"] == ["csv"] and {f["format"] for f in m["files"]} == {"csv", "report"}
        m2 = create_snapshot(
            s,
            Settings(),
            SnapshotFilter(labels=("nut",), until="2026-01-01T10:01:59Z"),
            SplitRules(),
            formats=("csv",),
        )
        assert m2["counts"]["total"] == 12 and m2["filter"]["labels"] == ["nut"]
        with pytest.raises(QueryError, match="no shots match"):
            create_snapshot(s, Settings(), SnapshotFilter(since="2030-01-01"), SplitRules())
        with pytest.raises(QueryError, match="ISO 8601"):
            create_snapshot(s, Settings(), SnapshotFilter(since="yesterday"), SplitRules())
        with pytest.raises(QueryError, match="unknown format"):
            create_snapshot(s, Settings(), SnapshotFilter(), SplitRules(), formats=("tfrecord",))


def test_a_changed_store_file_stops_the_snapshot_and_leaves_nothing(store: DatasetStore) -> None:
    victim = store.get_shot(5)
    path = store.path_of(victim["path"])
    path.write_bytes(path.read_bytes() + b"rot")
    with pytest.raises(StoreError, match="no longer matches its recorded sha256"):
        create_snapshot(store, Settings(), SnapshotFilter(), SplitRules())
    assert [p.name for p in (store.data_dir / "snapshots").iterdir()] == [".lock"]
    assert list_snapshots(store) == []


def test_formats_stream_shot_by_shot_without_holding_the_dataset(tmp_path: Path) -> None:
    with DatasetStore.open(tmp_path / "d") as s:
        # NOTE: noise images barely compress: ~70 kB each, ~5 MB of images in all.
        add_shots(s, instances=3, angles=4, size=(320, 240), noise=True)
        total = s.scalar("SELECT SUM(size) FROM shots")
        tracemalloc.start()
        try:
            m = create_snapshot(s, Settings(), SnapshotFilter(), SplitRules())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert m["counts"]["total"] == 72
        assert total > 3_000_000
        print(f"images {total} B, traced peak {peak} B")
        assert peak < total / 4, (peak, total)


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from capture.store import DatasetStore
from capture.snapshots.build import create_snapshot
from capture.snapshots.filter import SnapshotFilter
from capture.snapshots.splits import SplitRules
from rig.config import Settings
import capture.snapshots.formats.webdataset as wds
import capture.store.snapshots as snaps

where = sys.argv[2]
if where == "mid-write":
    original = wds.WebDatasetWriter.add
    calls = []
    def add(self, sample):
        calls.append(1)
        if len(calls) == 20:
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, sample)
    wds.WebDatasetWriter.add = add
else:
    def record(self, *a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    snaps.Snapshots.record_snapshot = record
with DatasetStore.open(Path(sys.argv[1])) as store:
    create_snapshot(store, Settings(), SnapshotFilter(), SplitRules())
"""


@pytest.mark.parametrize("where", ["mid-write", "after-rename"])
def test_a_killed_snapshot_is_never_visible_and_is_cleaned_by_the_next(
    store: DatasetStore, tmp_path: Path, where: str
) -> None:
    script = tmp_path / "kill.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT).format(tests=str(Path(__file__).parent)))
    proc = subprocess.run(
        [sys.executable, str(script), str(store.data_dir), where],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    root = store.data_dir / "snapshots"
    left = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert left == (["snap-0001.tmp"] if where == "mid-write" else ["snap-0001"])
    assert list_snapshots(store) == []
    m = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules())
    assert m["id"] == "snap-0001"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["snap-0001"]
    assert {f["path"] for f in m["files"]} == _files_on_disk(root / "snap-0001")


def test_the_cli_makes_lists_and_refuses_with_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from web.cli import app

    data = tmp_path / "d"
    with DatasetStore.open(data) as s:
        add_shots(s, labels=("nut",), instances=4)
        add_shots(s, labels=("washer",), instances=2, prefix="w")
    runner = CliRunner()
    refused = runner.invoke(app, ["dataset", "snapshot", "--data", str(data)])
    assert refused.exit_code == 2
    assert "washer (2 instances)" in refused.output and "weaker" in refused.output
    made = runner.invoke(
        app,
        [
            "dataset",
            "snapshot",
            "--data",
            str(data),
            "--group-by",
            "session",
            "--seed",
            "3",
            "--format",
            "csv",
            "--format",
            "folder",
            "--label",
            "nut",
            "--label",
            "washer",
        ],
    )
    assert made.exit_code == 0, made.output
    assert "snap-0001" in made.output and "WEAKER" in made.output
    m = load_manifest(data, "snap-0001")
    assert m["formats"] == ["folder", "csv"] and m["rules"]["seed"] == 3
    assert m["filter"]["labels"] == ["nut", "washer"]
    listed = runner.invoke(app, ["dataset", "snapshots", "--data", str(data)])
    assert listed.exit_code == 0 and "snap-0001" in listed.output and "weaker" in listed.output


def test_sorter_shots_without_background_mask_or_box_go_into_every_format(
    tmp_path: Path,
) -> None:
    import csv
    import io
    import tarfile

    from snapshot_data import shot_image

    from capture.store import ShotRecord

    with DatasetStore.open(tmp_path / "d") as s:
        add_shots(s)
        for n in range(4):
            image, _mask, _box = shot_image(1000 + n, "nut", (64, 48))
            record = ShotRecord(
                label="nut",
                instance_id=f"sorted-{n}",
                path="",
                sha256="0" * 64,
                size=0,
                source="sorter",
            )
            s.save_shots([(f"images/sorter/{n:06d}.jpg", image, record)])
        m = create_snapshot(s, Settings(), SnapshotFilter(sources=("sorter",)), SplitRules())
        root = snapshot_dir(s.data_dir, m["id"])
    assert m["counts"]["total"] == 4 and m["filter"]["sources"] == ["sorter"]
    report = json.loads((root / "report.json").read_text())
    assert sum(report["counts"]["nut"][sp].get("none", 0) for sp in ("train", "val", "test")) == 4
    coco = json.loads((root / "coco" / "train.json").read_text())
    assert coco["images"] and coco["annotations"] == []
    assert coco["images"][0]["width"] == 64 and coco["images"][0]["height"] == 48
    rows = list(csv.DictReader(io.StringIO((root / "csv" / "shots.csv").read_text())))
    assert {r["has_mask"] for r in rows} == {"0"} and {r["background_id"] for r in rows} == {""}
    with tarfile.open(root / "webdataset" / "train-000000.tar") as tar:
        names = tar.getnames()
    assert names and not any(n.endswith(".mask.png") for n in names)


def test_a_full_disk_is_a_disk_full_error_and_leaves_no_half_snapshot(
    store: DatasetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from capture.snapshots.formats import HashingFile
    from rig.errors import DiskFull

    real_write = HashingFile.write

    def write(self: HashingFile, data: bytes) -> int:
        if self.size > 20_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(HashingFile, "write", write)
    with pytest.raises(DiskFull, match="free space"):
        create_snapshot(store, Settings(), SnapshotFilter(), SplitRules())
    assert [p.name for p in (store.data_dir / "snapshots").iterdir()] == [".lock"]
    assert list_snapshots(store) == []


def test_the_cli_refuses_a_class_without_val_or_test_unless_allowed(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from web.cli import app

    data = tmp_path / "d"
    with DatasetStore.open(data) as s:
        add_shots(s, labels=("nut",), instances=1, backgrounds=(1,))  # one session only
    args = ["dataset", "snapshot", "--data", str(data), "--group-by", "session", "--format", "csv"]
    refused = CliRunner().invoke(app, args, terminal_width=200)
    assert refused.exit_code == 2, refused.output
    assert "nut: no val or test" in refused.output and "--allow-empty-splits" in refused.output
    made = CliRunner().invoke(app, [*args, "--allow-empty-splits"], terminal_width=200)
    assert made.exit_code == 0, made.output
    assert "nut has no val or test shots" in made.output
    assert made.output.splitlines()[0].startswith("near-duplicate rate across splits: ")
    report = (data / "snapshots" / "snap-0001" / "report.md").read_text()
    assert "**nut has no val or test shots**" in report and "Near-duplicate rate" in report
