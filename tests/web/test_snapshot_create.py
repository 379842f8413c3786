"""``POST /api/snapshots``: the server that owns the data folder writes the snapshot.

``partrig dataset snapshot`` sends its options here while a server runs (the store's one writer
is the lock holder), so the README's flow works against the demo.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from web_helpers import OP, TRAIN

_SPEC = importlib.util.spec_from_file_location(
    "snapshot_data", Path(__file__).resolve().parents[1] / "capture" / "snapshot_data.py"
)
snapshot_data = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(snapshot_data)


def test_an_operator_key_writes_a_snapshot_split_by_instance(client, store):
    snapshot_data.add_shots(store, labels=("a", "b"), instances=4, angles=2, backgrounds=(1,))
    r = client.post("/api/snapshots", json={"seed": 1, "formats": ["csv"]}, headers=OP)
    assert r.status_code == 201, r.text
    manifest = r.json()["manifest"]
    assert manifest["id"] == "snap-0001" and manifest["formats"] == ["csv"]
    assert manifest["rules"]["group_by"] == "instance" and manifest["rules"]["seed"] == 1
    assert all(n > 0 for n in manifest["counts"]["by_split"].values())
    assert "duplicates" in r.json()["report"]
    listed = client.get("/api/snapshots", headers=TRAIN).json()["items"]
    assert [s["id"] for s in listed] == ["snap-0001"]


def test_a_trainer_key_may_read_snapshots_but_not_write_one(client, store):
    snapshot_data.add_shots(store, labels=("a",), instances=3, angles=1, backgrounds=(1,))
    assert client.post("/api/snapshots", json={}, headers=TRAIN).status_code == 403


def test_too_few_instances_answers_400_saying_what_to_capture(client, store):
    snapshot_data.add_shots(store, labels=("a",), instances=2, angles=2, backgrounds=(1,))
    r = client.post("/api/snapshots", json={}, headers=OP)
    assert r.status_code == 400
    assert "too few part instances" in r.json()["detail"]


def test_bad_options_are_refused_before_anything_is_written(client, store):
    r = client.post("/api/snapshots", json={"group_by": "colour", "train": 2}, headers=OP)
    assert r.status_code == 422
    assert not list(Path(store.data_dir).glob("snapshots/snap-*"))
