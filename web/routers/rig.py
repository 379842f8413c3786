"""The rig: status, emergency stop, fault clearing, jog, zero, lights and the live preview.

The emergency stop goes straight to ``rig.emergency_stop()`` (``M112`` written ahead of the
link's queue) and is latched in the store too, so a restart still shows it.  Manual moves are
refused (409) while a run uses the turntable or a fault is latched.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from rig.errors import FaultLatched, RigError, RunStateError
from web.deps import OperatorAuth, RigDep, RunsDep, StoreDep, ViewerAuth, current_principal
from web.security import PREVIEW_TOKEN_TTL_S

log = logging.getLogger("web.rig")

router = APIRouter(prefix="/api/rig", tags=["rig"])

BOUNDARY = "partrigframe"


class ClearFaultBody(BaseModel):
    zero_confirmed: bool = Field(
        False, description="the operator turned the table to its zero mark (no endstop)"
    )


class JogBody(BaseModel):
    degrees: float = Field(ge=-360, le=360, description="relative turn, positive = forward")


class LightsBody(BaseModel):
    level: float = Field(ge=0, le=1, description="0 = off, 1 = full")


def stored_fault(store: Any) -> str | None:
    fault = store.active_fault() if store is not None else None
    return None if not fault else str(fault.get("reason") or fault)


def rig_status(rig: Any, store: Any, runs: Any) -> dict[str, Any]:
    status = dict(rig.status())
    status["fault"] = status.get("fault") or stored_fault(store)
    live = runs.live_run() if runs is not None else None
    status["live_run"] = live.run_id if live is not None else None
    return status


def _refuse_manual(rig: Any, store: Any, runs: Any) -> None:
    fault = rig.fault or stored_fault(store)
    if fault:
        raise FaultLatched(fault)
    live = runs.live_run()
    if live is not None:
        raise RunStateError(
            f"run {live.run_id} is using the turntable: pause or abort it before moving by hand"
        )


@router.get("/status")
def status(rig: RigDep, store: StoreDep, runs: RunsDep, who: ViewerAuth) -> dict[str, Any]:
    """Link state, firmware, angle, lights, camera and any latched fault."""
    return rig_status(rig, store, runs)


@router.post("/estop")
def estop(rig: RigDep, store: StoreDep, who: OperatorAuth) -> dict[str, Any]:
    """EMERGENCY STOP: M112 ahead of every queue; latches a fault until cleared."""
    warning = None
    try:
        rig.emergency_stop()
    except (RigError, OSError) as exc:
        # NOTE: a dead link cannot move the motor either; the latch below still stops runs.
        warning = f"the stop command could not be written ({exc}); switch the rig off"
        log.error("emergency stop: %s", warning)
    store.latch_fault(f"emergency stop pressed by {who.name}")
    return {"fault": rig.fault or stored_fault(store), "warning": warning}


@router.post("/clear-fault")
def clear_fault(
    body: ClearFaultBody, rig: RigDep, store: StoreDep, runs: RunsDep, who: OperatorAuth
) -> dict[str, Any]:
    """Reset the board and recover the position (homing, or the operator's zero)."""
    rig.clear_fault(zero_confirmed=body.zero_confirmed)
    store.clear_fault(who.name)
    return rig_status(rig, store, runs)


@router.post("/jog")
def jog(body: JogBody, rig: RigDep, store: StoreDep, runs: RunsDep, who: OperatorAuth) -> Any:
    """Turn the table by ``degrees`` and wait until it is there."""
    _refuse_manual(rig, store, runs)
    rig.turntable.rotate_by(body.degrees)
    rig.turntable.wait()
    return rig_status(rig, store, runs)


@router.post("/zero")
def set_zero(rig: RigDep, store: StoreDep, runs: RunsDep, who: OperatorAuth) -> Any:
    """Declare the current position 0°."""
    _refuse_manual(rig, store, runs)
    rig.turntable.set_zero()
    return rig_status(rig, store, runs)


@router.post("/lights")
def lights(body: LightsBody, rig: RigDep, store: StoreDep, runs: RunsDep, who: OperatorAuth) -> Any:
    """Set the LED ring's brightness."""
    _refuse_manual(rig, store, runs)
    rig.lights.set(body.level)
    return rig_status(rig, store, runs)


@router.get("/preview-token")
def preview_token(request: Request, who: ViewerAuth) -> dict[str, Any]:
    """A short-lived token for the preview ``<img>`` (an img cannot send headers)."""
    token = request.app.state.signer.sign("preview", {"role": who.role}, PREVIEW_TOKEN_TTL_S)
    return {
        "token": token,
        "url": f"/api/rig/preview.mjpg?token={token}",
        "expires_in_s": PREVIEW_TOKEN_TTL_S,
    }


@router.get(
    "/preview.mjpg",
    response_class=StreamingResponse,
    responses={200: {"content": {"multipart/x-mixed-replace": {}}}},
)
async def preview(
    request: Request, token: Annotated[str | None, Query(max_length=2048)] = None
) -> StreamingResponse:
    """The live preview as MJPEG; authorised by a preview token or the usual credentials."""
    token_ok = bool(token and request.app.state.signer.unsign("preview", token))
    if not token_ok and current_principal(request) is None:
        raise HTTPException(401, "the preview needs a token from /api/rig/preview-token")
    hub = request.app.state.preview
    if hub is None:
        raise HTTPException(503, "no camera is open: the preview is unavailable")
    return StreamingResponse(
        mjpeg_stream(hub), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    )


async def mjpeg_stream(hub: Any, max_frames: int | None = None) -> Any:
    """Yield each new JPEG of the shared encoder as one multipart part."""
    hub.join()
    last, sent = 0, 0
    poll = min(0.02, hub.interval / 4)
    try:
        while max_frames is None or sent < max_frames:
            seq, jpeg = hub.latest()
            if jpeg is None or seq == last:
                await asyncio.sleep(poll)
                continue
            last, sent = seq, sent + 1
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            )
            yield head.encode() + jpeg + b"\r\n"
    finally:
        hub.leave()
