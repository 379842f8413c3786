"""``partrig dataset import``: folders, lists and snapshots in; labels checked; groups inferred
from the part's crop and time gaps, stable across re-runs; resumable; and real photos."""

from __future__ import annotations

import csv
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from capture.imports.groups import group_photos
from capture.imports.importer import ImportOptions, import_photos
from capture.imports.sources import ImportSourceError, normalise_label
from capture.store import DatasetStore

W, H = 160, 120
BG = (200, 200, 196)
COLOURS = {"nut": (200, 40, 40), "washer": (40, 60, 200), "3001": (30, 150, 40)}
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def frame(label: str | None, angle: float, centre: tuple[int, int], seed: int) -> np.ndarray:
    """A grey sheet with faint noise and, unless ``label`` is None, a rotated bar of its colour."""
    rng = np.random.default_rng(seed)
    img = np.clip(np.full((H, W, 3), BG, np.float32) + rng.normal(0, 2, (H, W, 3)), 0, 255)
    img = img.astype(np.uint8)
    if label is not None:
        box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (44.0, 16.0), angle))
        cv2.fillPoly(img, [np.intp(box)], COLOURS[label])
        cv2.circle(img, (int(centre[0]), int(centre[1])), 4, (250, 250, 250), -1)
    return img


def save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=95)


def stamp(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S")


def make_folder(
    root: Path, labels=("nut", "washer"), sittings: int = 3, per: int = 4, references: int = 2
) -> Path:
    """Per class ``sittings`` sittings an hour apart, ``per`` photos 10 s apart at one pose."""
    seed = 0
    for li, label in enumerate(labels):
        for s in range(sittings):
            for k in range(per):
                t = T0 + timedelta(hours=s + 10 * li, seconds=10 * k)
                centre = (40 + 20 * k, 40 + 10 * (k % 2))
                seed += 1
                save(frame(label, 50.0 * s, centre, seed), root / label / f"{stamp(t)}.jpg")
    for r in range(references):
        save(frame(None, 0, (0, 0), 1000 + r), root / "reference" / f"ref{r}.jpg")
    return root


def test_labels_pass_one_normaliser_and_bad_ones_name_their_folder(tmp_path: Path) -> None:
    assert normalise_label(" 3001 ", "x") == "3001"
    assert normalise_label("Brick 2x4", "x") == "brick-2x4"
    for bad in ("", "-dash", "a/b", "x" * 65, "é"):
        with pytest.raises(ImportSourceError, match="not a part label"):
            normalise_label(bad, "x")
    src = make_folder(tmp_path / "src", labels=("nut",), sittings=1, per=2)
    save(frame("nut", 0, (50, 50), 7), src / "Bad Label!" / "a.jpg")
    with DatasetStore.open(tmp_path / "data") as store:
        with pytest.raises(ImportSourceError, match=r"folder .*Bad Label!.*not a part label"):
            import_photos(store, src, ImportOptions(new_labels=True))
        assert store.scalar("SELECT COUNT(*) FROM shots") == 0


def test_a_folder_imports_as_grouped_import_shots_and_resumes(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src")
    with DatasetStore.open(tmp_path / "data") as store:
        with pytest.raises(ImportSourceError, match="--new-labels"):
            import_photos(store, src)
        store.upsert_part("nut", "nut")
        store.upsert_part("washer", "washer")
        result = import_photos(store, src)
        assert result.added == 24 and result.boxes_from == "reference frames"
        # NOTE: three sittings per class, an hour apart, each at its own pose: three groups.
        assert result.groups == {"nut": 3, "washer": 3}
        rows = store.query("SELECT * FROM shots ORDER BY origin")
        assert {r["source"] for r in rows} == {"import"}
        assert all(r["run_id"] is None and r["shot_index"] is None for r in rows)
        assert all(r["path"] == f"images/imports/{r['sha256'][:2]}/{r['sha256']}.jpg" for r in rows)
        assert all(r["bbox_w"] and 15 <= r["bbox_w"] <= 60 for r in rows)
        by_sitting: dict[tuple[str, int], set[str]] = {}
        for r in rows:
            taken = datetime.strptime(Path(r["origin"]).stem, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
            by_sitting.setdefault((r["label"], taken.hour), set()).add(r["instance_id"])
        assert all(len(ids) == 1 for ids in by_sitting.values())
        ids = {next(iter(v)) for v in by_sitting.values()}
        assert ids == {f"imp-{result.import_id}-{n}" for n in range(1, 7)}
        inferred = store.query("SELECT inferred, source FROM part_instances")
        assert inferred and all(r["inferred"] == 1 and r["source"] == "import" for r in inferred)
        (row,) = store.query("SELECT * FROM imports")
        assert row["kind"] == "folder" and row["state"] == "completed" and row["done"] == 24
        assert json.loads(row["options"])["time_gap"] == 300.0
        assert store.check().problems() == []

        # A re-run adds nothing; a new photo of a known sitting joins its group, and a new
        # sitting gets the next number, while every earlier id stays as it was.
        before = {r["origin"]: r["instance_id"] for r in rows}
        again = import_photos(store, src)
        assert again.added == 0 and again.already_in == 24 and again.import_id == result.import_id
        t = T0 + timedelta(hours=1, seconds=50)
        save(frame("nut", 50.0, (60, 50), 501), src / "nut" / f"{stamp(t)}.jpg")
        t = T0 + timedelta(hours=5)
        save(frame("nut", 120.0, (60, 50), 502), src / "nut" / f"{stamp(t)}.jpg")
        more = import_photos(store, src)
        assert more.added == 2 and more.new_groups == 1
        after = {r["origin"]: r["instance_id"] for r in store.query("SELECT * FROM shots")}
        assert all(after[o] == i for o, i in before.items())
        sitting_1 = before[next(o for o in before if "nut/20250301100000" in o)]
        assert after[f"nut/{stamp(T0 + timedelta(hours=1, seconds=50))}.jpg"] == sitting_1
        assert after[f"nut/{stamp(T0 + timedelta(hours=5))}.jpg"] == f"imp-{result.import_id}-7"


def test_an_interrupted_import_resumes_where_it_stopped(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", labels=("nut",))
    calls = {"n": 0}

    def stop_after_one_batch(phase: str, done: int, total: int) -> None:
        if phase == "storing":
            calls["n"] += 1
            raise KeyboardInterrupt

    with DatasetStore.open(tmp_path / "data") as store:
        with pytest.raises(KeyboardInterrupt):
            import_photos(store, src, ImportOptions(new_labels=True, batch=5), stop_after_one_batch)
        assert store.scalar("SELECT COUNT(*) FROM shots") == 5
        first = {r["origin"]: r["instance_id"] for r in store.query("SELECT * FROM shots")}
        result = import_photos(store, src, ImportOptions(new_labels=True, batch=5))
        assert result.added == 7 and result.already_in == 5 and result.groups == {"nut": 3}
        rows = {r["origin"]: r["instance_id"] for r in store.query("SELECT * FROM shots")}
        assert all(rows[o] == i for o, i in first.items()) and len(set(rows.values())) == 3
        assert store.scalar("SELECT done FROM imports") == 12


def test_without_times_near_identical_crops_group_and_other_poses_do_not(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for pose in range(2):
        for k in range(3):
            img = frame("3001", 70.0 * pose, (40 + 30 * k, 50 + 5 * k), 10 * pose + k)
            save(img, src / "3001" / f"pose{pose}-{k}.jpg")
    for r in range(2):
        save(frame(None, 0, (0, 0), 900 + r), src / "background" / f"empty{r}.jpg")
    with DatasetStore.open(tmp_path / "data") as store:
        # NOTE: boxes by difference wobble by a few pixels, hence a looser distance here.
        result = import_photos(store, src, ImportOptions(new_labels=True, max_distance=40))
        assert result.groups == {"3001": 2}
        groups: dict[str, set[str]] = {}
        for r in store.query("SELECT origin, instance_id FROM shots"):
            groups.setdefault(r["origin"].split("-")[0], set()).add(r["instance_id"])
        assert len(groups["3001/pose0"]) == 1 and len(groups["3001/pose1"]) == 1
        assert groups["3001/pose0"] != groups["3001/pose1"]


def test_group_photos_keeps_known_ids_and_never_merges_them() -> None:
    a, b = bytes(32), bytes([255] * 32)
    t = T0
    numbers, nxt = group_photos(
        [a, b, a, b, bytes([15] * 32)],
        [None, None, None, t, t + timedelta(seconds=5)],
        [4, 9, None, None, None],
        next_number=10,
    )
    # photo 3 is b-like and 5 s from photo 4: it joins known group 9; photo 2 joins 4.
    assert numbers == [4, 9, 4, 9, 9] and nxt == 10


def test_a_list_with_instances_sessions_and_boxes(tmp_path: Path) -> None:
    photos = tmp_path / "phone"
    rows = []
    for i in range(6):
        save(frame("washer", 30.0 * i, (80, 60), i), photos / f"IMG_{i}.jpg")
        rows.append(
            {"file": f"IMG_{i}.jpg", "label": "Washer", "session": f"s{i // 3}"}
            | {"left": 50, "upper": 40, "right": 110, "lower": 80}
        )
    sheet = photos / "labels.csv"
    with sheet.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    jsonl = photos / "more.jsonl"
    jsonl.write_text(json.dumps({"file": "IMG_0.jpg", "label": "nut", "instance": "n-1"}) + "\n")
    with DatasetStore.open(tmp_path / "data") as store:
        result = import_photos(store, sheet, ImportOptions(new_labels=True))
        assert result.kind == "table" and result.added == 6 and result.groups == {}
        shots = store.query("SELECT * FROM shots ORDER BY origin")
        assert {s["instance_id"] for s in shots} == {"imp-1-session-s0", "imp-1-session-s1"}
        assert all(
            (s["bbox_x"], s["bbox_y"], s["bbox_w"], s["bbox_h"]) == (50, 40, 60, 40) for s in shots
        )
        # The same bytes under another label are stored once: reported, not duplicated.
        second = import_photos(store, jsonl, ImportOptions(new_labels=True))
        assert second.added == 0 and second.duplicates == ["IMG_0.jpg"]
    bad = photos / "bad.csv"
    bad.write_text("file,label\nIMG_1.jpg,ok\nIMG_2.jpg,no/slash\n")
    with (
        DatasetStore.open(tmp_path / "data2") as store,
        pytest.raises(ImportSourceError, match=r"bad\.csv row 3: label 'no/slash'"),
    ):
        import_photos(store, bad, ImportOptions(new_labels=True))


def test_another_rigs_snapshot_keeps_prefixed_instances_and_splits(tmp_path: Path) -> None:
    from capture.snapshots.build import create_snapshot, snapshot_dir
    from capture.snapshots.filter import SnapshotFilter
    from capture.snapshots.splits import SplitRules
    from rig.config import Settings

    src = make_folder(tmp_path / "src")
    with DatasetStore.open(tmp_path / "rig-a") as a:
        import_photos(a, src, ImportOptions(new_labels=True))
        manifest = create_snapshot(
            a, Settings(), SnapshotFilter(), SplitRules(), formats=("folder",)
        )
        snap = snapshot_dir(a.data_dir, manifest["id"])
        splits_a = {
            r["instance_id"]: r["split"]
            for r in a.query(
                "SELECT s.instance_id, ss.split FROM shots s JOIN snapshot_shots ss "
                "ON ss.shot_id = s.id"
            )
        }
    with DatasetStore.open(tmp_path / "rig-b") as b:
        with pytest.raises(ImportSourceError, match="--rig-id"):
            import_photos(b, snap, ImportOptions(new_labels=True))
        result = import_photos(b, snap, ImportOptions(new_labels=True, rig_id="rig-a"))
        assert result.kind == "snapshot" and result.added == 24 and result.groups == {}
        rows = b.query("SELECT instance_id, import_split FROM shots")
        assert {r["instance_id"] for r in rows} == {f"rig-a:{i}" for i in splits_a}
        assert all(r["import_split"] == splits_a[r["instance_id"][6:]] for r in rows)
        ours = create_snapshot(b, Settings(), SnapshotFilter(), SplitRules(seed=5), ("folder",))
        got = {
            r["instance_id"]: r["split"]
            for r in b.query(
                "SELECT s.instance_id, ss.split FROM shots s JOIN snapshot_shots ss "
                "ON ss.shot_id = s.id WHERE ss.snapshot_id = ?",
                (ours["id"],),
            )
        }
        assert all(got[f"rig-a:{i}"] == s for i, s in splits_a.items())


def test_the_cli_imports_with_a_progress_bar_and_reports_groups(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from web.cli import app

    src = make_folder(tmp_path / "src", labels=("nut",))
    data = tmp_path / "data"
    runner = CliRunner()
    refused = runner.invoke(app, ["dataset", "import", str(src), "--data", str(data)])
    assert refused.exit_code == 2 and "--new-labels" in refused.output
    done = runner.invoke(app, ["dataset", "import", str(src), "--data", str(data), "--new-labels"])
    assert done.exit_code == 0, done.output
    assert "12 photo(s) added" in done.output and "inferred groups" in done.output
    assert "nut" in done.output and "3" in done.output


def test_real_photos_import_with_their_boxes_and_group_by_time(
    tmp_path: Path, shared_data: Path
) -> None:
    """A subset of the real Pi photos (linked, never copied into the project)."""
    src = tmp_path / "belt"
    boxes = list(csv.DictReader((shared_data / "boxes.csv").open()))
    chosen = [r for r in boxes if r["file"].split("/")[1].startswith("20210516")][:40]
    for r in chosen:
        target = src / r["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(shared_data / r["file"], target)
    (src / "reference").mkdir()
    for ref in (shared_data / "reference").iterdir():
        os.symlink(ref, src / "reference" / ref.name)
    with (src / "boxes.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(chosen[0]))
        writer.writeheader()
        writer.writerows(chosen)
    with DatasetStore.open(tmp_path / "data") as store:
        result = import_photos(store, src, ImportOptions(new_labels=True))
        assert result.added == len(chosen) and result.boxes_from == "given boxes"
        # NOTE: photos of one class on one afternoon come in sittings minutes apart.
        for label, n in result.groups.items():
            count = sum(1 for r in chosen if r["file"].startswith(label + "/"))
            assert 1 <= n < count
        stored = store.query("SELECT * FROM shots")
        assert all(s["width"] == 640 and s["height"] == 480 for s in stored)
        assert all(s["captured_at"].startswith("2021-05-16") for s in stored)
        assert all(not Path(store.path_of(s["path"])).is_symlink() for s in stored)


def test_a_snapshot_of_imports_says_it_is_grouped_by_inferred_group(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from web.cli import app

    src = make_folder(tmp_path / "src", sittings=4)
    data = tmp_path / "data"
    with DatasetStore.open(data) as store:
        import_photos(store, src, ImportOptions(new_labels=True))
    made = CliRunner().invoke(
        app, ["dataset", "snapshot", "--data", str(data), "--format", "folder"], terminal_width=200
    )
    assert made.exit_code == 0, made.output
    assert made.output.splitlines()[0].startswith("near-duplicate rate across splits:")
    assert "grouped by inferred group" in made.output
    report = json.loads((data / "snapshots" / "snap-0001" / "report.json").read_text())
    assert report["split"]["inferred_groups"] == 8
    assert 0.0 <= report["duplicates"]["held_out_rate"] <= 1.0
    assert (
        "grouped by inferred group" in (data / "snapshots" / "snap-0001" / "report.md").read_text()
    )


def test_training_on_a_plain_photo_folder_says_how_to_import_it(tmp_path: Path) -> None:
    from classify.train_data import open_snapshot
    from rig.errors import NotFound

    src = make_folder(tmp_path / "photos", labels=("nut",), sittings=1, per=1)
    with pytest.raises(NotFound, match=r"partrig dataset import .*photos --new-labels"):
        open_snapshot(src)


def test_the_cli_refuses_while_another_command_owns_the_data_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rig.owner import DataFolderLock
    from web.cli import app

    src = make_folder(tmp_path / "src", labels=("nut",), sittings=1, per=1)
    data = tmp_path / "data"
    data.mkdir()
    with DataFolderLock(data, "capture"):
        result = CliRunner().invoke(
            app,
            ["dataset", "import", str(src), "--data", str(data), "--new-labels"],
            env={"COLUMNS": "300"},
        )
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert f"partrig capture (pid {os.getpid()})" in flat and "dataset import" in flat
    with DatasetStore.open(data) as store:
        assert store.scalar("SELECT COUNT(*) FROM shots") == 0
