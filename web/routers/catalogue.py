"""The part catalogue's API: parts with their attributes, CSV in and out, per-shot attributes.

Why the attribute edit of a shot is one route for both pages: the shot page and the labelling
station set an attribute the same way, as one undoable action in the person's history, so
``POST /api/label/undo`` (the station's ``z``) takes back an attribute edit exactly as it takes
back a label.  A part outside the catalogue is added only when the request says
``confirm_new`` (contracts: a typo must not silently become a class).  A CSV upload is bounded
by ``web.max_body_kb``; ``partrig dataset catalogue import`` takes larger lists.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from capture.catalogue.csv_import import catalogue_csv, import_catalogue, parse_catalogue_csv
from capture.imports.sources import normalise_label
from capture.store.catalogue import Catalogue, attribute_names, catalogue
from rig.errors import QueryError, RunStateError
from web.deps import OperatorAuth, StoreDep, ViewerAuth

#: Mounted by :mod:`web.routers.dataset` under its ``/api/dataset`` prefix.
router = APIRouter(tags=["catalogue"])

PartLabel = Annotated[str, Path(min_length=1, max_length=100)]
ShotId = Annotated[int, Path(ge=1, le=2**63 - 1)]
AttrValue = str | float | None


class PartBody(BaseModel):
    name: str | None = Field(default=None, max_length=200, description="a display name")
    attributes: dict[str, AttrValue] = Field(
        default_factory=dict,
        max_length=32,
        description="category, colour and free attributes; a blank value removes one",
    )
    replace: bool = Field(default=True, description="set exactly these (else merge)")
    confirm_new: bool = Field(
        default=False, description="yes, add this label to the parts catalogue as a new part"
    )


class AttributeBody(BaseModel):
    name: str = Field(min_length=1, max_length=40, description="e.g. finish, nominal_length_mm")
    value: AttrValue = Field(
        default=None, description="a word or a number; null or blank removes the shot's override"
    )
    shot_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        default_factory=list, max_length=500, description="more shots for the same edit"
    )


@router.get("/catalogue")
def get_catalogue(store: StoreDep, who: ViewerAuth) -> dict[str, Any]:
    """Every part with its name and attributes, and every attribute name in use."""
    conn = store.db.conn
    return {"parts": catalogue(conn), "attribute_names": attribute_names(conn)}


@router.get("/catalogue.csv")
def catalogue_file(store: StoreDep, who: ViewerAuth) -> Response:
    """The catalogue as a parts list (what the import reads)."""
    body = catalogue_csv(catalogue(store.db.conn))
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="parts.csv"'},
    )


@router.put("/catalogue/{label}")
def put_part(label: PartLabel, body: PartBody, store: StoreDep, who: OperatorAuth) -> Any:
    """Set one part's name and attributes; a label not in the catalogue needs ``confirm_new``."""
    known = set(catalogue(store.db.conn))
    if label not in known:
        label = normalise_label(label, "label")
        if label not in known and not body.confirm_new:
            raise RunStateError(
                f"'{label}' is not in the parts catalogue: confirm to add it as a new part, or "
                "choose an existing label"
            )
    attrs = Catalogue(store).set_part(label, body.attributes, name=body.name, replace=body.replace)
    return {"label": label, "name": catalogue(store.db.conn)[label]["name"], "attributes": attrs}


@router.post("/catalogue/import")
async def import_csv(request: Request, store: StoreDep, who: OperatorAuth) -> dict[str, Any]:
    """Import a parts list (CSV text as the body): every row or none; errors name row and column."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise QueryError("the parts list is not UTF-8 text; save the sheet as CSV UTF-8") from None
    done = import_catalogue(store, parse_catalogue_csv(text, "the uploaded parts list"))
    return {"parts": done.parts, "new_labels": done.new_labels, "attributes": done.attributes}


@router.get("/shots/{shot_id}/attributes")
def shot_attributes(shot_id: ShotId, store: StoreDep, who: ViewerAuth) -> dict[str, Any]:
    """A shot's attributes: effective, its part's, and its own overrides."""
    return Catalogue(store).shot_attributes(shot_id)


@router.post("/shots/{shot_id}/attributes")
def set_attribute(
    shot_id: ShotId, body: AttributeBody, store: StoreDep, who: OperatorAuth
) -> dict[str, Any]:
    """Override one attribute on this shot (and ``shot_ids``): one undoable action.

    ``POST /api/label/undo`` takes it back; the answer carries the shot's attributes and your
    undo/redo counts.
    """
    ids = [shot_id, *body.shot_ids]
    done = Catalogue(store).set_shot_attribute(ids, body.name, body.value, who.name)
    out = Catalogue(store).shot_attributes(shot_id)
    return dict(out, action=done["action"], counts=store.label_counts(who.name))
