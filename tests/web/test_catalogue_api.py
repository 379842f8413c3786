"""The catalogue over HTTP: parts and attributes, CSV in and out, a shot's size and attributes on
its page, the undo shared with the labelling station, and the browse filter by size and attribute.
"""

from __future__ import annotations

from typing import Any

from web_helpers import OP, VIEW, add_shots

from capture.store.measure_schema import measurement_row, record_measurement

CSV = (
    "label,name,category,colour,finish\nbrick-2x4-red,Brick 2x4,brick,red,\nnut,,nut,silver,zinc\n"
)


def measure(store: Any, shot_id: int, length: float | None) -> None:
    sizes = None if length is None else {"length_mm": length, "width_mm": 5.0, "area_mm2": 40.0,
                                         "mm_per_px": 0.16, "calibrated": True}  # fmt: skip
    status = "measured" if length is not None else "marker_missing"
    with store.transaction() as conn:
        record_measurement(conn, measurement_row(shot_id, status, sizes, "2026-12-03T10:00:00"))


def test_a_parts_list_imported_on_the_page_fills_the_catalogue(client, store):
    r = client.post("/api/dataset/catalogue/import", content=CSV.encode(), headers=OP)
    assert r.status_code == 200, r.text
    assert r.json() == {"parts": 2, "new_labels": ["brick-2x4-red", "nut"],
                        "attributes": ["category", "colour", "finish"]}  # fmt: skip
    cat = client.get("/api/dataset/catalogue", headers=VIEW).json()
    assert cat["parts"]["nut"]["attributes"] == {"category": "nut", "colour": "silver",
                                                 "finish": "zinc"}  # fmt: skip
    assert cat["attribute_names"] == ["category", "colour", "finish"]
    text = client.get("/api/dataset/catalogue.csv", headers=VIEW).text
    assert text.splitlines()[0] == "label,name,category,colour,finish"
    bad = client.post("/api/dataset/catalogue/import", content=b"label,colour\n,red\n", headers=OP)
    assert bad.status_code in (400, 422) and "row 2, column label" in bad.text
    assert client.post("/api/dataset/catalogue/import", content=CSV.encode(),
                       headers=VIEW).status_code == 403  # fmt: skip


def test_a_part_outside_the_catalogue_needs_an_explicit_confirmation(client, store):
    store.upsert_part("nut")
    r = client.put("/api/dataset/catalogue/M4 Screw", json={"attributes": {"category": "screw"}},
                   headers=OP)  # fmt: skip
    assert r.status_code == 409 and "not in the parts catalogue" in r.text
    r = client.put("/api/dataset/catalogue/M4 Screw", headers=OP,
                   json={"attributes": {"category": "screw", "nominal_length_mm": "10"},
                         "confirm_new": True})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "m4-screw"
    assert r.json()["attributes"] == {"category": "screw", "nominal_length_mm": 10.0}
    r = client.put("/api/dataset/catalogue/nut", json={"attributes": {"Bad Name": "x"}}, headers=OP)
    assert r.status_code in (400, 422) and "not valid" in r.text


def test_the_shot_page_shows_size_and_attributes_and_an_edit_is_undone_like_a_label(client, store):
    a, b = add_shots(store, ["nut"], [1], per=2)
    client.put("/api/dataset/catalogue/nut", json={"attributes": {"finish": "zinc"}}, headers=OP)
    measure(store, a, 10.04)
    measure(store, b, None)
    shot = client.get(f"/api/dataset/shots/{a}", headers=VIEW).json()
    assert shot["measurement"]["status"] == "measured"
    assert shot["measurement"]["length_mm"] == 10.04 and shot["measurement"]["mm_per_px"] == 0.16
    assert shot["attributes"]["attributes"] == {"finish": "zinc"}
    flagged = client.get(f"/api/dataset/shots/{b}", headers=VIEW).json()["measurement"]
    assert flagged["status"] == "marker_missing" and flagged["length_mm"] is None

    r = client.post(f"/api/dataset/shots/{a}/attributes", json={"name": "finish", "value": "black"},
                    headers=OP)  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["attributes"]["finish"] == "black" and body["part"]["finish"] == "zinc"
    assert body["counts"]["undo"] == 1
    edits = client.get(f"/api/dataset/shots/{a}", headers=VIEW).json()["edits"]
    assert [(e["action"], e["field"], e["old"], e["new"]) for e in edits] == [
        ("set_attribute", "finish", None, "black")
    ]
    undo = client.post("/api/label/undo", headers=OP)
    assert undo.status_code == 200, undo.text
    assert undo.json()["shots"] == [a] and undo.json()["action"]["state"] == "undone"
    assert client.get(f"/api/dataset/shots/{a}/attributes", headers=VIEW).json()["overrides"] == {}
    assert client.post("/api/label/redo", headers=OP).status_code == 200
    assert store.query_shots(attributes={"finish": "black"}).items[0]["id"] == a
    viewer = client.post(f"/api/dataset/shots/{a}/attributes", json={"name": "finish"},
                         headers=VIEW)  # fmt: skip
    assert viewer.status_code == 403


def test_the_browse_filter_by_size_and_attribute(client, store):
    ids = add_shots(store, ["nut", "brick-2x4-red"], [1], per=2)
    client.post("/api/dataset/catalogue/import", content=CSV.encode(), headers=OP)
    for shot_id, length in zip(ids, (8.0, 10.0, 12.0, None), strict=True):
        measure(store, shot_id, length)

    def found(query: str) -> list[int]:
        r = client.get(f"/api/dataset/shots?{query}", headers=VIEW)
        assert r.status_code == 200, r.text
        return sorted(s["id"] for s in r.json()["items"])

    nuts = sorted(s["id"] for s in store.query_shots(label="nut").items)
    assert found("attr=category=nut") == nuts
    assert found("attr=colour=red&attr=category=brick") == sorted(set(ids) - set(nuts))
    assert found("min_length_mm=9&max_length_mm=12.5") == sorted(ids[1:3])
    assert found("min_length_mm=9&attr=category=nut") == [i for i in nuts if i == ids[1]]
    assert client.get("/api/dataset/shots?attr=colour", headers=VIEW).status_code in (400, 422)
    assert client.get("/api/dataset/shots?min_length_mm=-1", headers=VIEW).status_code == 422
