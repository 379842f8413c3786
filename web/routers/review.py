"""The review queue: uncertain crops from the sorter, labelled with one click or discarded.

Each item is also a labelling-station item (``/label``, :mod:`web.routers.label`): labelling or
discarding here is the station's own undoable action, so both pages share one queue and history.

A labelled item becomes a shot in the dataset (``source = "sorter"``, a fresh instance of its
own), so the next snapshot trains on exactly the parts the model was unsure of.  Crops are
served by item id only; the stored path is checked to resolve inside the data directory.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from rig.errors import NotFound, RunStateError
from web.deps import Label, OperatorAuth, StoreDep, ViewerAuth
from web.labels import checked_label, label_choices

router = APIRouter(prefix="/api/review", tags=["review"])

ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class LabelBody(BaseModel):
    label: Label = Field(description="what the part really is, e.g. brick-2x4-red")
    confirm_new: bool = Field(
        default=False, description="yes, add a label outside the parts catalogue as a new part"
    )


def _require_open(store: Any, item_id: int) -> None:
    state = store.get_review_item(item_id)["state"]
    if state != "open":
        raise RunStateError(f"review item {item_id} is already {state}; undo it on /label")


@router.get("")
def queue(
    store: StoreDep,
    who: ViewerAuth,
    state: Literal["open", "labelled", "discarded"] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 60,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> dict[str, Any]:
    """Review items (newest first) with the model's guess, counts per state and label choices."""
    items = store.review_queue(state=state, limit=limit, before_id=before_id)
    return {
        "items": items,
        "next_before_id": items[-1]["id"] if len(items) == limit else None,
        "counts": store.review_counts(),
        "labels": label_choices(store),
    }


@router.get(
    "/{item_id}/crop",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def crop(item_id: ItemId, store: StoreDep, who: ViewerAuth) -> FileResponse:
    """The crop the sorter saw, by item id."""
    item = store.get_review_item(item_id)
    root = FilePath(store.data_dir).resolve()
    path = (root / str(item["crop_path"])).resolve()
    if not path.is_relative_to(root):
        raise HTTPException(400, f"review item {item_id} names a file outside the data directory")
    if not path.is_file():
        raise NotFound(f"the crop of review item {item_id} is missing; discard the item")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private"})


@router.post("/{item_id}/label")
def label(item_id: ItemId, body: LabelBody, store: StoreDep, who: OperatorAuth) -> dict[str, Any]:
    """Label the part; it becomes a sorter-sourced shot for the next snapshot (409 if resolved).

    The same undoable action as the labelling station's accept; the label goes through the one
    normaliser, and one outside the catalogue needs ``confirm_new`` (409 otherwise).
    """
    _require_open(store, item_id)
    name = checked_label(store, body.label, body.confirm_new)
    shot_id = store.label_review_item(item_id, name, who.name)
    return {"item": store.get_review_item(item_id), "shot_id": shot_id}


@router.post("/{item_id}/discard")
def discard(item_id: ItemId, store: StoreDep, who: OperatorAuth) -> dict[str, Any]:
    """Drop the item (blurred, two parts at once); the crop and decision are kept (undoable)."""
    _require_open(store, item_id)
    store.discard_review_item(item_id, who.name)
    return {"item": store.get_review_item(item_id)}
