"""Training data from object storage and from several snapshots: streamed shards are verified,
one class index spans every snapshot, each worker reads its own shards, and TF_CONFIG is read
into a role (or refused with a clear message)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "capture"))

from s3_server import s3_server
from snapshot_factory import PARTS, make_snapshot

from capture.publish.objstore import TransferSettings
from capture.publish.publisher import publish_snapshot
from classify.train_data import open_snapshot
from classify.train_sources import CombinedSnapshot, open_training_data, worker_samples
from classify.train_workers import WorkerRole, worker_role
from rig.errors import ChecksumMismatch, ConfigError


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


def _published(tmp: Path, s3, bucket: str, rig: str, sid: str, seed: int, **kw) -> tuple[str, Path]:
    data = tmp / rig
    root = make_snapshot(data / "snapshots" / sid, seed=seed, snapshot_id=sid, **kw)
    settings = TransferSettings(endpoint_url=s3.endpoint, concurrency=4)
    result = publish_snapshot(data, sid, f"s3://{bucket}/team", rig_id=rig, settings=settings)
    return result.url, root


def test_a_published_snapshot_streams_the_same_samples_as_the_folder(tmp_path, s3) -> None:
    bucket = s3.make_bucket("stream")
    url, root = _published(tmp_path, s3, bucket, "rig-a", "snap-0003", seed=1)
    settings = TransferSettings(endpoint_url=s3.endpoint)
    remote = open_training_data(url, settings)
    local = open_snapshot(root)
    assert remote.labels == local.labels and remote.id == "snap-0003"
    for split in ("train", "val", "test"):
        a, b = remote.samples(split), local.samples(split)
        assert [(s.key, s.class_index, s.image_bytes, s.mask_png) for s in a] == [
            (s.key, s.class_index, s.image_bytes, s.mask_png) for s in b
        ]
    shard = remote.published.entries("webdataset")[0]
    s3.client().put_object(Bucket=bucket, Key=remote.published.key_of(shard), Body=b"x" * 1024)
    with pytest.raises(ChecksumMismatch):
        open_training_data(url, settings).samples(shard["path"].split("/")[1].split("-")[0])


def test_several_snapshots_train_with_one_class_index(tmp_path, s3) -> None:
    bucket = s3.make_bucket("combined")
    labels = list(PARTS)
    url_a, _ = _published(tmp_path, s3, bucket, "rig-a", "snap-0001", seed=2)
    # NOTE: rig b has only two of the three classes, and a class order of its own.
    root_b = make_snapshot(tmp_path / "b" / "snap-0001", seed=3, snapshot_id="snap-0001")
    manifest = json.loads((root_b / "manifest.json").read_text())
    manifest["classes"] = [{"index": 0, "label": labels[2]}, {"index": 1, "label": labels[0]},
                           {"index": 2, "label": labels[1]}]  # fmt: skip
    (root_b / "manifest.json").write_text(json.dumps(manifest))
    snap = open_training_data([url_a, str(root_b)], TransferSettings(endpoint_url=s3.endpoint))
    assert isinstance(snap, CombinedSnapshot)
    assert snap.labels == sorted(labels)
    assert snap.ids == ["rig-a/snap-0001", "snap-0001"]
    train = snap.samples("train")
    assert len({s.key for s in train}) == len(train) == 2 * 3 * 24
    assert all(snap.labels[s.class_index] == s.label for s in train)


def test_each_worker_reads_its_own_shards_and_together_all(tmp_path) -> None:
    root = make_snapshot(tmp_path / "snap-0001")
    snap = open_snapshot(root)
    everything = {s.key for s in snap.samples("train")}
    shares = [{s.key for s in worker_samples(snap, "train", i, 2)} for i in range(2)]
    assert shares[0].isdisjoint(shares[1]) and shares[0] | shares[1] == everything
    assert abs(len(shares[0]) - len(shares[1])) <= 1
    combined = CombinedSnapshot([snap, open_snapshot(make_snapshot(tmp_path / "b", seed=4))])
    refs = combined.shard_refs("train")
    assert len(refs) == 2
    assert {s.key for s in worker_samples(combined, "train", 1, 2)} == {
        s.key for s in combined.shard_samples(refs[1])
    }


def test_tf_config_gives_the_role_or_a_clear_error() -> None:
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})}
    assert worker_role(env) == WorkerRole(1, 2, chief=False)
    env0 = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})}
    assert worker_role(env0) == WorkerRole(0, 2, chief=True)
    assert worker_role({}) is None
    one = {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}
    assert worker_role({"TF_CONFIG": json.dumps(one)}) is None
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        worker_role({"TF_CONFIG": "{not json"})
    bad = {"cluster": cluster, "task": {"type": "worker", "index": 5}}
    with pytest.raises(ConfigError, match="not in its cluster"):
        worker_role({"TF_CONFIG": json.dumps(bad)})
