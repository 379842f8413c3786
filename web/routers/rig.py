"""The rig: status, emergency stop, fault clearing, jog, zero, lights and the live preview.

The emergency stop is a privileged path (web/emergency.py): an ``async`` route that writes
``M112`` to the serial descriptor from the event loop, then stops the sorter, the actuator and
any run on its own thread, and latches the fault in the store too, so a restart still shows it.
Manual moves are refused (409) while a run uses the turntable or a fault is latched.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from rig.errors import FaultLatched, RunStateError
from web.deps import OperatorAuth, RigDep, RunsDep, StoreDep, ViewerAuth, current_principal
from web.emergency import FOLLOW_UP_WAIT_S, REASON, emergency_stop_of
from web.security import PREVIEW_TOKEN_TTL_S

if TYPE_CHECKING:
    from capture.store import DatasetStore
    from rig.rig_types import Rig
    from web.run_registry import RunRegistry

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


def stored_fault(store: DatasetStore | None) -> str | None:
    fault = store.active_fault() if store is not None else None
    return None if not fault else str(fault.get("reason") or fault)


def rig_status(rig: Rig, store: DatasetStore, runs: RunRegistry | None) -> dict[str, Any]:
    status = dict(rig.status())
    status["fault"] = status.get("fault") or stored_fault(store)
    live = runs.live_run() if runs is not None else None
    status["live_run"] = live.run_id if live is not None else None
    return status


def _refuse_manual(rig: Rig, store: DatasetStore, runs: RunRegistry) -> None:
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
async def estop(request: Request, who: OperatorAuth) -> dict[str, Any]:
    """EMERGENCY STOP: M112 ahead of every queue, lock and thread pool; stops the sorter and
    the actuator, ends any run as interrupted, lights off; latches a fault until cleared.

    NOTE: ``async`` with no sync dependency on purpose: FastAPI runs sync routes and sync
    dependencies in the shared thread pool, where sign-in's argon2 could keep it waiting.
    Authentication (OperatorAuth) is an API-key comparison or an HMAC and a dict lookup.
    """
    stop = emergency_stop_of(request.app.state)
    written, warning = stop.press()
    pending = stop.follow_ups.submit(lambda: stop.follow_up(who.name))
    try:
        safe = await asyncio.wait_for(asyncio.shield(pending), FOLLOW_UP_WAIT_S)
    except TimeoutError:
        safe = None
        warning = warning or "the e-stop is still stopping the sorter or a run; watch the status"
    rig = request.app.state.rig
    store = request.app.state.store
    return {
        "fault": (getattr(rig, "fault", None) if rig is not None else None) or REASON,
        "m112_sent": written,
        "warning": warning,
        "safe": safe,
        "pressed_by": who.name,
        "store_fault": None if store is None else bool(safe and safe.get("fault_latched")),
    }


@router.post("/clear-fault")
def clear_fault(
    request: Request,
    body: ClearFaultBody,
    rig: RigDep,
    store: StoreDep,
    runs: RunsDep,
    who: OperatorAuth,
) -> dict[str, Any]:
    """Reset the board and recover the position (homing, or the operator's zero)."""
    rig.clear_fault(zero_confirmed=body.zero_confirmed)
    store.clear_fault(who.name)
    estop = getattr(request.app.state, "estop", None)
    if estop is not None:
        estop.release()
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


class FrameFeed:
    """One poller of a preview hub per event loop; every viewer awaits the next frame from it.

    Why: each viewer polling the hub every 20 ms on its own cost the event loop, where the
    e-stop runs, 50 wake-ups a second per viewer; with one poller it is 50 in all.
    """

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.loop = asyncio.get_running_loop()
        self.seq, self.jpeg = 0, None
        self.viewers = 0
        self._new = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def join(self) -> None:
        self.viewers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())

    def leave(self) -> None:
        self.viewers -= 1

    async def next_frame(self, last: int) -> tuple[int, bytes]:
        """The first frame newer than sequence number ``last``."""
        while self.jpeg is None or self.seq == last:
            await self._new.wait()
        return self.seq, self.jpeg

    async def _poll(self) -> None:
        poll = min(0.02, self.hub.interval / 4)
        while self.viewers > 0:
            seq, jpeg = self.hub.latest()
            if jpeg is not None and seq != self.seq:
                self.seq, self.jpeg = seq, jpeg
                new, self._new = self._new, asyncio.Event()
                new.set()
            await asyncio.sleep(poll)


_FEEDS: weakref.WeakKeyDictionary[Any, FrameFeed] = weakref.WeakKeyDictionary()


def frame_feed(hub: Any) -> FrameFeed:
    """The :class:`FrameFeed` of ``hub`` on the running event loop."""
    feed = _FEEDS.get(hub)
    if feed is None or feed.loop is not asyncio.get_running_loop():
        feed = _FEEDS[hub] = FrameFeed(hub)
    return feed


async def mjpeg_stream(hub: Any, max_frames: int | None = None) -> Any:
    """Yield each new JPEG of the shared encoder as one multipart part."""
    hub.join()
    feed = frame_feed(hub)
    feed.join()
    last, sent = 0, 0
    try:
        while max_frames is None or sent < max_frames:
            last, jpeg = await feed.next_frame(last)
            sent += 1
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            )
            yield head.encode() + jpeg + b"\r\n"
    finally:
        feed.leave()
        hub.leave()
