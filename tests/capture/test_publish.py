"""Publishing snapshots to S3-compatible storage (moto on loopback): content-addressed objects,
manifest last, resume, immutability, verified streaming and pull."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from s3_server import s3_server
from snapshot_data import add_shots

from capture.publish.objstore import ObjectExists, ObjectStore, S3Location, TransferSettings
from capture.publish.published import PublishedSnapshot, pull_published
from capture.publish.publisher import OBJECTS, object_key, publish_snapshot
from capture.snapshots.build import create_snapshot, load_manifest, snapshot_dir
from capture.snapshots.filter import SnapshotFilter
from capture.snapshots.splits import SplitRules
from capture.store import DatasetStore
from rig.config import Settings, parse_settings
from rig.errors import ChecksumMismatch, ConfigError, NotFound, QueryError, StoreError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


@pytest.fixture
def bucket(s3, request) -> str:
    name = "b-" + hashlib.sha256(request.node.name.encode()).hexdigest()[:12]
    return s3.make_bucket(name)


@pytest.fixture
def settings(s3) -> TransferSettings:
    # NOTE: a 5 MiB part (S3's minimum) and small shards so multipart paths are exercised.
    return TransferSettings(endpoint_url=s3.endpoint, concurrency=4, part_size=5 * 1024 * 1024)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    with DatasetStore.open(tmp_path / "data") as store:
        add_shots(store)
        cfg = Settings()
        cfg.snapshot.shard_bytes = 1024 * 1024
        create_snapshot(store, cfg, SnapshotFilter(), SplitRules(seed=1))
    return tmp_path / "data"


def _keys(s3, bucket: str) -> dict[str, int]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["Size"] for p in pages for o in p.get("Contents", [])}


def test_publish_names_objects_by_sha256_and_namespaces_the_manifest_by_rig(
    s3, bucket, settings, data
) -> None:
    result = publish_snapshot(data, "snap-0001", f"s3://{bucket}/team", rig_id="rig-a",
                              settings=settings)  # fmt: skip
    manifest = load_manifest(data, "snap-0001")
    keys = _keys(s3, bucket)
    assert result.url == f"s3://{bucket}/team/rig-a/snap-0001"
    assert "team/rig-a/snap-0001/manifest.json" in keys
    shas = {f["sha256"]: f["size"] for f in manifest["files"]}
    for sha, size in shas.items():
        assert keys[f"team/{OBJECTS}/{sha[:2]}/{sha}"] == size
    assert len(keys) == len(shas) + 1
    assert result.uploaded_objects == len(shas) and result.reused_objects == 0
    body = s3.client().get_object(Bucket=bucket, Key="team/rig-a/snap-0001/manifest.json")
    published = json.loads(body["Body"].read())
    assert published["files"] == manifest["files"]
    assert published["published"]["rig_id"] == "rig-a"


def test_manifest_is_uploaded_after_every_object(s3, bucket, settings, data) -> None:
    order: list[str] = []
    store = ObjectStore.connect(bucket, settings)
    upload, put = store.upload_file, store.put_bytes
    store.upload_file = lambda path, key, sha256: (
        order.append(key),
        upload(path, key, sha256=sha256),
    )  # type: ignore[method-assign]
    store.put_bytes = lambda key, data, **kw: (order.append(key), put(key, data, **kw))  # type: ignore[method-assign]
    publish_snapshot(data, "snap-0001", f"s3://{bucket}", rig_id="r", settings=settings,
                     store=store)  # fmt: skip
    assert order[-1] == "r/snap-0001/manifest.json"
    assert all("/manifest.json" not in k for k in order[:-1])


def test_a_failed_publish_leaves_no_manifest_and_a_rerun_resumes(s3, bucket, settings, data):
    store = ObjectStore.connect(bucket, settings)
    put = store.put_bytes
    calls = {"n": 0}

    def flaky(key, data, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise NotFound("simulated outage")
        put(key, data, **kw)

    store.put_bytes = flaky  # type: ignore[method-assign]
    url = f"s3://{bucket}/p"
    with pytest.raises(NotFound):
        publish_snapshot(data, "snap-0001", url, rig_id="r", settings=settings, store=store)
    assert not any(k.endswith("manifest.json") for k in _keys(s3, bucket))
    with pytest.raises(NotFound):
        PublishedSnapshot.open(f"{url}/r/snap-0001", settings)
    done_before = len(_keys(s3, bucket))
    again = publish_snapshot(data, "snap-0001", url, rig_id="r", settings=settings)
    assert again.reused_objects >= done_before >= 1
    assert again.uploaded_objects == again.objects - again.reused_objects
    third = publish_snapshot(data, "snap-0001", url, rig_id="r", settings=settings)
    assert third.already_published and third.uploaded_bytes == 0


def test_a_new_version_uploads_only_changed_objects(tmp_path, s3, bucket, settings) -> None:
    with DatasetStore.open(tmp_path / "data") as store:
        add_shots(store, instances=6)
        cfg = Settings()
        cfg.snapshot.shard_bytes = 1024 * 1024
        create_snapshot(store, cfg, SnapshotFilter(), SplitRules(seed=1))
        add_shots(store, labels=("nut",), instances=1, prefix="new", day=2)
        create_snapshot(store, cfg, SnapshotFilter(), SplitRules(seed=1))
    url = f"s3://{bucket}"
    publish_snapshot(tmp_path / "data", "snap-0001", url, rig_id="r", settings=settings)
    store = ObjectStore.connect(bucket, settings)
    # NOTE: as if the prefix were too large to list: every object is asked about by HEAD.
    store.list_sizes = lambda prefix, max_pages: None  # type: ignore[method-assign]
    second = publish_snapshot(tmp_path / "data", "snap-0002", url, rig_id="r", settings=settings,
                              store=store)  # fmt: skip
    old = {f["sha256"] for f in load_manifest(tmp_path / "data", "snap-0001")["files"]}
    new = load_manifest(tmp_path / "data", "snap-0002")["files"]
    changed = {f["sha256"]: f["size"] for f in new if f["sha256"] not in old}
    assert second.uploaded_bytes == sum(changed.values())
    assert second.reused_objects > second.uploaded_objects
    folder_images = [f for f in new if f["format"] == "folder" and f["path"].endswith(".jpg")]
    assert sum(1 for f in folder_images if f["sha256"] in old) == len(folder_images) - 6


def test_a_different_snapshot_under_the_same_id_is_refused(tmp_path, bucket, settings, data):
    url = f"s3://{bucket}"
    publish_snapshot(data, "snap-0001", url, rig_id="r", settings=settings)
    with DatasetStore.open(tmp_path / "other") as store:
        add_shots(store, labels=("nut",), prefix="x")
        create_snapshot(store, Settings(), SnapshotFilter(), SplitRules(seed=3))
    with pytest.raises(QueryError, match=r"rig\.id"):
        publish_snapshot(tmp_path / "other", "snap-0001", url, rig_id="r", settings=settings)
    ok = publish_snapshot(tmp_path / "other", "snap-0001", url, rig_id="r2", settings=settings)
    assert ok.uploaded_objects >= 1


def test_two_publishers_racing_for_one_manifest_key_cannot_both_win(s3, bucket, settings):
    store = ObjectStore.connect(bucket, settings)
    store.put_bytes("r/snap-0001/manifest.json", b"{}", sha256="0" * 64,
                    content_type="application/json", if_absent=True)  # fmt: skip
    with pytest.raises(ObjectExists):
        store.put_bytes("r/snap-0001/manifest.json", b"[]", sha256="1" * 64,
                        content_type="application/json", if_absent=True)  # fmt: skip
    body = s3.client().get_object(Bucket=bucket, Key="r/snap-0001/manifest.json")["Body"]
    assert body.read() == b"{}"


def test_a_local_file_that_no_longer_matches_is_never_published(s3, bucket, settings, data):
    manifest = load_manifest(data, "snap-0001")
    shard = next(f for f in manifest["files"] if f["format"] == "webdataset")
    path = snapshot_dir(data, "snap-0001") / shard["path"]
    raw = bytearray(path.read_bytes())
    raw[600] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ChecksumMismatch, match="dataset check"):
        publish_snapshot(data, "snap-0001", f"s3://{bucket}", rig_id="r", settings=settings)
    key = object_key(OBJECTS, shard["sha256"])
    assert key not in _keys(s3, bucket)
    assert not any(k.endswith("manifest.json") for k in _keys(s3, bucket))


def test_streamed_shards_verify_and_a_replaced_object_is_detected(s3, bucket, settings, data):
    publish_snapshot(data, "snap-0001", f"s3://{bucket}/t", rig_id="r", settings=settings)
    snap = PublishedSnapshot.open(f"s3://{bucket}/t/r/snap-0001", settings)
    shards = snap.entries("webdataset")
    names = []
    with snap.stream(shards[0]) as body, tarfile.open(fileobj=body, mode="r|") as tar:
        names = [m.name for m in tar]
    assert any(n.endswith(".jpg") for n in names)
    s3.client().put_object(Bucket=bucket, Key=snap.key_of(shards[0]), Body=b"not the shard")
    with pytest.raises(ChecksumMismatch), snap.stream(shards[0]) as body:
        body.read()


def test_pull_mirrors_one_format_verified_and_resumes(tmp_path, s3, bucket, settings, data):
    publish_snapshot(data, "snap-0001", f"s3://{bucket}", rig_id="rig-a", settings=settings)
    url = f"s3://{bucket}/rig-a/snap-0001"
    first = pull_published(url, tmp_path / "pulled", settings, fmt="folder")
    root = tmp_path / "pulled" / "rig-a" / "snap-0001"
    assert first.root == root and (root / "manifest.json").is_file()
    for entry in load_manifest(data, "snap-0001")["files"]:
        path = root / entry["path"]
        if entry["format"] in ("folder", "report"):
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        else:
            assert not path.exists()
    victim = next(root.glob("folder/train/*/*.jpg"))
    victim.write_bytes(b"damaged")
    again = pull_published(url, tmp_path / "pulled", settings, fmt="folder")
    assert again.fetched_files == 1 and again.present_files == first.files - 1
    with pytest.raises(QueryError, match="coco"):
        pull_published(url, tmp_path / "x", settings, fmt="coco2")


def test_urls_and_storage_settings_are_checked_at_the_edge() -> None:
    assert S3Location.parse("s3://parts/a/b/").key("x") == "a/b/x"
    for bad in ("http://parts/a", "s3://UPPER/a", "s3://parts/../a", "s3://parts/a b"):
        with pytest.raises(ConfigError):
            S3Location.parse(bad)
    cfg = parse_settings({"rig": {"id": "rig-2"}, "storage": {"concurrency": 4}})
    assert cfg.rig.id == "rig-2" and TransferSettings.from_config(cfg.storage).concurrency == 4
    with pytest.raises(ConfigError, match=r"rig\.id"):
        parse_settings({"rig": {"id": "Rig 2"}})
    with pytest.raises(ConfigError, match=r"storage\.part_size_mb"):
        parse_settings({"storage": {"part_size_mb": 1}})


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "web.cli", *args],
        env={**env, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_snapshot_autopublishes_and_pull_s3_mirrors_it(tmp_path, s3, bucket) -> None:
    data = tmp_path / "data"
    with DatasetStore.open(data) as store:
        add_shots(store)
    (tmp_path / "partrig.toml").write_text(
        f'[data]\ndir = "{data}"\n[rig]\nid = "rig-7"\n'
        f'[storage]\nurl = "s3://{bucket}/team"\nendpoint_url = "{s3.endpoint}"\n'
        "publish_after_snapshot = true\n"
    )
    env = {**s3.env(), "PARTRIG_CONFIG": str(tmp_path / "partrig.toml")}
    made = _cli(["dataset", "snapshot", "--format", "folder"], env, tmp_path)
    assert made.returncode == 0, made.stderr + made.stdout
    assert f"s3://{bucket}/team/rig-7/snap-0001" in made.stdout
    pulled = _cli(
        ["dataset", "pull", f"s3://{bucket}/team/rig-7", "--snapshot", "snap-0001",
         "--dest", str(tmp_path / "got"), "--format", "folder"],
        env,
        tmp_path,
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    local = load_manifest(data, "snap-0001")["files"]
    for entry in local:
        got = tmp_path / "got" / "rig-7" / "snap-0001" / entry["path"]
        assert hashlib.sha256(got.read_bytes()).hexdigest() == entry["sha256"]
    again = _cli(["dataset", "publish", "snap-0001"], env, tmp_path)
    assert again.returncode == 0 and "already published" in again.stdout
    missing = _cli(["dataset", "pull", f"s3://{bucket}/team/rig-7", "--snapshot", "snap-0009",
                    "--dest", str(tmp_path / "got")], env, tmp_path)  # fmt: skip
    assert missing.returncode == 2 and "not found" in missing.stderr
    bad = _cli(["dataset", "publish", "snap-0001", "s3://Bad_Bucket/x"], env, tmp_path)
    assert bad.returncode == 2 and "bucket name" in bad.stderr


def test_pull_refuses_a_manifest_whose_ids_would_escape_the_destination(tmp_path, s3, bucket):
    settings = TransferSettings(endpoint_url=s3.endpoint)
    block = {"rig_id": "../../outside", "objects_prefix": "objects/sha256"}
    evil = {"id": "snap-0001", "files": [], "formats": ["folder"], "published": block}
    s3.client().put_object(Bucket=bucket, Key="r/snap-0001/manifest.json",
                           Body=json.dumps(evil).encode())  # fmt: skip
    with pytest.raises(StoreError, match="folder name"):
        pull_published(f"s3://{bucket}/r/snap-0001", tmp_path / "dest", settings)
    evil["files"] = [{"path": "../x", "sha256": "0" * 64, "size": 1, "format": "folder"}]
    s3.client().put_object(Bucket=bucket, Key="r/snap-0002/manifest.json",
                           Body=json.dumps(evil).encode())  # fmt: skip
    with pytest.raises(StoreError, match="unsafe path"):
        pull_published(f"s3://{bucket}/r/snap-0002", tmp_path / "dest", settings)
    assert not (tmp_path / "outside").exists() and not (tmp_path / "dest").exists()
