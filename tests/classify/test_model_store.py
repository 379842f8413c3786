"""Models in object storage: published content-addressed with the manifest last, immutable
names, sha256-checked on the way down, and a pulled model handed to a real rig's upload path,
which validates it in its child process exactly as for a push."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "capture"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attack"))

from live_server import TRAINER_KEY, start_server
from s3_server import s3_server

from capture.publish.objstore import TransferSettings
from classify.model_store import fetch_model, publish_model
from rig.errors import ChecksumMismatch, ConfigError, QueryError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


def _model(folder: Path, labels: str = "a\nb\n") -> Path:
    folder.mkdir(parents=True)
    # NOTE: not a TFLite file: the rig must reject it in its validation child, not crash.
    (folder / "model.tflite").write_bytes(b"TFL3" + bytes(range(256)) * 8)
    (folder / "labels.txt").write_text(labels)
    (folder / "metrics.json").write_text(json.dumps({"snapshot": "snap-0001", "accuracy": 0.9}))
    return folder


def test_publish_then_fetch_gives_the_same_bytes_and_names_are_immutable(tmp_path, s3) -> None:
    bucket = s3.make_bucket("models-a")
    transfer = TransferSettings(endpoint_url=s3.endpoint)
    src = _model(tmp_path / "m1")
    url = publish_model(src, f"s3://{bucket}/team", "m1", transfer)
    assert url == f"s3://{bucket}/team/models/m1"
    assert publish_model(src, f"s3://{bucket}/team", "m1", transfer) == url
    got = fetch_model(url, tmp_path / "got", transfer)
    for name in ("model.tflite", "labels.txt", "metrics.json"):
        assert (got / name).read_bytes() == (src / name).read_bytes()
    other = _model(tmp_path / "m2", labels="a\nc\n")
    with pytest.raises(QueryError, match="different model"):
        publish_model(other, f"s3://{bucket}/team", "m1", transfer)
    with pytest.raises(ConfigError, match="model name"):
        publish_model(other, f"s3://{bucket}/team", "M 1", transfer)


def test_a_replaced_model_object_is_refused_on_fetch(tmp_path, s3) -> None:
    bucket = s3.make_bucket("models-b")
    transfer = TransferSettings(endpoint_url=s3.endpoint)
    src = _model(tmp_path / "m1")
    url = publish_model(src, f"s3://{bucket}", "m1", transfer)
    client = s3.client()
    manifest = json.loads(
        client.get_object(Bucket=bucket, Key="models/m1/manifest.json")["Body"].read()
    )
    entry = next(f for f in manifest["files"] if f["path"] == "model.tflite")
    key = f"objects/sha256/{entry['sha256'][:2]}/{entry['sha256']}"
    client.put_object(Bucket=bucket, Key=key, Body=b"TFL3 evil")
    with pytest.raises(ChecksumMismatch, match=r"model\.tflite"):
        fetch_model(url, tmp_path / "got", transfer)


def test_model_pull_hands_the_model_to_the_rigs_validation(tmp_path, s3) -> None:
    bucket = s3.make_bucket("models-c")
    url = publish_model(_model(tmp_path / "m1"), f"s3://{bucket}", "m1",
                        TransferSettings(endpoint_url=s3.endpoint))  # fmt: skip
    server = start_server(tmp_path / "srv")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "web.cli", "model", "pull", url, "--rig", server.url,
             "--key", TRAINER_KEY, "--endpoint-url", s3.endpoint],
            env={**s3.env(), "PYTHONPATH": str(REPO), "COLUMNS": "200"},
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        with server.client() as client:
            models = client.get("/api/models").json()
    finally:
        server.stop()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "rejected" in done.stderr
    # NOTE: the rig stored the upload and its own validation rejected it: the push path ran.
    listed = json.dumps(models)
    assert listed.count('"rejected"') == 1 and '"validated"' not in listed
