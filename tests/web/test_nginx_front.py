"""partrig behind nginx: partrig authorises, nginx sends the snapshot bytes (X-Accel-Redirect).

The TestClient tests check partrig's half; the last test runs Debian's nginx (``make test``
installs it) with the shipped site config in front of a live uvicorn and pulls through it.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from snapshot_fixture import sample_files, write_snapshot
from web_helpers import TRAIN, TRAINER_KEY, FakeRig, make_settings

from capture.pull.client import pull
from rig.config import parse_settings
from rig.errors import ConfigError
from web.app import create_app
from web.nginx_conf import ACCEL_PREFIX, site_config, standalone_config

SNAP = "snap-0001"
SHARD = "webdataset/train-000000.tar"
REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_site_file_is_what_the_generator_writes() -> None:
    shipped = (REPO / "deploy" / "nginx-partrig.conf").read_text(encoding="utf-8")
    assert shipped == site_config(), "run: python -m web.nginx_conf > deploy/nginx-partrig.conf"


def test_accel_redirect_must_be_a_plain_location_path() -> None:
    for bad in ("_no_slash", "/a b", "/x/../y", "/trailing/"):
        with pytest.raises(ConfigError, match="accel_redirect"):
            parse_settings({"web": {"accel_redirect": bad}})
    assert parse_settings({"web": {"accel_redirect": ACCEL_PREFIX}}).web.accel_redirect


def test_partrig_answers_with_an_internal_redirect_after_checking_key_and_manifest(
    tmp_path: Path, store: Any
) -> None:
    settings = make_settings(tmp_path / "data", web={"accel_redirect": ACCEL_PREFIX})
    files = sample_files(shards=1)
    files["folder/train/000-a b/s00000001.jpg"] = ("folder", b"jpeg bytes")
    man = write_snapshot(settings.data.dir, SNAP, files, store=store)
    with TestClient(create_app(settings, rig=FakeRig(), store=store)) as c:
        base = f"/api/snapshots/{SNAP}/files"
        assert c.get(f"{base}/{SHARD}").status_code == 401
        r = c.get(f"{base}/{SHARD}", headers=TRAIN)
        sha = next(f["sha256"] for f in man["files"] if f["path"] == SHARD)
        assert r.status_code == 200 and r.content == b""
        assert r.headers["x-accel-redirect"] == f"{ACCEL_PREFIX}/{SNAP}/{SHARD}"
        assert r.headers["etag"] == f'"{sha}"' and "immutable" in r.headers["cache-control"]
        odd = c.get(f"{base}/folder/train/000-a b/s00000001.jpg", headers=TRAIN)
        assert odd.headers["x-accel-redirect"].endswith("/folder/train/000-a%20b/s00000001.jpg")
        assert c.get(f"{base}/../manifest.json", headers=TRAIN).status_code == 404
        assert c.get(f"{base}/not/listed.tar", headers=TRAIN).status_code == 404
        cached = c.get(f"{base}/{SHARD}", headers={**TRAIN, "If-None-Match": f'"{sha}"'})
        assert cached.status_code == 304 and "x-accel-redirect" not in cached.headers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nginx_front(tmp_path: Path, store: Any):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (apt-get install nginx)")
    import uvicorn

    settings = make_settings(tmp_path / "data", web={"accel_redirect": ACCEL_PREFIX})
    manifest = write_snapshot(settings.data.dir, SNAP, sample_files(shards=3), store=store)
    app_port, port = _free_port(), _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, rig=FakeRig(), store=store),
            host="127.0.0.1",
            port=app_port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    run = tmp_path / "nginx"
    run.mkdir()
    site = site_config(
        listen=f"127.0.0.1:{port}",
        upstream=f"127.0.0.1:{app_port}",
        snapshots_dir=str(Path(settings.data.dir) / "snapshots"),
    )
    conf = run / "nginx.conf"
    conf.write_text(standalone_config(site, run), encoding="utf-8")
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(run), "-e", str(run / "e.log")])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (run / "e.log").read_text(errors="replace")
        assert time.monotonic() < deadline, "nginx or partrig did not come up"
        time.sleep(0.1)
    try:
        yield url, manifest
    finally:
        proc.terminate()
        proc.wait(10)
        srv.should_exit = True
        thread.join(10)


def test_a_pull_through_nginx_gets_verified_files_and_ranges(nginx_front, tmp_path) -> None:
    url, manifest = nginx_front
    shard = next(f for f in manifest["files"] if f["path"] == SHARD)
    key = {"X-Api-Key": TRAINER_KEY}
    file_url = f"{url}/api/snapshots/{SNAP}/files/{SHARD}"
    assert httpx.get(file_url).status_code == 401  # nginx never serves without partrig's yes
    assert httpx.get(f"{url}{ACCEL_PREFIX}/{SNAP}/{SHARD}").status_code == 404  # internal only
    part = httpx.get(
        file_url, headers={**key, "Range": "bytes=10-19", "If-Range": f'"{shard["sha256"]}"'}
    )
    assert part.status_code == 206 and len(part.content) == 10
    assert part.headers["etag"] == f'"{shard["sha256"]}"'
    result = pull(url, SNAP, tmp_path / "dest", key=TRAINER_KEY, progress=False)
    assert result.bytes_fetched == result.bytes_total > 0
    got = (tmp_path / "dest" / SNAP / SHARD).read_bytes()
    assert hashlib.sha256(got).hexdigest() == shard["sha256"]
