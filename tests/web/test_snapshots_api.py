"""The snapshot API: trainer-key auth, manifest lookup (no traversal), Range/ETag, rate limit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from braceexpand import braceexpand
from fastapi.testclient import TestClient
from snapshot_fixture import sample_files, write_snapshot
from web_helpers import OP, TRAIN, VIEW, FakeRig, make_settings

from web.app import create_app

SNAP = "snap-0001"
BASE = f"/api/snapshots/{SNAP}"
SHARD = "webdataset/train-000000.tar"


@pytest.fixture
def manifest(settings: Any, store: Any) -> dict[str, Any]:
    return write_snapshot(settings.data.dir, SNAP, sample_files(shards=3), store=store)


def entry(manifest: dict[str, Any], path: str) -> dict[str, Any]:
    return next(f for f in manifest["files"] if f["path"] == path)


def on_disk(settings: Any, path: str) -> bytes:
    return (Path(settings.data.dir) / "snapshots" / SNAP / path).read_bytes()


ROUTES = [
    "/api/snapshots",
    BASE,
    f"{BASE}/report",
    f"{BASE}/shards?split=train",
    f"{BASE}/files/{SHARD}",
]


@pytest.mark.parametrize("url", ROUTES)
def test_every_route_needs_a_trainer_key(client: TestClient, manifest: Any, url: str) -> None:
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"X-Api-Key": "not-a-key"}).status_code == 401
    denied = client.get(url, headers=VIEW)
    assert denied.status_code == 403 and "trainer" in denied.json()["detail"]
    assert client.get(url, headers=TRAIN).status_code == 200
    assert client.get(url, headers=OP).status_code == 200


def test_listing_shows_recorded_snapshots(client: TestClient, manifest: Any) -> None:
    items = client.get("/api/snapshots", headers=TRAIN).json()["items"]
    assert [s["id"] for s in items] == [SNAP]


def test_manifest_is_served_byte_for_byte_with_an_etag(
    client: TestClient, settings: Any, manifest: Any
) -> None:
    r = client.get(BASE, headers=TRAIN)
    assert r.content == on_disk(settings, "manifest.json")
    assert r.json()["files"] == manifest["files"]
    assert r.headers["etag"] == f'"{hashlib.sha256(r.content).hexdigest()}"'
    again = client.get(BASE, headers={**TRAIN, "If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_unknown_snapshot_is_404_and_a_malformed_id_422(client: TestClient, manifest: Any) -> None:
    r = client.get("/api/snapshots/snap-0099", headers=TRAIN)
    assert r.status_code == 404 and "snap-0099" in r.json()["detail"]
    assert client.get("/api/snapshots/snap-0001.tmp", headers=TRAIN).status_code == 422
    assert client.get("/api/snapshots/..%2F..%2Fetc", headers=TRAIN).status_code in (404, 422)


def test_report_is_the_snapshot_report_json(
    client: TestClient, settings: Any, manifest: Any
) -> None:
    r = client.get(f"{BASE}/report", headers=TRAIN)
    assert r.json() == json.loads(on_disk(settings, "report.json"))


def test_shards_come_as_a_brace_pattern_that_expands_to_served_urls(
    client: TestClient, manifest: Any
) -> None:
    body = client.get(f"{BASE}/shards", params={"split": "train"}, headers=TRAIN).json()
    assert body["count"] == 3 and body["header"] == "X-Api-Key"
    assert body["pattern"] == (
        f"http://testserver{BASE}/files/webdataset/train-{{000000..000002}}.tar"
    )
    urls = list(braceexpand(body["pattern"]))
    assert urls == body["urls"]
    for url in urls:
        path = url.split(f"{BASE}/files/", 1)[1]
        r = client.get(url, headers=TRAIN)
        assert hashlib.sha256(r.content).hexdigest() == entry(manifest, path)["sha256"]
    val = client.get(f"{BASE}/shards", params={"split": "val"}, headers=TRAIN).json()
    assert val["count"] == 1 and val["pattern"].endswith("val-{000000..000000}.tar")
    assert client.get(f"{BASE}/shards?split=test", headers=TRAIN).status_code == 404


def test_a_file_has_length_etag_and_immutable_caching(
    client: TestClient, settings: Any, manifest: Any
) -> None:
    r = client.get(f"{BASE}/files/{SHARD}", headers=TRAIN)
    e = entry(manifest, SHARD)
    assert r.status_code == 200 and r.content == on_disk(settings, SHARD)
    assert r.headers["content-length"] == str(e["size"])
    assert r.headers["etag"] == f'"{e["sha256"]}"'
    assert r.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"] == "application/x-tar"
    head = client.head(f"{BASE}/files/{SHARD}", headers=TRAIN)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(e["size"])


def test_if_none_match_answers_304(client: TestClient, manifest: Any) -> None:
    etag = f'"{entry(manifest, SHARD)["sha256"]}"'
    url = f"{BASE}/files/{SHARD}"
    r = client.get(url, headers={**TRAIN, "If-None-Match": f'"other", {etag}'})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert client.get(url, headers={**TRAIN, "If-None-Match": '"other"'}).status_code == 200


def test_range_and_if_range(client: TestClient, settings: Any, manifest: Any) -> None:
    data = on_disk(settings, SHARD)
    etag = f'"{entry(manifest, SHARD)["sha256"]}"'
    url = f"{BASE}/files/{SHARD}"
    part = client.get(url, headers={**TRAIN, "Range": "bytes=100-"})
    assert part.status_code == 206 and part.content == data[100:]
    assert part.headers["content-range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    assert part.headers["content-length"] == str(len(data) - 100)
    mid = client.get(url, headers={**TRAIN, "Range": "bytes=10-19", "If-Range": etag})
    assert mid.status_code == 206 and mid.content == data[10:20]
    stale = client.get(url, headers={**TRAIN, "Range": "bytes=10-19", "If-Range": '"old"'})
    assert stale.status_code == 200 and stale.content == data
    beyond = client.get(url, headers={**TRAIN, "Range": f"bytes={len(data) + 5}-"})
    assert beyond.status_code == 416


@pytest.mark.parametrize(
    "path",
    [
        "../../partrig.db",
        "%2e%2e/%2e%2e/partrig.db",
        "webdataset/%2e%2e/manifest.json",
        "..%2f..%2fpartrig.db",
        "/etc/passwd",
        "%2fetc%2fpasswd",
        "manifest.json",
        "secret.txt",
        "webdataset/train-000000.tar.part",
    ],
)
def test_paths_not_in_the_manifest_are_never_served(
    client: TestClient, settings: Any, manifest: Any, path: str
) -> None:
    (Path(settings.data.dir) / "snapshots" / SNAP / "secret.txt").write_text("not in manifest")
    r = client.get(f"{BASE}/files/{path}", headers=TRAIN)
    assert r.status_code in (404, 422), r.text
    assert b"SQLite" not in r.content and b"not in manifest" not in r.content
    if r.status_code == 404 and "/files/" in str(r.url):
        assert "has no file" in r.json()["detail"]


def test_a_damaged_manifest_pointing_outside_is_refused(
    client: TestClient, settings: Any, manifest: Any
) -> None:
    folder = Path(settings.data.dir) / "snapshots" / SNAP
    bad = dict(
        manifest,
        files=[
            *manifest["files"],
            {"path": "../../partrig.db", "format": "csv", "sha256": "0" * 64, "size": 1},
        ],
    )
    (folder / "manifest.json").write_text(json.dumps(bad))
    r = client.get(f"{BASE}/files/../../partrig.db".replace("..", "%2e%2e"), headers=TRAIN)
    assert r.status_code == 500 and "outside" in r.json()["detail"]


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path, store: Any) -> None:
    settings = make_settings(tmp_path / "limited", auth={"rate_limit_per_min": 3})
    write_snapshot(settings.data.dir, SNAP, sample_files(shards=1))
    with TestClient(create_app(settings, rig=FakeRig(), store=store)) as c:
        codes = [c.get(BASE, headers=TRAIN).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = c.get(f"{BASE}/files/{SHARD}", headers=TRAIN)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "rate limit" in limited.json()["detail"]
        assert c.get(BASE, headers=OP).status_code == 200  # other keys have their own bucket


def test_rate_limiter_refills_over_time() -> None:
    from web.rate_limit import RateLimiter

    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert all(limiter.take("k") == 0.0 for _ in range(60))
    assert limiter.take("k") == pytest.approx(1.0)
    now[0] += 1.0
    assert limiter.take("k") == 0.0
    assert limiter.take("other") == 0.0
