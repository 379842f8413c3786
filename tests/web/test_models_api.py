"""The models API over HTTP: trainer upload (multipart), validation answer, list, activate,
rollback, roles, and the Models page.

Models are real full-int8 TFLite files and the snapshot a real one (tests/classify/
registry_helpers.py), so the upload runs the whole validation the rig runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "classify"))

from registry_helpers import (
    LABELS,
    RecordingSorter,
    add_colour_shots,
    colour_model,
    make_snapshot,
    upload_files,
)
from web_helpers import OP, PASSWORD, TRAIN, VIEW

from web.security import key_name


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("api-models")
    return {"good": colour_model(root / "good"), "bad": colour_model(root / "bad", swap=True)}


@pytest.fixture
def rig_client(client, store, settings):
    add_colour_shots(store)
    make_snapshot(store, settings)
    sorter = RecordingSorter()
    client.app.state.models.sorter = sorter
    return client, sorter


def multipart(model_dir: Path, drop: str | None = None) -> list[tuple[str, tuple[str, bytes]]]:
    files = upload_files(model_dir)
    return [("files", (name, data)) for name, data in files.items() if name != drop]


def test_a_trainer_uploads_a_model_and_learns_at_once_that_it_passed(rig_client, model_dirs):
    client, _ = rig_client
    r = client.post("/api/models", files=multipart(model_dirs["good"]), headers=TRAIN)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"] == "model-0001" and body["state"] == "validated"
    assert body["validation"]["accuracy"] == 1.0
    listed = client.get("/api/models", headers=VIEW).json()
    assert [m["id"] for m in listed["items"]] == ["model-0001"] and listed["active"] is None
    detail = client.get("/api/models/model-0001", headers=VIEW).json()
    assert detail["labels"] == LABELS
    assert {f["name"] for f in detail["files"]} == {"model.tflite", "labels.txt", "metrics.json"}


def test_a_failing_model_is_stored_as_rejected_with_its_reason(rig_client, model_dirs):
    client, _ = rig_client
    r = client.post("/api/models", files=multipart(model_dirs["bad"]), headers=TRAIN)
    assert r.status_code == 201 and r.json()["state"] == "rejected"
    assert "needs 0.8000" in r.json()["validation"]["reason"]
    again = client.post("/api/models/model-0001/activate", headers=OP)
    assert again.status_code == 409 and "rejected" in again.json()["detail"]


def test_uploads_that_are_not_models_are_422_and_store_nothing(rig_client, model_dirs):
    client, _ = rig_client
    missing = client.post(
        "/api/models", files=multipart(model_dirs["good"], drop="model.tflite"), headers=TRAIN
    )
    assert missing.status_code == 422 and "model.tflite" in missing.json()["detail"]
    twice = [*multipart(model_dirs["good"]), ("files", ("labels.txt", b"x\n"))]
    assert client.post("/api/models", files=twice, headers=TRAIN).status_code == 422
    sneaky = [*multipart(model_dirs["good"]), ("files", ("../../partrig.db", b"x"))]
    assert client.post("/api/models", files=sneaky, headers=TRAIN).status_code == 422
    assert client.get("/api/models", headers=VIEW).json()["items"] == []


def test_only_trainers_and_operators_upload_and_only_operators_activate(rig_client, model_dirs):
    client, _ = rig_client
    files = multipart(model_dirs["good"])
    assert client.post("/api/models", files=files).status_code == 401
    assert client.post("/api/models", files=files, headers=VIEW).status_code == 403
    assert client.post("/api/models", files=files, headers=TRAIN).status_code == 201
    assert client.post("/api/models/model-0001/activate", headers=TRAIN).status_code == 403
    assert client.post("/api/models/rollback", headers=VIEW).status_code == 403
    assert client.get("/api/models/model-9999", headers=VIEW).status_code == 404
    assert client.get("/api/models/not-a-model", headers=VIEW).status_code == 422


def test_activate_swaps_the_running_sorter_and_rollback_is_one_call(rig_client, model_dirs):
    client, sorter = rig_client
    for _ in range(2):
        r = client.post("/api/models", files=multipart(model_dirs["good"]), headers=TRAIN)
        assert r.json()["state"] == "validated"
    assert client.post("/api/models/rollback", headers=OP).status_code == 409
    assert client.post("/api/models/model-0001/activate", headers=OP).status_code == 200
    r = client.post("/api/models/model-0002/activate", headers=OP)
    assert r.json() == {
        "model_id": "model-0002",
        "previous_model_id": "model-0001",
        "changed": True,
    }
    assert [s[1] for s in sorter.swaps] == ["model-0001", "model-0002"]
    listed = client.get("/api/models", headers=VIEW).json()
    assert listed["active"] == "model-0002" and listed["rollback_to"] == "model-0001"
    r = client.post("/api/models/rollback", headers=OP)
    assert r.status_code == 200 and r.json()["model_id"] == "model-0001"
    assert sorter.swaps[-1][1] == "model-0001"
    history = client.get("/api/models/activations", headers=VIEW).json()
    assert [(h["action"], h["model_id"]) for h in history] == [
        ("rollback", "model-0001"),
        ("activate", "model-0002"),
        ("activate", "model-0001"),
    ]
    assert {h["who"] for h in history} == {key_name(OP["X-Api-Key"])}


def test_the_models_sorter_and_review_pages_render_in_the_nav(client):
    client.post("/login", data={"password": PASSWORD, "next": "/"})
    for url in ("/models", "/sorter", "/review"):
        r = client.get(url)
        assert r.status_code == 200, url
        assert 'href="/models"' in r.text and 'href="/sorter"' in r.text
        assert 'href="/review"' in r.text and 'id="estop"' in r.text
