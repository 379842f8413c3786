"""``partrig model push``: the multipart upload, checked by a real HTTP stub of the rig."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, File, Header, HTTPException, UploadFile
from typer.testing import CliRunner

from classify.push import push
from rig.errors import AccessDenied, ModelError
from web.cli import app as cli_app

KEY = "trainer-key-123"


class StubRig:
    """A FastAPI app that accepts POST /api/models like the rig and records what came."""

    def __init__(self, state: str = "validated") -> None:
        self.received: list[dict] = []
        self.app = FastAPI()

        @self.app.post("/api/models", status_code=201)
        async def upload(
            files: list[UploadFile] = File(...), x_api_key: str | None = Header(None)
        ) -> dict:
            if x_api_key != KEY:
                raise HTTPException(401, "unknown key")
            got = {f.filename: await f.read() for f in files}
            self.received.append({"files": got, "types": [f.content_type for f in files]})
            return {"id": "model-0004", "state": state, "validation": {"accuracy": 0.97}}


@pytest.fixture
def rig_url():
    stubs: list[StubRig] = []

    def start(state: str = "validated") -> tuple[str, StubRig]:
        stub = StubRig(state)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(stub.app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        stubs.append((server, thread))
        return f"http://127.0.0.1:{sock.getsockname()[1]}", stub

    yield start
    for server, thread in stubs:
        server.should_exit = True
        thread.join(5)


def model_dir(tmp_path, *, optional: bool = True, metrics: dict | None = None, name="model"):
    d = tmp_path / name
    d.mkdir()
    (d / "model.tflite").write_bytes(b"TFL3-int8" + bytes(range(256)))
    (d / "labels.txt").write_text("a\nb\n")
    (d / "metrics.json").write_text(json.dumps(metrics or {"snapshot": "snap-0003"}))
    if optional:
        (d / "model-float.tflite").write_bytes(b"TFL3-float")
        (d / "confusion.png").write_bytes(b"\x89PNG...")
    return d


def test_push_sends_every_file_as_a_files_part_with_its_basename(rig_url, tmp_path) -> None:
    url, stub = rig_url()
    d = model_dir(tmp_path)
    answer = push(url, d, key=KEY)
    assert answer == {"id": "model-0004", "state": "validated", "validation": {"accuracy": 0.97}}
    (got,) = stub.received
    assert set(got["files"]) == {
        "model.tflite",
        "labels.txt",
        "metrics.json",
        "model-float.tflite",
        "confusion.png",
    }
    for name, data in got["files"].items():
        assert data == (d / name).read_bytes()
    assert "image/png" in got["types"] and "text/plain" in got["types"]


def test_optional_files_are_left_out_when_absent(rig_url, tmp_path) -> None:
    url, stub = rig_url()
    push(url + "/", model_dir(tmp_path, optional=False), key=KEY)
    assert set(stub.received[0]["files"]) == {"model.tflite", "labels.txt", "metrics.json"}


def test_a_refused_key_is_access_denied(rig_url, tmp_path) -> None:
    url, stub = rig_url()
    with pytest.raises(AccessDenied, match="401"):
        push(url, model_dir(tmp_path), key="wrong")
    with pytest.raises(AccessDenied, match="needs a trainer key"):
        push(url, model_dir(tmp_path, name="second"), key=None)
    assert stub.received == []


def test_an_incomplete_folder_is_refused_before_uploading(rig_url, tmp_path) -> None:
    url, stub = rig_url()
    d = model_dir(tmp_path)
    (d / "labels.txt").unlink()
    with pytest.raises(ModelError, match=r"lacks labels\.txt"):
        push(url, d, key=KEY)
    d2 = model_dir(tmp_path, metrics={"accuracy": 1.0}, name="no-snapshot")
    with pytest.raises(ModelError, match="snapshot"):
        push(url, d2, key=KEY)
    assert stub.received == []


def test_unreachable_rig_is_a_model_error(tmp_path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ModelError, match="cannot reach"):
        push(f"http://127.0.0.1:{port}", model_dir(tmp_path), key=KEY, timeout_s=5)


def test_cli_exits_1_when_the_rig_rejects_the_model(rig_url, tmp_path) -> None:
    url, _ = rig_url("rejected")
    result = CliRunner().invoke(
        cli_app, ["model", "push", url, str(model_dir(tmp_path))], env={"PARTRIG_KEY": KEY}
    )
    assert result.exit_code == 1
    assert "model-0004" in result.output


def test_cli_train_on_a_missing_folder_says_so(tmp_path) -> None:
    result = CliRunner().invoke(
        cli_app, ["train", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 2
    assert "no manifest.json" in result.output


def test_dataset_url_is_pulled_and_a_folder_is_used_as_is(monkeypatch, tmp_path) -> None:
    import capture.pull.client
    from classify.train_cli import resolve_dataset

    calls = []

    class Result:
        root = tmp_path / "pulled" / "snap-0003"

    def fake_pull(url, snapshot_id, dest, *, key, fmt):
        calls.append((url, snapshot_id, dest, key, fmt))
        return Result()

    monkeypatch.setattr(capture.pull.client, "pull", fake_pull)
    dest = tmp_path / "pulled"
    got = resolve_dataset("http://rig:8000/api/snapshots/snap-0003", None, dest, KEY)
    assert got == Result.root
    resolve_dataset("http://rig:8000/", "snap-0009", dest, KEY)
    assert calls == [
        ("http://rig:8000", "snap-0003", dest, KEY, "webdataset"),
        ("http://rig:8000", "snap-0009", dest, KEY, "webdataset"),
    ]
    assert resolve_dataset(str(tmp_path / "snap"), None, dest, None) == tmp_path / "snap"
    import typer

    with pytest.raises(typer.BadParameter, match="--snapshot"):
        resolve_dataset("http://rig:8000", None, dest, KEY)
