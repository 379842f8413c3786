"""The camera's exposure, white balance and focus, set by hand from the Settings page.

Why only while nothing holds the camera (contracts.md, #7): a capture run locks its exposure at
its start and records it with every shot, and the sorter's model expects the frames it was
validated on; changing either under them would make a run's shots disagree with their own
metadata.  So a change is refused (409) while a run is live or the sorter runs, and checked and
applied under the same claim that starts them.  The live preview shows the result at once.

Manual values replace metering: the next run "meters" to exactly these values (the camera's
``set_manual``), so what the operator saw is what the run records.  ``auto`` hands exposure and
white balance back to the camera's algorithms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from rig.camera_types import Camera, Exposure
from web.deps import OperatorAuth, RigDep, ViewerAuth
from web.routers.terminal import require_idle
from web.sorting import CAMERA_CLAIM

if TYPE_CHECKING:
    from rig.config import Settings
    from rig.rig_types import Rig

router = APIRouter(prefix="/api/camera", tags=["camera"])


class CameraSettingsBody(BaseModel):
    auto: bool = Field(True, description="automatic exposure and white balance")
    exposure_us: int = Field(10_000, ge=100, le=1_000_000, description="shutter time (µs)")
    gain: float = Field(1.0, ge=1.0, le=16.0, description="analogue gain")
    wb_red: float = Field(1.9, ge=0.25, le=8.0, description="white balance: red gain")
    wb_blue: float = Field(1.6, ge=0.25, le=8.0, description="white balance: blue gain")
    focus: float | None = Field(
        None, ge=0.0, le=15.0, description="lens position in dioptres (0 = infinity); null: auto"
    )


def _camera(rig: Rig) -> Camera:
    camera = rig.camera
    if camera is None:
        raise HTTPException(503, "no camera is open")
    return camera


def camera_settings(rig: Rig, settings: Settings) -> dict[str, Any]:
    camera = _camera(rig)
    manual = getattr(camera, "manual", None)
    shown = manual or getattr(camera, "locked", None)
    adjustable = callable(getattr(camera, "set_manual", None))
    return {
        "driver": settings.camera.driver,
        "adjustable": adjustable,
        "auto": manual is None,
        "exposure_us": shown.exposure_us if shown else None,
        "gain": shown.analogue_gain if shown else None,
        "wb_red": shown.colour_gains[0] if shown else None,
        "wb_blue": shown.colour_gains[1] if shown else None,
        "focus": getattr(camera, "focus_dioptres", None),
        "note": (
            "Changes apply to the live view at once and to the next run; refused while a run "
            "or the sorter uses the camera."
            if adjustable
            else f"The {settings.camera.driver} camera cannot be set by hand."
        ),
    }


@router.get("/settings")
def get_camera_settings(request: Request, rig: RigDep, who: ViewerAuth) -> dict[str, Any]:
    """Exposure, white balance and focus: the operator's fixed values, or automatic."""
    return camera_settings(rig, request.app.state.settings)


@router.put("/settings")
def put_camera_settings(
    request: Request, body: CameraSettingsBody, rig: RigDep, who: OperatorAuth
) -> dict[str, Any]:
    """Fix (or free) exposure, white balance and focus; 409 while a run or the sorter holds
    the camera, or when this camera cannot be set by hand."""
    camera = _camera(rig)
    set_manual = getattr(camera, "set_manual", None)
    if not callable(set_manual):
        raise HTTPException(
            409, f"the {request.app.state.settings.camera.driver} camera cannot be set by hand"
        )
    exposure = (
        None
        if body.auto
        else Exposure(body.exposure_us, body.gain, (body.wb_red, body.wb_blue), lux=None)
    )
    with CAMERA_CLAIM:
        require_idle(request, "changing the camera's settings")
        set_manual(exposure, body.focus)
    return camera_settings(rig, request.app.state.settings)
