"""The dataset browser's API: filtered shot pages, shot detail, files by shot id, curation.

Files are served by shot id only, never by a path from the request, and the stored relative
path is checked to resolve inside the data directory before it is opened: no request can
reach a file outside the dataset (path traversal).  Relabel and delete are recorded with who
did them; delete moves the files to ``data/trash/``, it never destroys them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from capture.store.catalogue import Catalogue
from capture.store.measure_schema import measurements_for
from rig.errors import NotFound, QueryError
from web.deps import Label, OperatorAuth, StoreDep, ViewerAuth
from web.routers.catalogue import router as catalogue_routes

#: Ids are SQLite integers: bounded so a huge number is a 422, not an overflow.
ShotId = Annotated[int, Path(ge=1, le=2**63 - 1)]

router = APIRouter(prefix="/api/dataset", tags=["dataset"])
# NOTE: the catalogue's routes first: GET /shots/{id}/{kind} below would take .../attributes.
router.include_router(catalogue_routes)


class RelabelBody(BaseModel):
    label: Label = Field(description="the part's correct label, e.g. 3001")


def shot_file(store: Any, shot: dict[str, Any], column: str) -> FilePath:
    """The absolute path of one of a shot's files, refusing anything outside the data dir."""
    rel = shot.get(column)
    if not rel:
        raise NotFound(f"shot {shot['id']} has no {column.removesuffix('_path')} file")
    root = FilePath(store.data_dir).resolve()
    path = (root / str(rel)).resolve()
    if not path.is_relative_to(root):
        raise HTTPException(400, f"shot {shot['id']} names a file outside the data directory")
    if not path.is_file():
        raise NotFound(f"the file of shot {shot['id']} is missing; run `partrig dataset check`")
    return path


@router.get("/shots")
def shots(
    store: StoreDep,
    who: ViewerAuth,
    label: Annotated[str | None, Query(max_length=100)] = None,
    background: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    run: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    instance: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 48,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    attr: Annotated[list[str] | None, Query(max_length=8)] = None,
    min_length_mm: Annotated[float | None, Query(ge=0, le=10_000)] = None,
    max_length_mm: Annotated[float | None, Query(ge=0, le=10_000)] = None,
    min_width_mm: Annotated[float | None, Query(ge=0, le=10_000)] = None,
    max_width_mm: Annotated[float | None, Query(ge=0, le=10_000)] = None,
) -> dict[str, Any]:
    """A page of shots, newest first; pass ``next_cursor`` back as ``cursor`` for the next.

    ``attr=name=value`` (repeatable) keeps shots whose attribute (the part's, or the shot's own
    override) equals the value; the size bounds keep measured shots within them (millimetres).
    """
    page = store.query_shots(
        label=label or None,
        background=background,
        run=run,
        instance=instance or None,
        limit=limit,
        cursor=cursor or None,
        attributes=attribute_query(attr or []),
        min_length_mm=min_length_mm,
        max_length_mm=max_length_mm,
        min_width_mm=min_width_mm,
        max_width_mm=max_width_mm,
    )
    return {"items": page.items, "next_cursor": page.next_cursor}


def attribute_query(pairs: list[str]) -> dict[str, str]:
    """``["colour=red", "category=screw"]`` as a dict; a pair without ``=`` is a 422."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or len(pair) > 250:
            raise QueryError(f"attr {pair[:60]!r}: give name=value, e.g. attr=colour=red")
        out[name.strip()] = value
    return out


@router.get("/shots/{shot_id}")
def shot(shot_id: ShotId, store: StoreDep, who: ViewerAuth) -> dict[str, Any]:
    """All of a shot's metadata, its size in millimetres, its attributes and its edit history."""
    row = store.get_shot(shot_id)
    return dict(row, edits=store.shot_edits(shot_id), **shot_extras(store, shot_id))


def shot_extras(store: Any, shot_id: int) -> dict[str, Any]:
    """The shot's measurement (``None`` when never measured) and attributes, for its page."""
    measured = measurements_for(store.db, [shot_id]).get(shot_id)
    return {"measurement": measured, "attributes": Catalogue(store).shot_attributes(shot_id)}


@router.get(
    "/shots/{shot_id}/{kind}",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
)
def shot_image(
    shot_id: ShotId, kind: Literal["image", "thumb", "mask"], store: StoreDep, who: ViewerAuth
) -> FileResponse:
    """The shot's image, thumbnail (made on first use) or mask PNG, by shot id."""
    row = store.get_shot(shot_id)
    if row.get("deleted_at"):
        raise NotFound(f"shot {shot_id} was deleted; its files are in the trash")
    if kind == "thumb" and not row.get("thumb_path"):
        row = dict(row, thumb_path=store.make_thumbnail(row["path"]))
    column = {"image": "path", "thumb": "thumb_path", "mask": "mask_path"}[kind]
    path = shot_file(store, row, column)
    media = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=60"})


@router.post("/shots/{shot_id}/relabel")
def relabel(shot_id: ShotId, body: RelabelBody, store: StoreDep, who: OperatorAuth) -> Any:
    """Give a shot the right label; recorded with who changed it from what."""
    row = store.relabel(shot_id, body.label, who.name)
    return dict(row, edits=store.shot_edits(shot_id))


@router.delete("/shots/{shot_id}")
def delete(shot_id: ShotId, store: StoreDep, who: OperatorAuth) -> dict[str, Any]:
    """Delete a shot (recorded); its files move to data/trash/, nothing is destroyed."""
    store.delete_shot(shot_id, who.name)
    return {"deleted": shot_id}


@router.get("/stats")
def stats(store: StoreDep, who: ViewerAuth) -> dict[str, Any]:
    """Live shot counts per class, background, run, instance and class × background."""
    return dataclasses.asdict(store.stats())
