"""The label queue's undo, as a property: any mix of accepts, discards, undos and redos, undone
to the end, leaves the dataset exactly as it was (live shots and labels, files in place, review
items, queue states), and redoing it all again gives exactly the state before the undos."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from capture.store import DatasetStore, ShotRecord
from capture.store.sorting import DecisionRecord
from rig.errors import RunStateError

LABELS = ["a", "b", "c"]


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (90, 90, 90)).save(buf, "JPEG")
    return buf.getvalue()


def fill(store: DatasetStore) -> list[int]:
    """Two review items and two queued shots (one of them a bag shot); the queue ids."""
    for label in LABELS:
        store.upsert_part(label)
    for _ in range(2):
        store.add_decision(
            DecisionRecord(
                label="a", confidence=0.5, bin=0, reason="uncertain",
                top_k=[("a", 0.5), ("b", 0.4)], crop_jpeg=jpeg(), review=True,
            )
        )  # fmt: skip
    run_id = store.create_run("bag", "", "{}", 2)
    shots = []
    for i, label in enumerate(["unlabelled", "c"]):
        record = ShotRecord(
            label=label, instance_id=f"i{i}", path="", sha256="0" * 64, size=0,
            run_id=run_id, shot_index=i,
        )  # fmt: skip
        shots.append(store.save_shots([(f"images/{run_id}/{i}.jpg", jpeg(), record)])[0])
    store.enqueue_shots([(s, [("b", 0.9), ("a", 0.1)], None) for s in shots])
    return [i["id"] for i in store.label_queue("p", limit=10)["items"]]


def state(store: DatasetStore) -> dict[str, Any]:
    live = store.query("SELECT id, label, path FROM shots WHERE deleted_at IS NULL ORDER BY id")
    return {
        "shots": [(r["id"], r["label"]) for r in live],
        "files": all((store.data_dir / r["path"]).exists() for r in live),
        "review": [
            tuple(r.values())
            for r in store.query("SELECT id, state, label, shot_id FROM review_items ORDER BY id")
        ],
        "queue": [
            tuple(r.values()) for r in store.query("SELECT id, state FROM label_queue ORDER BY id")
        ],
    }


STEP = st.one_of(
    st.tuples(st.just("accept"), st.lists(st.integers(0, 3), min_size=1, max_size=3),
              st.sampled_from([None, *LABELS])),
    st.tuples(st.just("discard"), st.lists(st.integers(0, 3), min_size=1, max_size=3), st.none()),
    st.tuples(st.just("undo"), st.none(), st.none()),
    st.tuples(st.just("redo"), st.none(), st.none()),
)  # fmt: skip


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=8))
def test_undoing_every_action_restores_the_dataset_exactly(steps) -> None:
    with tempfile.TemporaryDirectory() as tmp, DatasetStore.open(Path(tmp)) as store:
        ids = fill(store)
        start = state(store)
        for kind, picks, label in steps:
            try:
                if kind == "accept":
                    store.label_accept([ids[i] for i in picks], "p", label)
                elif kind == "discard":
                    store.label_discard([ids[i] for i in picks], "p")
                elif kind == "undo":
                    store.label_undo("p")
                else:
                    store.label_redo("p")
            except RunStateError:
                assert kind in ("undo", "redo")  # nothing to undo or redo
        done = state(store)
        undos = 0
        while store.label_counts("p")["undo"]:
            store.label_undo("p")
            undos += 1
        assert state(store) == start
        for _ in range(undos):
            store.label_redo("p")
        assert state(store) == done
        assert store.check().ok
