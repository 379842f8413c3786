"""The sorter's feeder view: what the sorter sees, what it decided, and where parts went.

The live stream is the frames the sorting loop has already taken (web/feeder_view.py), never a
second grab of its camera, encoded by a :class:`web.preview.PreviewHub` of its own: at most
``web.preview_fps``, only while somebody watches, stopped when the last viewer leaves.  In
``--sim`` these are the simulated feeder's frames.  The recent decisions' crops are cut from
the frames they were decided on, kept in memory for the last
:data:`classify.sorter_view.RECENT_DECISIONS` parts.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from classify.sorter import SortDecision
from web.deps import ViewerAuth, current_principal
from web.feeder_view import DecisionCrops, FeederFrames
from web.preview import PreviewHub
from web.routers.rig import BOUNDARY, mjpeg_stream

router = APIRouter(prefix="/api/sorter/feeder", tags=["sorter"])

STREAM = "/api/sorter/feeder/stream.mjpg"


def _sorter(request: Request) -> Any:
    sorter = getattr(request.app.state, "sorter", None)
    if sorter is None:
        sorting = getattr(request.app.state, "sorting", None)
        why = getattr(sorting, "error", None) or "see the server log"
        raise HTTPException(503, f"the sorter is not available, so there is no feeder view: {why}")
    return sorter


def feeder_hub(request: Request) -> PreviewHub:
    """The feeder view's encoder, made on first use (one per app, like the camera preview's)."""
    state = request.app.state
    hub: PreviewHub | None = getattr(state, "feeder_preview", None)
    if hub is None:
        fps = request.app.state.settings.web.preview_fps
        hub = state.feeder_preview = PreviewHub(FeederFrames(_sorter(request)), fps)
    return hub


def _crops(request: Request) -> DecisionCrops:
    crops: DecisionCrops | None = getattr(request.app.state, "feeder_crops", None)
    if crops is None:
        crops = request.app.state.feeder_crops = DecisionCrops(_sorter(request))
    return crops


@router.get("")
def feeder(request: Request, who: ViewerAuth) -> dict[str, Any]:
    """Whether a part is in view (and its box), the frame's size, the sorter's bin counts
    since it started, and its last decisions newest first, each with its crop's URL."""
    sorter = _sorter(request)
    seen = sorter.seen
    status = sorter.status()
    frame = None
    if seen is not None:
        h, w = seen.frame.shape[:2]
        bbox = None if seen.bbox is None else [int(v) for v in seen.bbox]
        frame = {"number": seen.number, "width": int(w), "height": int(h), "bbox": bbox}
    recent = []
    for item in reversed(list(sorter.recent)):
        d = asdict(item.decision) if isinstance(item.decision, SortDecision) else {}
        d["number"] = item.number
        d["crop"] = f"/api/sorter/feeder/crops/{item.number}.jpg"
        recent.append(d)
    return {
        "state": status["state"],
        "phase": status["phase"],
        "part_in_view": frame is not None and frame["bbox"] is not None,
        "frame": frame,
        "frames_seen": status["counts"]["frames"],
        "by_bin": status["counts"]["by_bin"],
        "recent": recent,
        "stream": STREAM,
        "watching": feeder_hub(request).viewers,
    }


@router.get(
    "/crops/{number}.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def decision_crop(
    request: Request, number: Annotated[int, Path(ge=1, le=2**63 - 1)], who: ViewerAuth
) -> Response:
    """The crop of one of the sorter's recent decisions (its number from the feeder view)."""
    jpeg = _crops(request).jpeg(number)
    if jpeg is None:
        raise HTTPException(
            404,
            f"decision {number} is no longer kept in memory (the feeder view keeps the last "
            "few): see the decision log and the review queue",
        )
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private"})


@router.get(
    "/stream.mjpg",
    response_class=StreamingResponse,
    responses={200: {"content": {"multipart/x-mixed-replace": {}}}},
)
async def stream(
    request: Request, token: Annotated[str | None, Query(max_length=2048)] = None
) -> StreamingResponse:
    """The sorter's frames as MJPEG, the part's box drawn; a preview token (from
    ``/api/rig/preview-token``) or the usual credentials."""
    token_ok = bool(token and request.app.state.signer.unsign("preview", token))
    if not token_ok and current_principal(request) is None:
        raise HTTPException(401, "the feeder view needs a token from /api/rig/preview-token")
    return StreamingResponse(
        mjpeg_stream(feeder_hub(request)),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
    )
