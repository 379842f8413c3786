"""The review queue over HTTP: list with label choices, the crop, one-click label, discard.

A labelled item must become a real shot of the dataset (source "sorter", its own instance,
no background or angle), visible through the dataset API like any captured shot.
"""

from __future__ import annotations

from typing import Any

from web_helpers import OP, VIEW, jpeg

from capture.store.sorting import DecisionRecord


def queue_items(store: Any, n: int) -> list[int]:
    """``n`` uncertain decisions (each with its crop) in the review queue; their item ids."""
    for i in range(n):
        store.add_decision(
            DecisionRecord(
                label="brick-2x4-red",
                confidence=0.41,
                bin=0,
                reason="uncertain",
                top_k=[("brick-2x4-red", 0.41), ("brick-2x2-red", 0.39)],
                model_id=None,
                crop_jpeg=jpeg(40, 40, value=60 + i),
                review=True,
            )
        )
    return [item["id"] for item in store.review_queue(limit=n)]


def test_the_queue_lists_open_items_with_the_models_guess_and_label_choices(client, store):
    store.upsert_part("brick-2x2-red")
    ids = queue_items(store, 3)
    body = client.get("/api/review", headers=VIEW).json()
    assert [i["id"] for i in body["items"]] == ids
    assert body["items"][0]["predicted"] == "brick-2x4-red"
    assert body["items"][0]["top_k"][1] == ["brick-2x2-red", 0.39]
    assert body["counts"] == {"open": 3, "labelled": 0, "discarded": 0}
    assert "brick-2x2-red" in body["labels"]
    crop = client.get(f"/api/review/{ids[0]}/crop", headers=VIEW)
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    assert crop.content[:2] == b"\xff\xd8"


def test_one_click_labels_the_item_and_it_becomes_a_sorter_shot(client, store):
    (item_id,) = queue_items(store, 1)
    new = client.post(f"/api/review/{item_id}/label", json={"label": "brick-2x2-red"}, headers=OP)
    assert new.status_code == 409 and "not in the parts catalogue" in new.json()["detail"]
    store.upsert_part("brick-2x2-red")
    r = client.post(f"/api/review/{item_id}/label", json={"label": "brick-2x2-red"}, headers=OP)
    assert r.status_code == 200, r.text
    shot_id = r.json()["shot_id"]
    assert r.json()["item"]["state"] == "labelled"
    shot = client.get(f"/api/dataset/shots/{shot_id}", headers=VIEW).json()
    assert shot["label"] == "brick-2x2-red" and shot["source"] == "sorter"
    assert shot["background_id"] is None and shot["angle_cmd"] is None
    assert shot["instance_id"].startswith("sorter-")
    image = client.get(f"/api/dataset/shots/{shot_id}/image", headers=VIEW)
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    again = client.post(f"/api/review/{item_id}/label", json={"label": "x"}, headers=OP)
    assert again.status_code == 409
    assert client.get("/api/review", headers=VIEW).json()["items"] == []
    labelled = client.get("/api/review?state=labelled", headers=VIEW).json()["items"]
    assert [(i["id"], i["label"], i["shot_id"]) for i in labelled] == [
        (item_id, "brick-2x2-red", shot_id)
    ]


def test_discard_keeps_the_decision_and_takes_the_item_out_of_the_queue(client, store):
    first, second = queue_items(store, 2)
    r = client.post(f"/api/review/{first}/discard", headers=OP)
    assert r.status_code == 200 and r.json()["item"]["state"] == "discarded"
    assert [i["id"] for i in client.get("/api/review", headers=VIEW).json()["items"]] == [second]
    assert client.post(f"/api/review/{first}/discard", headers=OP).status_code == 409
    assert store.count_decisions() == 2


def test_viewers_cannot_label_and_bad_input_is_refused(client, store):
    (item_id,) = queue_items(store, 1)
    assert client.post(f"/api/review/{item_id}/discard", headers=VIEW).status_code == 403
    r = client.post(f"/api/review/{item_id}/label", json={"label": "a"}, headers=VIEW)
    assert r.status_code == 403
    assert (
        client.post(f"/api/review/{item_id}/label", json={"label": "  "}, headers=OP).status_code
        == 422
    )
    assert client.post("/api/review/999/label", json={"label": "a"}, headers=OP).status_code == 404
    assert client.get("/api/review/999/crop", headers=VIEW).status_code == 404
    assert client.get("/api/review?state=nope", headers=VIEW).status_code == 422
