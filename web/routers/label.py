"""The labelling station: one crop at a time, the model's top-k, accept, discard, undo, redo.

Serves the label queue (the sorter's review items, pre-labelled bag runs, anything queued for a
check), least certain first; every action is one undoable entry of the person's own history
(:mod:`capture.store.label_queue`), and every answer carries fresh counts so the page never
shows stale ones.  Labels pass through the one normaliser
(:func:`capture.imports.sources.normalise_label`); a label outside the parts catalogue is refused
(409) unless the request says ``confirm_new``: a typo must not silently become a class.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from rig.errors import NotFound
from web.deps import OperatorAuth, StoreDep, ViewerAuth
from web.labels import checked_label, label_choices
from web.routers.models import get_registry
from web.routers.pages import _page

router = APIRouter(prefix="/api/label", tags=["label"])
page_router = APIRouter(include_in_schema=False)

QueueId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Ids = Annotated[
    list[Annotated[int, Field(ge=1, le=2**63 - 1)]], Field(min_length=1, max_length=500)
]


class AcceptBody(BaseModel):
    ids: Ids = Field(description="queue item ids, in order; one undoable action for all")
    label: str | None = Field(
        default=None,
        max_length=100,
        description="the label for every item; omitted: each keeps its label or top-1",
    )
    confirm_new: bool = Field(
        default=False, description="yes, add this label to the parts catalogue as a new part"
    )


class DiscardBody(BaseModel):
    ids: Ids = Field(description="queue item ids to discard (blurred, two parts, not a part)")


class CursorBody(BaseModel):
    queue_id: int = Field(ge=1, le=2**63 - 1, description="the item the person is on")


class PrelabelBody(BaseModel):
    run_id: int = Field(ge=1, le=2**63 - 1, description="the bag run whose shots to pre-label")


@router.get("/queue")
def queue(
    store: StoreDep, who: ViewerAuth, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> dict[str, Any]:
    """Open items, least certain first; ``start`` is where this person left off."""
    out = store.label_queue(who.name, limit=limit)
    out["counts"] = store.label_counts(who.name)
    out["labels"] = label_choices(store)
    return out


@router.get("/counts")
def counts(store: StoreDep, who: ViewerAuth) -> dict[str, int]:
    """Items per state and your undo/redo depth: the page polls it for others' work."""
    store.sync_label_queue()
    return store.label_counts(who.name)


@router.get("/items/{queue_id}")
def item(queue_id: QueueId, store: StoreDep, who: ViewerAuth) -> dict[str, Any]:
    """One queue item as the station shows it."""
    return store.label_item(queue_id)


def _file(store: Any, queue_id: int, which: str, media: str) -> FileResponse:
    rel = store.label_item_files(queue_id)[which]
    if not rel:
        raise NotFound(f"queue item {queue_id} has no {which}")
    root = FilePath(store.data_dir).resolve()
    path = (root / str(rel)).resolve()
    if not path.is_relative_to(root):
        raise HTTPException(400, f"queue item {queue_id} names a file outside the data directory")
    if not path.is_file():
        raise NotFound(f"the {which} of queue item {queue_id} is missing; discard the item")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=300"})


@router.get("/items/{queue_id}/image", response_class=FileResponse)
def image(queue_id: QueueId, store: StoreDep, who: ViewerAuth) -> FileResponse:
    """The full-size image (the shot, or the sorter's crop)."""
    shot_id = store.label_item(queue_id)["shot_id"]
    fmt = store.get_shot(shot_id).get("format") if shot_id else "jpeg"
    return _file(store, queue_id, "image", "image/png" if fmt == "png" else "image/jpeg")


@router.get("/items/{queue_id}/mask", response_class=FileResponse)
def mask(queue_id: QueueId, store: StoreDep, who: ViewerAuth) -> FileResponse:
    """The part's mask (PNG), drawn over the image."""
    return _file(store, queue_id, "mask", "image/png")


@router.post("/accept")
def accept(body: AcceptBody, store: StoreDep, who: OperatorAuth) -> dict[str, Any]:
    """Accept items (with one label, or each its own or its top-1); one undoable action."""
    label = None if body.label is None else checked_label(store, body.label, body.confirm_new)
    return store.label_accept(body.ids, who.name, label)


@router.post("/discard")
def discard(body: DiscardBody, store: StoreDep, who: OperatorAuth) -> dict[str, Any]:
    """Discard items (a shot to the trash, a review item dropped); one undoable action."""
    return store.label_discard(body.ids, who.name)


@router.post("/undo")
def undo(store: StoreDep, who: OperatorAuth) -> dict[str, Any]:
    """Take back your latest action exactly (409 if nothing to undo, or an item changed)."""
    return store.label_undo(who.name)


@router.post("/redo")
def redo(store: StoreDep, who: OperatorAuth) -> dict[str, Any]:
    """Do your most recently undone action again (409 if none, or an item changed)."""
    return store.label_redo(who.name)


@router.put("/cursor", status_code=204)
def cursor(body: CursorBody, store: StoreDep, who: ViewerAuth) -> Response:
    """Remember the item you are on: the station resumes there."""
    store.set_label_cursor(who.name, body.queue_id)
    return Response(status_code=204)


@router.post("/prelabel")
def prelabel(
    body: PrelabelBody, request: Request, store: StoreDep, who: OperatorAuth
) -> dict[str, Any]:
    """Queue a bag run's shots with the active model's top-k (the model must be active)."""
    from classify.prelabel import prelabel_shots, run_shot_ids

    ids = run_shot_ids(store, body.run_id)
    classifier, model_id = get_registry(request).load_active()
    queued = prelabel_shots(store, classifier, model_id, ids)
    return {"queued": queued, "model_id": model_id, "counts": store.label_counts(who.name)}


@page_router.get("/label")
def label_page(request: Request) -> Response:
    return _page(request, "label.html", page="label")
