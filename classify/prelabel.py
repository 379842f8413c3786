"""Pre-labelling: the active model's guesses for a bag run's shots, queued for the station.

Why: a "bag" run photographs a handful of unsorted or mixed parts.  Its shots carry the plan's
placeholder label; the model's top-k (with its margin) puts each one in the labelling queue, so
a person confirms the confident ones in bulk after a glance and labels the rest, least certain
first.  The crop, preprocessing and model are exactly the sorter's (:meth:`Classifier.predict`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image

from rig.errors import ModelError, NotFound, QueryError

#: Shots read and classified per store round trip; bounds memory on a 12 MP run.
BATCH = 32
#: The most shots one request pre-labels (a bag run is a handful of parts in a few poses).
MAX_SHOTS = 20_000


def run_shot_ids(store: Any, run_id: int) -> list[int]:
    """The live shots of a run, in shot order; NotFound for a run without any."""
    rows = store.query(
        "SELECT id FROM shots WHERE run_id = ? AND deleted_at IS NULL ORDER BY shot_index, id",
        (int(run_id),),
    )
    if not rows:
        raise NotFound(f"run {run_id} has no shots to pre-label")
    if len(rows) > MAX_SHOTS:
        raise QueryError(f"run {run_id} has {len(rows)} shots; pre-label at most {MAX_SHOTS}")
    return [int(r["id"]) for r in rows]


def prelabel_shots(
    store: Any, classifier: Any, model_id: str | None, shot_ids: Iterable[int], top_k: int = 3
) -> int:
    """Classify each shot's part (its box, its colour matrix) and queue it; how many queued."""
    if classifier is None:
        raise ModelError("no model is active: activate one on the Models page to pre-label")
    queued = 0
    batch: list[tuple[int, list[tuple[str, float]], str | None]] = []
    for shot_id in shot_ids:
        shot = store.get_shot(shot_id)
        prediction = classifier.predict(
            _pixels(store, shot), _box(shot), shot.get("colour_matrix"), top_k
        )
        batch.append((int(shot_id), list(prediction.top_k), model_id))
        if len(batch) >= BATCH:
            queued += store.enqueue_shots(batch)
            batch = []
    if batch:
        queued += store.enqueue_shots(batch)
    return queued


def _pixels(store: Any, shot: dict[str, Any]) -> np.ndarray:
    path = store.data_dir / shot["path"]
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise ModelError(
            f"shot {shot['id']}'s image {shot['path']} cannot be read ({exc})"
        ) from None


def _box(shot: dict[str, Any]) -> tuple[int, int, int, int] | None:
    if shot.get("bbox_w") is None:
        return None
    return (int(shot["bbox_x"]), int(shot["bbox_y"]), int(shot["bbox_w"]), int(shot["bbox_h"]))
