"""Capture runs: create (from TOML text or an uploaded file), preview a plan, control, follow.

Controls map one-to-one onto :class:`~capture.runs.run.CaptureRun`; an invalid transition raises
``RunStateError`` which :mod:`web.errors` answers with 409.  Progress is pushed as server-sent
events (``fastapi.sse``) with the run's sequence numbers as event ids, so a page that
reconnects sends ``Last-Event-ID`` and receives exactly what it missed from the run's replay
buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, Header, Path, Query, Request, UploadFile
from fastapi.responses import StreamingResponse
from fastapi.sse import KEEPALIVE_COMMENT, EventSourceResponse, format_sse_event
from pydantic import BaseModel, Field

from capture.runs.state import FINAL_STATES
from rig.errors import PlanError
from web.deps import OperatorAuth, RunsDep, SettingsDep, StoreDep, ViewerAuth
from web.sorting import CAMERA_CLAIM, require_sorter_stopped

if TYPE_CHECKING:
    from capture.plans.order import ShotSpec

log = logging.getLogger("web.runs")

#: Ids are SQLite integers: bounded so a huge number is a 422, not an overflow.
RunId = Annotated[int, Path(ge=1, le=2**63 - 1)]

router = APIRouter(prefix="/api", tags=["runs"])

MAX_PLAN_BYTES = 256 * 1024
PREVIEW_SHOTS = 500
KEEPALIVE_S = 15.0
FINAL = frozenset(s.value for s in FINAL_STATES)


class PlanBody(BaseModel):
    plan_toml: str = Field(min_length=1, max_length=MAX_PLAN_BYTES, description="the plan TOML")
    name: str | None = Field(None, max_length=200, description="run name (default: the plan's)")


def plain(shot: ShotSpec) -> dict[str, Any]:
    """A JSON-ready view of a planned shot (its operator actions included)."""
    view: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(shot), default=str))
    return view


def plan_preview(plan_toml: str, settings: Any) -> dict[str, Any]:
    """Validate and expand a plan; the first shots, the count and the estimated duration."""
    from capture.plans.order import count_operator_actions, estimate, expand
    from capture.plans.schema import load_plan

    # NOTE: capped before expansion: a viewer's 3 KB plan must not cost a minute of CPU.
    plan = load_plan(plan_toml, max_shots=settings.capture.max_shots)
    shots = expand(plan)
    return {
        "name": getattr(plan, "name", None),
        "total": len(shots),
        "estimate_s": float(estimate(plan, settings.turntable)),
        # NOTE: the estimate is the rig's time; each action adds however long a person takes
        "operator_actions": count_operator_actions(shots),
        "shots": [plain(s) for s in shots[:PREVIEW_SHOTS]],
        "truncated": len(shots) > PREVIEW_SHOTS,
    }


def run_view(store: Any, runs: Any, run_id: RunId) -> dict[str, Any]:
    """The stored run merged with the live progress this process knows."""
    row = dict(store.get_run(run_id))
    row.pop("plan_json", None)
    live = runs.known(run_id)
    snap = live.snapshot() if live is not None else {}
    row.update(
        run_id=row["id"],
        state=snap.get("state", row["state"]),
        prompt=snap.get("prompt", row.get("prompt")),
        action=snap.get("action", row.get("action")),
        reason=snap.get("reason", row.get("reason")),
        done=snap.get("done") or row.get("shots_done", 0),
        total=row.get("shots_total") or snap.get("total", 0),
        elapsed_s=snap.get("elapsed_s"),
        eta_s=snap.get("eta_s"),
        seq=snap.get("seq", 0),
    )
    return row


@router.post("/plans/preview")
def preview_plan(body: PlanBody, settings: SettingsDep, who: ViewerAuth) -> dict[str, Any]:
    """Expand a plan without creating a run: shots, count, estimated seconds (422 if invalid)."""
    return plan_preview(body.plan_toml, settings)


@router.get("/runs")
def list_runs(
    store: StoreDep,
    runs: RunsDep,
    who: ViewerAuth,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Run history, newest first."""
    out = []
    for row in store.list_runs(limit):
        live = runs.known(row["id"])
        if live is not None:
            row = dict(row, **{k: v for k, v in live.snapshot().items() if k != "run_id"})
        out.append(row)
    return out


@router.post("/runs", status_code=201)
def create_run(body: PlanBody, store: StoreDep, runs: RunsDep, who: OperatorAuth) -> dict[str, Any]:
    """Create a pending run from plan TOML text (422 with the bad field if invalid)."""
    run = runs.create(body.plan_toml, body.name)
    return run_view(store, runs, run.run_id)


@router.post("/runs/upload", status_code=201)
async def upload_run(
    plan: Annotated[UploadFile, File(description="a plan TOML file")],
    store: StoreDep,
    runs: RunsDep,
    who: OperatorAuth,
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> dict[str, Any]:
    """Create a pending run from an uploaded plan TOML file."""
    raw = await plan.read(MAX_PLAN_BYTES + 1)
    if len(raw) > MAX_PLAN_BYTES:
        raise PlanError(f"the plan file is larger than {MAX_PLAN_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PlanError("the plan file is not UTF-8 text; save it as a .toml text file") from None
    run = await asyncio.to_thread(runs.create, text, name or None)
    return run_view(store, runs, run.run_id)


@router.get("/runs/{run_id}")
def get_run(run_id: RunId, store: StoreDep, runs: RunsDep, who: ViewerAuth) -> dict[str, Any]:
    """One run: state, prompt, progress, plan text."""
    return run_view(store, runs, run_id)


@router.get("/runs/{run_id}/shots")
def run_shots(
    run_id: RunId,
    store: StoreDep,
    who: ViewerAuth,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """The run's stored shots, newest first, paginated by ``next_cursor``."""
    store.get_run(run_id)
    page = store.query_shots(run=run_id, limit=limit, cursor=cursor)
    return {"items": page.items, "next_cursor": page.next_cursor}


def _control(verb: str) -> Any:
    def control(
        request: Request, run_id: RunId, store: StoreDep, runs: RunsDep, who: OperatorAuth
    ) -> dict[str, Any]:
        if verb in ("start", "resume"):
            # NOTE: a run and the sorter share the camera (contracts.md, one owner); the claim
            # makes the check and the start one step against a sorter starting at once.
            with CAMERA_CLAIM:
                require_sorter_stopped(getattr(request.app.state, "sorter", None))
                if verb == "start":
                    runs.start(run_id)
                else:
                    runs.get(run_id).resume()
        else:
            run = runs.get(run_id)
            {"pause": run.pause, "abort": run.abort, "answer": run.answer_prompt}[verb]()
        return run_view(store, runs, run_id)

    control.__name__ = f"{verb}_run"
    control.__doc__ = {
        "start": "Start a pending run, or restart an interrupted/failed one (409 otherwise, "
        "and 409 while the sorter runs: they share the camera).",
        "pause": "Pause after the shot in flight (409 unless running).",
        "resume": "Resume a paused run, or restart an interrupted/failed one (409 otherwise).",
        "abort": "Stop for good; captured shots are kept (409 once finished).",
        "answer": "The operator did what the prompt asked: Continue (409 when nothing asked).",
    }[verb]
    return control


for _verb in ("start", "pause", "resume", "abort", "answer"):
    router.add_api_route(
        f"/runs/{{run_id}}/{_verb}", _control(_verb), methods=["POST"], name=f"{_verb}_run"
    )


@router.get(
    "/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def run_events(
    run_id: RunId,
    runs: RunsDep,
    who: ViewerAuth,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0)] = None,
    after: Annotated[int | None, Query(ge=0, description="replay events after this seq")] = None,
) -> EventSourceResponse:
    """Progress as server-sent events; ``Last-Event-ID`` (or ``after``) replays missed ones.

    The stream ends after the run completes or is aborted.  Event names are the run's event
    kinds (``state``, ``shot``, ``stored``, ``info``) plus one ``snapshot`` on connect.
    """
    run = runs.get(run_id)
    start = last_event_id if last_event_id is not None else (after or 0)
    return EventSourceResponse(event_stream(run, start), headers={"Cache-Control": "no-cache"})


def _sse(event: Any) -> bytes:
    return format_sse_event(
        data_str=json.dumps(event.as_dict(), default=str), event=event.kind, id=str(event.seq)
    )


async def event_stream(
    run: Any, after: int, keepalive_s: float = KEEPALIVE_S
) -> AsyncIterator[bytes]:
    """Replay what came after ``after``, then push new events until the run is final."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def deliver(event: Any) -> None:
        # NOTE: the loop may have closed under a finished stream; then nobody is listening.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, event)

    unsubscribe = run.subscribe(deliver)
    try:
        last = after
        yield format_sse_event(
            data_str=json.dumps(run.snapshot(), default=str), event="snapshot", retry=2000
        )
        for event in run.events_since(after):
            last = event.seq
            yield _sse(event)
        if run.state.value in FINAL and queue.empty():
            return
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), keepalive_s)
            except TimeoutError:
                yield KEEPALIVE_COMMENT
                continue
            if event.seq <= last:
                continue
            last = event.seq
            yield _sse(event)
            if event.kind == "state" and event.data.get("state") in FINAL:
                return
    finally:
        unsubscribe()
