"""The dataset API: filtered pages, detail, files by id only (no traversal), curation, stats."""

from __future__ import annotations

from web_helpers import OP, TRAIN, VIEW, add_shots


def test_shots_are_filtered_by_label_background_run_and_instance(client, store):
    add_shots(store, ["3001", "3003"], [1, 2], per=2)
    everything = client.get("/api/dataset/shots", headers=VIEW).json()["items"]
    assert len(everything) == 8
    by_label = client.get("/api/dataset/shots?label=3001", headers=VIEW).json()["items"]
    assert {s["label"] for s in by_label} == {"3001"} and len(by_label) == 4
    both = client.get("/api/dataset/shots?label=3003&background=2", headers=VIEW).json()["items"]
    assert len(both) == 2 and all(s["background_id"] == 2 for s in both)
    inst = client.get("/api/dataset/shots?instance=3003-a", headers=TRAIN).json()["items"]
    assert len(inst) == 4
    run = everything[0]["run_id"]
    assert len(client.get(f"/api/dataset/shots?run={run}", headers=VIEW).json()["items"]) == 8


def test_pages_follow_the_cursor_without_repeats(client, store):
    ids = add_shots(store, ["3001"], [1], per=7)
    seen, cursor = [], None
    while True:
        q = "/api/dataset/shots?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(q, headers=VIEW).json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids)


def test_a_bad_cursor_is_400_with_what_to_do(client):
    r = client.get("/api/dataset/shots?cursor=garbage!!", headers=VIEW)
    assert r.status_code == 400
    assert "next_cursor" in r.json()["detail"]


def test_shot_detail_and_its_files_are_served_by_id(client, store):
    (sid, *_) = add_shots(store, ["3001"], [1], per=1)
    detail = client.get(f"/api/dataset/shots/{sid}", headers=VIEW).json()
    assert detail["label"] == "3001" and detail["edits"] == []
    image = client.get(f"/api/dataset/shots/{sid}/image", headers=VIEW)
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    mask = client.get(f"/api/dataset/shots/{sid}/mask", headers=VIEW)
    assert mask.headers["content-type"] == "image/png"
    thumb = client.get(f"/api/dataset/shots/{sid}/thumb", headers=VIEW)
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"


def test_unknown_shots_are_404(client):
    assert client.get("/api/dataset/shots/999", headers=VIEW).status_code == 404
    assert client.get("/api/dataset/shots/999/image", headers=VIEW).status_code == 404


def test_file_routes_reject_path_traversal(client, store):
    (sid, *_) = add_shots(store, ["3001"], [1], per=1)
    for url in (
        "/api/dataset/shots/..%2F..%2Fetc%2Fpasswd/image",
        f"/api/dataset/shots/{sid}/..%2F..%2Fpartrig.db",
        "/api/dataset/shots/1/../../../etc/passwd",
        f"/api/dataset/shots/{sid}/%2e%2e",
        "/static/..%2F..%2Frig%2Fconfig.py",
    ):
        r = client.get(url, headers=VIEW)
        assert r.status_code in (404, 422), (url, r.status_code)
        assert b"root:" not in r.content and b"SQLite" not in r.content
    # A row can never point outside the data dir, and the route re-checks anyway.
    store.db.execute("UPDATE shots SET path = '../../etc/passwd' WHERE id = ?", (sid,))
    store.db.conn.commit()
    assert client.get(f"/api/dataset/shots/{sid}/image", headers=VIEW).status_code == 400


def test_relabel_is_recorded_with_who_did_it(client, store):
    (sid, *_) = add_shots(store, ["3001"], [1], per=1)
    r = client.post(f"/api/dataset/shots/{sid}/relabel", json={"label": "3002"}, headers=OP)
    assert r.status_code == 200
    assert r.json()["label"] == "3002"
    edit = r.json()["edits"][0]
    assert edit["action"] == "relabel" and edit["old"] == "3001" and edit["new"] == "3002"
    assert edit["who"].startswith("key:")


def test_relabel_to_an_empty_label_is_422_and_viewers_cannot_relabel(client, store):
    (sid, *_) = add_shots(store, ["3001"], [1], per=1)
    assert (
        client.post(
            f"/api/dataset/shots/{sid}/relabel", json={"label": "  "}, headers=OP
        ).status_code
        == 422
    )
    assert (
        client.post(
            f"/api/dataset/shots/{sid}/relabel", json={"label": "x"}, headers=VIEW
        ).status_code
        == 403
    )


def test_delete_hides_the_shot_and_moves_its_files_to_the_trash(client, store):
    (sid, *_) = add_shots(store, ["3001"], [1], per=1)
    path = store.data_dir / store.get_shot(sid)["path"]
    assert client.delete(f"/api/dataset/shots/{sid}", headers=OP).json() == {"deleted": sid}
    assert not path.exists()
    assert list((store.data_dir / "trash").rglob(path.name))
    assert client.get("/api/dataset/shots", headers=VIEW).json()["items"] == []
    assert client.get(f"/api/dataset/shots/{sid}/image", headers=VIEW).status_code == 404
    assert client.delete(f"/api/dataset/shots/{sid}", headers=OP).status_code == 404
    detail = client.get(f"/api/dataset/shots/{sid}", headers=VIEW).json()
    assert detail["edits"][-1]["action"] == "delete"


def test_stats_count_each_class_per_background(client, store):
    add_shots(store, ["3001", "3003"], [1, 2], per=3)
    stats = client.get("/api/dataset/stats", headers=VIEW).json()
    assert stats["total"] == 12
    assert stats["by_label_background"] == {"3001": {"1": 3, "2": 3}, "3003": {"1": 3, "2": 3}}
