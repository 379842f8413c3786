"""The sorter's API: start, stop, status, the decision log, and its incidents.

The sorter runs inside this server (one process owns the camera and the actuator).  A fault
(camera, stuck part, actuator, model) puts it in a safe state and latches; it stays stopped,
with its incident on the page, until an operator acknowledges it here.  Starting is refused
(409) while a capture run uses the camera, while the sorter's or the rig's fault is latched,
and without an active model unless ``collect_for_review`` is chosen explicitly (then every part
goes to the review bin, and the page shows a banner).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from web.deps import OperatorAuth, RunsDep, StoreDep, ViewerAuth
from web.sorting import CAMERA_CLAIM, require_idle_rig

router = APIRouter(prefix="/api/sorter", tags=["sorter"])

#: Incidents the sorter records have kinds starting with this.
SORTER_KINDS = "sorter_"


def get_sorter(request: Request) -> Any:
    sorter = getattr(request.app.state, "sorter", None)
    if sorter is None:
        sorting = getattr(request.app.state, "sorting", None)
        why = getattr(sorting, "error", None) or "see the server log"
        raise HTTPException(503, f"the sorter is not available: {why}")
    return sorter


def sorter_status(request: Request, store: Any) -> dict[str, Any]:
    """The sorter's own status plus the durable counts and the active model."""
    sorter = getattr(request.app.state, "sorter", None)
    sorting = getattr(request.app.state, "sorting", None)
    status: dict[str, Any] = dict(sorter.status()) if sorter is not None else {"state": "absent"}
    active = store.active_model()
    status.update(
        available=sorter is not None,
        error=getattr(sorting, "error", None),
        active_model=active["id"] if active else None,
        decisions=store.decision_counts(),
        review=store.review_counts(),
    )
    return status


@router.get("/status")
def status(request: Request, store: StoreDep, who: ViewerAuth) -> dict[str, Any]:
    """State (stopped, running, faulted), counts, model, last decision and any open incident."""
    return sorter_status(request, store)


class StartBody(BaseModel):
    collect_for_review: bool = Field(
        False,
        description="no model is active: sort anyway, sending every part to review (a banner "
        "shows while the sorter runs this way)",
    )


@router.post("/start")
def start(
    request: Request,
    store: StoreDep,
    runs: RunsDep,
    who: OperatorAuth,
    body: Annotated[StartBody | None, Body()] = None,
) -> dict[str, Any]:
    """Start sorting (409 while a capture run is live, while a fault is latched, or with no
    active model unless ``collect_for_review`` is true)."""
    sorter = get_sorter(request)
    with CAMERA_CLAIM:
        require_idle_rig(runs, getattr(request.app.state, "rig", None))
        sorter.start(collect_for_review=body is not None and body.collect_for_review)
    return sorter_status(request, store)


@router.post("/stop")
def stop(request: Request, store: StoreDep, who: OperatorAuth) -> dict[str, Any]:
    """Stop after the part in hand; the actuator is left at rest."""
    get_sorter(request).stop()
    return sorter_status(request, store)


@router.post("/acknowledge")
def acknowledge(request: Request, store: StoreDep, who: OperatorAuth) -> dict[str, Any]:
    """Acknowledge the sorter's latched fault and its open incidents; it stays stopped."""
    sorter = get_sorter(request)
    # NOTE: the loop idles while latched; stopping it first means the operator, having cleared
    # the platform, decides when sorting resumes (Start), rather than the acknowledgement.
    sorter.stop()
    sorter.acknowledge(who.name)
    for incident in store.list_incidents(unacknowledged=True, limit=1000):
        if str(incident["kind"]).startswith(SORTER_KINDS):
            store.acknowledge_incident(incident["id"], who.name)
    return sorter_status(request, store)


@router.get("/decisions")
def decisions(
    store: StoreDep,
    who: ViewerAuth,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    label: Annotated[str | None, Query(max_length=100)] = None,
    model_id: Annotated[str | None, Query(max_length=40)] = None,
) -> dict[str, Any]:
    """The decision log, newest first; page with ``before_id`` = the last id of a page."""
    items = store.list_decisions(
        limit=limit, before_id=before_id, label=label or None, model_id=model_id or None
    )
    return {"items": items, "next_before_id": items[-1]["id"] if len(items) == limit else None}


@router.get("/incidents")
def incidents(
    store: StoreDep,
    who: ViewerAuth,
    open_only: Annotated[bool, Query(alias="open")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The sorter's incidents (camera, stuck part, actuator, model), newest first."""
    rows = store.list_incidents(unacknowledged=open_only, limit=1000)
    return [r for r in rows if str(r["kind"]).startswith(SORTER_KINDS)][:limit]


@router.post("/incidents/{incident_id}/acknowledge")
def acknowledge_incident(
    incident_id: Annotated[int, Path(ge=1, le=2**63 - 1)], store: StoreDep, who: OperatorAuth
) -> dict[str, Any]:
    """Mark one incident seen (recorded with who); a latched fault needs /acknowledge too."""
    store.acknowledge_incident(incident_id, who.name)
    return {"acknowledged": incident_id}
