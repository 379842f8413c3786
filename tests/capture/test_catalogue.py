"""The part catalogue: attributes per part and per shot, CSV import, undo, filters."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from capture.catalogue.csv_import import (
    CatalogueCsvError,
    catalogue_csv,
    import_catalogue,
    parse_catalogue_csv,
    read_catalogue_csv,
)
from capture.store import DatasetStore
from capture.store.catalogue import (
    Catalogue,
    attribute_names,
    attributes_for_label,
    catalogue,
    parse_value,
    shot_attributes,
)
from capture.store.measure_schema import measurement_row, record_measurement
from rig.errors import NotFound, QueryError, RunStateError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from snapshot_data import add_shots

PARTS_CSV = """label,name,category,colour,thread,nominal_length_mm
m4-screw,M4 pan head,screw,silver,M4,10
Brick 2x4 Red,,brick,red,,
"""


@pytest.fixture
def store(tmp_path):
    with DatasetStore.open(tmp_path / "data") as s:
        yield s


def test_values_that_read_as_numbers_are_numbers_and_blank_is_unset():
    assert parse_value("10") == 10.0 and parse_value(" 9.5 ") == 9.5 and parse_value(8) == 8.0
    assert parse_value("M4") == "M4" and parse_value("  ") is None and parse_value(None) is None
    with pytest.raises(QueryError, match="not a finite number"):
        parse_value("nan")
    with pytest.raises(QueryError, match="at most 200"):
        parse_value("x" * 201)


def test_a_csv_parts_list_fills_the_catalogue_and_round_trips(store):
    rows = parse_catalogue_csv(PARTS_CSV)
    done = import_catalogue(store, rows)
    assert done.parts == 2 and done.new_labels == ["brick-2x4-red", "m4-screw"]
    assert done.attributes == ["category", "colour", "nominal_length_mm", "thread"]
    conn = store.db.conn
    assert attributes_for_label(conn, "m4-screw") == {
        "category": "screw", "colour": "silver", "thread": "M4", "nominal_length_mm": 10.0,
    }  # fmt: skip
    assert attributes_for_label(conn, "brick-2x4-red") == {"category": "brick", "colour": "red"}
    assert catalogue(conn)["m4-screw"]["name"] == "M4 pan head"
    assert attribute_names(conn)[:2] == ["category", "colour"]
    assert attributes_for_label(conn, "no-such-part") == {}
    # written back out, the list reads back the same
    again = parse_catalogue_csv(catalogue_csv(catalogue(conn)))
    assert {r.label: r.attributes for r in again} == {r.label: r.attributes for r in rows}


def test_csv_errors_name_every_row_and_column_and_nothing_is_imported(store, tmp_path):
    bad = (
        "label,colour,Head Type,nominal_length_mm,colour\n"
        "ok-part,red,pan,8,\n"
        "bad label!,red,pan,8,\n"
        "ok-part,blue,,,\n"
        "m4,red,pan,inf,\n"
        "m5,red,pan,8,,extra\n"
    )
    with pytest.raises(CatalogueCsvError) as err:
        parse_catalogue_csv(bad, "parts.csv")
    text = str(err.value)
    assert text.startswith("parts.csv: ") and "nothing was imported" in text
    assert "row 1, column 3 ('Head Type')" in text
    assert "row 1: column 'colour' appears more than once" in text
    assert "row 3, column label" in text
    assert "row 4, column label: 'ok-part' is also on row 2" in text
    assert "row 5, column nominal_length_mm" in text and "not a finite number" in text
    assert "row 6: 6 cells but the header names 5 columns" in text
    with pytest.raises(CatalogueCsvError, match="no 'label' column"):
        parse_catalogue_csv("part,colour\nx,red\n")
    with pytest.raises(CatalogueCsvError, match="lists no parts"):
        parse_catalogue_csv("label,colour\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("label,colour\nx,gr\xfcn\n".encode("latin-1"))
    with pytest.raises(CatalogueCsvError, match="not UTF-8"):
        read_catalogue_csv(latin)
    with pytest.raises(QueryError, match="cannot read the parts list"):
        read_catalogue_csv(tmp_path / "missing.csv")
    assert catalogue(store.db.conn) == {}


def test_capture_keeps_the_catalogue_s_attributes(store):
    Catalogue(store).set_part("m4-screw", {"category": "screw", "thread": "M4"}, name="M4")
    # what the run engine does for every plan part at the start of a run
    store.upsert_part(label="m4-screw", name="m4-screw")
    assert attributes_for_label(store.db.conn, "m4-screw") == {"category": "screw", "thread": "M4"}
    store.upsert_part("m4-screw", meta={"category": "bolt"})
    assert attributes_for_label(store.db.conn, "m4-screw") == {"category": "bolt"}


def test_a_shot_inherits_its_part_s_attributes_and_an_override_is_undone_exactly(store):
    ids = add_shots(store, labels=("nut",), instances=1, angles=3, backgrounds=(1,))
    cat = Catalogue(store)
    cat.set_part("nut", {"category": "nut", "finish": "zinc", "thread": "M4"})
    conn = store.db.conn
    assert shot_attributes(conn, ids)[ids[0]]["finish"] == "zinc"

    done = cat.set_shot_attribute(ids[:2], "finish", "black", "ann")
    assert done["action"]["kind"] == "set_attribute"
    eff = shot_attributes(conn, ids)
    assert eff[ids[0]]["finish"] == "black" and eff[ids[1]]["finish"] == "black"
    assert eff[ids[2]]["finish"] == "zinc" and eff[ids[0]]["thread"] == "M4"
    edits = [e for e in store.shot_edits(ids[0]) if e["action"] == "set_attribute"]
    assert [(e["field"], e["old"], e["new"], e["who"]) for e in edits] == [
        ("finish", None, "black", "ann")
    ]
    assert store.label_counts("ann")["undo"] == 1

    store.label_undo("ann")  # the labelling station's undo takes it back
    assert shot_attributes(conn, ids)[ids[0]]["finish"] == "zinc"
    assert Catalogue(store).shot_attributes(ids[0])["overrides"] == {}
    store.label_redo("ann")
    assert shot_attributes(conn, ids)[ids[1]]["finish"] == "black"
    log = [(e["old"], e["new"]) for e in store.shot_edits(ids[1]) if e["field"] == "finish"]
    assert log == [(None, "black"), ("black", None), (None, "black")]

    # someone else changes it after: the undo refuses rather than guess
    cat.set_shot_attribute([ids[1]], "finish", "brass", "bob")
    with pytest.raises(RunStateError, match="changed after action"):
        store.label_undo("ann")
    assert shot_attributes(conn, ids)[ids[1]]["finish"] == "brass"
    # a number typed as text is a number; blank removes the override
    cat.set_shot_attribute([ids[2]], "nominal_length_mm", "12", "bob")
    assert shot_attributes(conn, [ids[2]])[ids[2]]["nominal_length_mm"] == 12.0
    cat.set_shot_attribute([ids[2]], "nominal_length_mm", "", "bob")
    assert "nominal_length_mm" not in shot_attributes(conn, [ids[2]])[ids[2]]
    with pytest.raises(QueryError, match="not valid"):
        cat.set_shot_attribute([ids[2]], "Bad Name", "x", "bob")
    with pytest.raises(NotFound):
        cat.set_shot_attribute([99999], "finish", "x", "bob")


def test_shots_filter_by_attribute_and_by_measured_size(store):
    ids = add_shots(store, labels=("nut", "plate 1x2"), instances=1, angles=2, backgrounds=(1,))
    cat = Catalogue(store)
    cat.set_part("nut", {"category": "nut", "colour": "silver"})
    cat.set_part("plate 1x2", {"category": "plate", "colour": "green"})
    nuts = [r["id"] for r in store.query("SELECT id FROM shots WHERE label = 'nut'")]
    cat.set_shot_attribute([nuts[0]], "colour", "black", "ann")
    lengths = dict(zip(ids, (8.1, 10.0, 12.2, 16.0), strict=True))
    with store.transaction() as conn:
        for shot_id, length in lengths.items():
            row = measurement_row(shot_id, "measured", {"length_mm": length, "width_mm": 4.0}, "t")
            record_measurement(conn, row)

    def ids_of(**kw):
        return sorted(s["id"] for s in store.query_shots(limit=100, **kw).items)

    assert ids_of(attributes={"category": "nut"}) == sorted(nuts)
    assert ids_of(attributes={"colour": "silver"}) == [nuts[1]]
    assert ids_of(attributes={"colour": "black", "category": "nut"}) == [nuts[0]]
    assert ids_of(min_length_mm=9.5, max_length_mm=12.5) == sorted(ids[1:3])
    assert ids_of(min_length_mm=15) == [ids[3]]
    assert ids_of(max_width_mm=3.9) == []
    with pytest.raises(QueryError, match="not valid"):
        store.query_shots(attributes={"no such": "x"})


def test_every_snapshot_format_carries_the_attributes_and_the_sizes(tmp_path):
    import csv
    import io
    import json
    import tarfile

    from capture.snapshots.build import create_snapshot, snapshot_dir
    from capture.snapshots.filter import SnapshotFilter
    from capture.snapshots.splits import SplitRules
    from rig.config import Settings

    data = tmp_path / "data"
    with DatasetStore.open(data) as store:
        add_shots(store, labels=("nut", "plate 1x2"), instances=3, angles=2)
        cat = Catalogue(store)
        cat.set_part("nut", {"category": "nut", "thread": "M4", "nominal_length_mm": 3.2})
        cat.set_part("plate 1x2", {"category": "plate", "colour": "green", "thread": 4})
        nuts = [r["id"] for r in store.query("SELECT id FROM shots WHERE label = 'nut'")]
        cat.set_shot_attribute([nuts[0]], "colour", "black", "ann")
        # NOTE: every split gets a measured shot: Hugging Face refuses a column that is null
        # throughout one split's metadata.jsonl and a number in another's (docs/datasets.md)
        with store.transaction() as conn:
            for shot_id in nuts[1:]:
                row = measurement_row(shot_id, "measured", {"length_mm": 9.9}, "t")
                record_measurement(conn, row)
        manifest = create_snapshot(store, Settings(), SnapshotFilter(), SplitRules())
    root = snapshot_dir(data, manifest["id"])
    names = ["category", "colour", "nominal_length_mm", "thread"]
    want_nut = {"category": "nut", "colour": None, "nominal_length_mm": 3.2, "thread": "M4"}

    def want(shot_id: int, label: str) -> dict:
        if label == "nut":
            return dict(want_nut, colour="black") if shot_id == nuts[0] else want_nut
        # NOTE: "thread" is a word for the nut, so the plate's 4 is written as "4" too
        return {"category": "plate", "colour": "green", "nominal_length_mm": None, "thread": "4"}

    classes = {c["label"]: c["attributes"] for c in manifest["classes"]}
    assert classes["nut"] == {"category": "nut", "nominal_length_mm": 3.2, "thread": "M4"}
    assert classes["plate 1x2"] == {"category": "plate", "colour": "green", "thread": "4"}

    lines = [json.loads(x) for p in (root / "folder").rglob("metadata.jsonl")
             for x in p.read_text().splitlines()]  # fmt: skip
    assert len(lines) == 24
    for m in lines:
        assert list(m["attributes"]) == names
        assert m["attributes"] == want(m["shot_id"], m["label"])
    assert {m["length_mm"] for m in lines if m["label"] == "nut"} == {None, 9.9}

    rows = list(csv.DictReader(io.StringIO((root / "csv" / "shots.csv").read_text())))
    for row in rows:
        expected = want(int(row["shot_id"]), row["label"])
        for n in names:
            cell = row[f"attr_{n}"]
            assert cell == ("" if expected[n] is None else str(expected[n]))

    coco = json.loads((root / "coco" / "train.json").read_text())
    assert {c["name"]: c["attributes"] for c in coco["categories"]} == classes
    images = {i["id"]: i for i in coco["images"]}
    for ann in coco["annotations"]:
        label = "nut" if ann["category_id"] == 1 else "plate 1x2"
        assert ann["attributes"] == want(ann["image_id"], label), images[ann["image_id"]]

    seen = 0
    for shard in (root / "webdataset").glob("*.tar"):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                    assert meta["attributes"] == want(meta["id"], meta["label"])
                    seen += 1
    assert seen == 24

    # the one schema loads in Hugging Face's imagefolder, attributes as a column of structs
    from datasets import load_dataset

    ds = load_dataset("imagefolder", data_dir=str(root / "folder"), cache_dir=str(tmp_path / "hf"))
    for split in ds.values():
        for row in split:
            assert row["attributes"] == want(row["shot_id"], row["label"])


def test_the_cli_imports_a_parts_list_names_bad_cells_and_re_measures(tmp_path):
    from typer.testing import CliRunner

    from capture.dataset_cli import dataset_app

    data = tmp_path / "data"
    DatasetStore.open(data).close()
    good, bad = tmp_path / "parts.csv", tmp_path / "bad.csv"
    good.write_text(PARTS_CSV)
    bad.write_text("label,colour\nx,red\n,blue\n")
    runner = CliRunner()
    done = runner.invoke(dataset_app, ["catalogue", "import", str(good), "--data", str(data)])
    assert done.exit_code == 0, done.output
    assert "2 part(s) imported" in done.output and "brick-2x4-red" in done.output
    refused = runner.invoke(dataset_app, ["catalogue", "import", str(bad), "--data", str(data)])
    assert refused.exit_code == 2 and "row 3, column label" in refused.output
    out = runner.invoke(dataset_app, ["catalogue", "export", "--data", str(data)])
    assert out.exit_code == 0 and out.output.startswith(
        "label,name,category,colour,nominal_length_mm,thread\n"
    )
    shown = runner.invoke(dataset_app, ["catalogue", "show", "--data", str(data)])
    assert shown.exit_code == 0 and "m4-screw" in shown.output
    unclear = runner.invoke(dataset_app, ["measure", "--data", str(data)])
    assert unclear.exit_code == 2 and "--run ID for one run, or --all" in unclear.output
    measured = runner.invoke(dataset_app, ["measure", "--all", "--data", str(data)])
    assert measured.exit_code == 0 and "0 measured" in measured.output


def test_a_plan_s_attributes_join_the_catalogue_and_a_run_keeps_the_rest(tmp_path):
    import threading

    from capture.runs.run import CaptureRun
    from capture.runs.state import RunState
    from rig.config import apply_sim, parse_settings
    from rig.errors import PlanError
    from rig.rig import open_rig

    data = tmp_path / "data"
    settings = apply_sim(parse_settings({
        "camera": {"driver": "sim", "still_size": [320, 240]},
        "simulator": {"time_scale": 0}, "data": {"dir": str(data)},
    }))  # fmt: skip
    plan = """
name = "attrs"
backgrounds = [1]
angles_per_rev = 1
lights = [1.0]
settle_s = 0.1
parts = [{ label = "brick-2x4-red", instance = "a", attributes = { colour = "red", studs = 8 } }]
"""
    store = DatasetStore.open(data)
    Catalogue(store).set_part("brick-2x4-red", {"category": "brick", "colour": "pink"}, name="2x4")
    with open_rig(settings) as rig:
        run = CaptureRun.create(store, rig, plan, settings=settings, sleep=lambda s: None)
        run.subscribe(lambda e: e.kind == "state" and e.data["state"] == "awaiting_operator"
                      and threading.Thread(target=run.answer_prompt).start())  # fmt: skip
        run.start()
        assert run.wait(120) is RunState.COMPLETED, run.reason
    # the plan's colour wins, its new attribute is added, the catalogue's category and name stay
    assert attributes_for_label(store.db.conn, "brick-2x4-red") == {
        "category": "brick", "colour": "red", "studs": 8.0,
    }  # fmt: skip
    assert catalogue(store.db.conn)["brick-2x4-red"]["name"] == "2x4"
    bad = plan.replace("studs = 8", "label = 'x'")
    with pytest.raises(PlanError, match="catalogue column"):
        CaptureRun.create(store, None, bad, settings=settings)  # type: ignore[arg-type]
    store.close()
