"""The labelling station over HTTP: the queue (least certain first, resuming where a person left
off), accept, choose, discard, bulk actions, undo and redo restoring exactly, the field-level
``shot_edits`` log, the one label normaliser with its new-label confirmation, and pre-labelling
a bag run with the active model.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from web_helpers import OP, VIEW, add_shots, jpeg

from capture.store.sorting import DecisionRecord
from web.security import key_name

WHO = key_name(OP["X-Api-Key"])


def review_items(store: Any, margins: list[float]) -> None:
    """Sorter review items whose top-2 differ by each margin (crops 1024 px wide)."""
    for m in margins:
        store.add_decision(
            DecisionRecord(
                label="brick-2x4-red",
                confidence=0.5 + m / 2,
                bin=0,
                reason="uncertain",
                top_k=[("brick-2x4-red", 0.5 + m / 2), ("brick-2x2-red", 0.5 - m / 2)],
                crop_jpeg=jpeg(1024, 768, value=90),
                crop_bbox=(100, 120, 300, 200),
                review=True,
            )
        )
    for label in ("brick-2x4-red", "brick-2x2-red"):
        store.upsert_part(label)


def queue(client: Any) -> dict[str, Any]:
    r = client.get("/api/label/queue", headers=OP)
    assert r.status_code == 200, r.text
    return r.json()


def post(client: Any, path: str, body: Any = None, status: int = 200) -> dict[str, Any]:
    r = client.post(f"/api/label/{path}", json=body, headers=OP)
    assert r.status_code == status, r.text
    return r.json()


def live_shots(store: Any) -> list[tuple[int, str]]:
    return [(s["id"], s["label"]) for s in reversed(store.query_shots().items)]


def test_the_queue_puts_the_least_certain_first_with_top_k_box_and_counts(client, store):
    review_items(store, [0.6, 0.05, 0.3])
    q = queue(client)
    assert [round(i["margin"], 2) for i in q["items"]] == [0.05, 0.3, 0.6]
    first = q["items"][0]
    assert first["kind"] == "review" and first["state"] == "open" and first["label"] is None
    assert first["top_k"][0][0] == "brick-2x4-red" and first["box"] == [100, 120, 300, 200]
    assert q["counts"] == {"open": 3, "accepted": 0, "discarded": 0, "undo": 0, "redo": 0}
    assert {"brick-2x4-red", "brick-2x2-red"} <= set(q["labels"]) and q["start"] == 0
    image = client.get(f"/api/label/items/{first['id']}/image", headers=VIEW)
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    assert client.get(f"/api/label/items/{first['id']}/mask", headers=VIEW).status_code == 404


def test_accept_makes_a_sorter_shot_and_undo_redo_restore_it_exactly(client, store):
    review_items(store, [0.1])
    (item,) = queue(client)["items"]
    ans = post(client, "accept", {"ids": [item["id"]], "label": "brick-2x2-red"})
    assert ans["items"][0]["state"] == "accepted" and ans["items"][0]["label"] == "brick-2x2-red"
    assert ans["counts"]["open"] == 0 and ans["counts"]["accepted"] == 1
    assert ans["counts"]["undo"] == 1
    shot_id = ans["items"][0]["shot_id"]
    assert live_shots(store) == [(shot_id, "brick-2x2-red")]
    assert store.get_review_item(item["review_item_id"])["state"] == "labelled"
    undone = post(client, "undo")
    assert undone["items"][0]["state"] == "open" and undone["counts"]["redo"] == 1
    assert live_shots(store) == [] and store.review_counts()["open"] == 1
    review = store.get_review_item(item["review_item_id"])
    assert review["label"] is None and review["shot_id"] is None
    assert (store.data_dir / "trash" / store.get_shot(shot_id)["path"]).exists()
    redone = post(client, "redo")
    assert redone["items"][0]["state"] == "accepted"
    assert live_shots(store) == [(shot_id, "brick-2x2-red")]
    assert post(client, "redo", status=409)["detail"].startswith("nothing to redo")
    edits = [(e["action"], e["field"]) for e in store.shot_edits(shot_id)]
    assert edits == [("accept", "label"), ("delete", "deleted_at"), ("restore", "deleted_at")]
    assert store.check().ok


def test_undo_of_a_relabel_restores_the_old_label_and_logs_each_field(client, store):
    (shot_id,) = add_shots(store, ["brick-2x4-red"], [1], per=1)
    store.upsert_part("brick-2x2-red")
    store.enqueue_shots([(shot_id, [("brick-2x4-red", 0.55), ("brick-2x2-red", 0.45)], None)])
    (item,) = queue(client)["items"]
    assert item["kind"] == "shot" and item["label"] == "brick-2x4-red" and item["has_mask"]
    assert client.get(f"/api/label/items/{item['id']}/mask", headers=VIEW).status_code == 200
    post(client, "accept", {"ids": [item["id"]], "label": "brick-2x2-red"})
    assert store.get_shot(shot_id)["label"] == "brick-2x2-red"
    post(client, "undo")
    assert store.get_shot(shot_id)["label"] == "brick-2x4-red"
    assert queue(client)["items"][0]["state"] == "open"
    log = [(e["action"], e["field"], e["old"], e["new"]) for e in store.shot_edits(shot_id)]
    assert log == [
        ("accept", "label", "brick-2x4-red", "brick-2x2-red"),
        ("relabel", "label", "brick-2x2-red", "brick-2x4-red"),
    ]


def test_discard_moves_a_shot_to_the_trash_and_undo_brings_its_files_back(client, store):
    (shot_id,) = add_shots(store, ["brick-2x4-red"], [1], per=1)
    store.enqueue_shots([(shot_id, [("brick-2x4-red", 0.9)], None)])
    (item,) = queue(client)["items"]
    shot = store.get_shot(shot_id)
    post(client, "discard", {"ids": [item["id"]]})
    assert live_shots(store) == [] and not (store.data_dir / shot["path"]).exists()
    assert client.get(f"/api/label/items/{item['id']}/image", headers=VIEW).status_code == 200
    post(client, "undo")
    assert live_shots(store) == [(shot_id, "brick-2x4-red")]
    assert (store.data_dir / shot["path"]).exists() and (
        store.data_dir / shot["mask_path"]
    ).exists()
    assert store.check().ok


def test_a_bulk_accept_is_one_action_and_one_undo_takes_it_all_back(client, store):
    review_items(store, [0.7, 0.8, 0.9])
    ids = [i["id"] for i in queue(client)["items"]]
    ans = post(client, "accept", {"ids": ids})
    assert [i["label"] for i in ans["items"]] == ["brick-2x4-red"] * 3
    assert store.review_counts()["labelled"] == 3 and len(live_shots(store)) == 3
    post(client, "undo")
    assert store.review_counts() == {"open": 3, "labelled": 0, "discarded": 0}
    assert live_shots(store) == [] and queue(client)["counts"]["open"] == 3


def test_a_new_action_drops_the_redo_and_undo_refuses_when_an_item_changed(client, store):
    review_items(store, [0.1, 0.2])
    a, b = (i["id"] for i in queue(client)["items"])
    post(client, "discard", {"ids": [a]})
    post(client, "undo")
    post(client, "accept", {"ids": [b]})
    assert queue(client)["counts"]["redo"] == 0
    post(client, "redo", status=409)
    # someone resolves b on the review page meanwhile: undo would not restore exactly
    store.db.execute("UPDATE label_queue SET state = 'discarded' WHERE id = ?", (b,))
    store.db.conn.commit()
    assert "changed" in post(client, "undo", status=409)["detail"]


def test_labels_are_normalised_and_a_new_one_needs_an_explicit_confirmation(client, store):
    review_items(store, [0.1])
    (item,) = queue(client)["items"]
    refused = post(client, "accept", {"ids": [item["id"]], "label": "Hex Nut M4"}, status=409)
    assert "'hex-nut-m4' is not in the parts catalogue" in refused["detail"]
    assert store.review_counts()["open"] == 1
    bad = post(client, "accept", {"ids": [item["id"]], "label": "Banana Split!"}, status=400)
    assert "not a part label" in bad["detail"]
    ok = post(client, "accept", {"ids": [item["id"]], "label": "Hex Nut M4", "confirm_new": True})
    assert ok["items"][0]["label"] == "hex-nut-m4"
    assert "hex-nut-m4" in queue(client)["labels"]


def test_the_queue_resumes_where_the_person_left_off(client, store):
    review_items(store, [0.1, 0.2, 0.3, 0.4])
    ids = [i["id"] for i in queue(client)["items"]]
    r = client.put("/api/label/cursor", json={"queue_id": ids[2]}, headers=OP)
    assert r.status_code == 204
    assert queue(client)["start"] == 2
    post(client, "accept", {"ids": [ids[2]]})
    # the cursor's item is done: the next open one after it
    q = queue(client)
    assert q["items"][q["start"]]["id"] == ids[3]


def test_viewers_see_the_queue_but_only_operators_label(client, store):
    review_items(store, [0.1])
    (item,) = queue(client)["items"]
    assert client.get("/api/label/queue", headers=VIEW).status_code == 200
    r = client.post("/api/label/accept", json={"ids": [item["id"]]}, headers=VIEW)
    assert r.status_code == 403
    assert client.post("/api/label/undo").status_code == 401
    assert client.post("/api/label/accept", json={"ids": []}, headers=OP).status_code == 422
    assert client.get("/api/label/items/999/image", headers=VIEW).status_code == 404


def test_the_old_review_page_and_the_station_share_one_queue(client, store):
    review_items(store, [0.1, 0.2])
    a, b = queue(client)["items"]
    r = client.post(f"/api/review/{a['review_item_id']}/discard", headers=OP)
    assert r.status_code == 200
    q = queue(client)
    assert [i["id"] for i in q["items"]] == [b["id"]] and q["counts"]["discarded"] == 1
    # the review page's discard is an action of the station's history: undo brings it back
    assert post(client, "undo")["items"][0]["id"] == a["id"]
    assert store.get_review_item(a["review_item_id"])["state"] == "open"
    # a new sorter item shows in the counts another person's page polls
    review_items(store, [0.5])
    counts = client.get("/api/label/counts", headers=VIEW).json()
    assert counts["open"] == 3 and counts["undo"] == 0


def test_prelabel_queues_a_bag_runs_shots_with_the_active_models_top_k(client, store, settings):
    pytest.importorskip("tensorflow")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "classify"))
    from registry_helpers import LABELS, add_colour_shots, colour_model, make_snapshot, upload_files

    add_colour_shots(store, instances=3, per_instance=1)
    make_snapshot(store, settings)
    model = colour_model(settings.data.dir.parent / "model")
    files = [("files", (n, d)) for n, d in upload_files(model).items()]
    assert client.post("/api/models", files=files, headers=OP).status_code == 201
    assert client.post("/api/models/model-0001/activate", headers=OP).status_code == 200
    r = client.post("/api/label/prelabel", json={"run_id": 1}, headers=OP)
    assert r.status_code == 200, r.text
    assert r.json()["queued"] == 6 and r.json()["model_id"] == "model-0001"
    items = queue(client)["items"]
    truth = {s["id"]: s["label"] for s in store.query_shots().items}
    assert all(i["top_k"][0][0] == truth[i["shot_id"]] for i in items)
    assert {i["top_k"][1][0] for i in items} <= set(LABELS)
    assert client.post("/api/label/prelabel", json={"run_id": 99}, headers=OP).status_code == 404
