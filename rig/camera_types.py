"""The camera seam: the :class:`Camera` protocol and the :class:`Frame` every driver returns.

Why a module apart from the factory (:mod:`rig.camera`): the drivers
(``rig/camera_picamera2.py``, ``rig/camera_opencv.py``, ``rig/sim/camera.py``) need the frame and
exposure types, and the factory needs the drivers; with both in one module they imported each
other in a circle.  Now the drivers import this module, the factory imports the drivers, and
nothing imports back.

Whatever the driver, a frame is RGB ``uint8`` H x W x 3 (contracts, "Pixels"), and the exposure
it was taken with travels with it so each shot records its exposure and white balance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rig.errors import CameraError


@dataclass(frozen=True)
class Exposure:
    """The exposure settings a run is locked to; recorded with every shot.

    ``colour_gains`` is the white balance as (red gain, blue gain), green being 1, the way
    libcamera states it.  ``lux`` is the driver's estimate of the scene light, if it has one.
    """

    exposure_us: int
    analogue_gain: float
    colour_gains: tuple[float, float]
    lux: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the store keeps it with the run and the shots)."""
        return {
            "exposure_us": int(self.exposure_us),
            "analogue_gain": float(self.analogue_gain),
            "colour_gains": [float(g) for g in self.colour_gains],
            "lux": None if self.lux is None else float(self.lux),
        }


@dataclass
class Frame:
    """One captured image and how it was taken.

    ``image`` is RGB ``uint8`` H x W x 3; ``t`` is ``time.monotonic()`` (or the simulated
    clock) at the middle of the exposure; ``meta`` carries driver extras (the simulator's truth
    box, the sensor's lux estimate, ...).
    """

    image: np.ndarray
    t: float
    exposure_us: int
    analogue_gain: float
    colour_gains: tuple[float, float]
    lux: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def exposure(self) -> Exposure:
        return Exposure(self.exposure_us, self.analogue_gain, self.colour_gains, self.lux)


@runtime_checkable
class Camera(Protocol):
    """What the rig needs from a camera.  ``close()`` is idempotent; a closed camera raises
    :class:`~rig.errors.CameraError` on use.  Cameras are context managers."""

    still_size: tuple[int, int]
    preview_size: tuple[int, int]

    def open(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Camera: ...

    def __exit__(self, *exc: object) -> None: ...

    def capture(self) -> Frame:
        """A full-resolution still at the current (possibly locked) exposure."""
        ...

    def preview(self) -> np.ndarray:
        """A low-resolution RGB frame from the preview stream (fast, for the web page)."""
        ...

    def meter_and_lock(self) -> Exposure:
        """Let auto exposure and white balance settle once, then lock them; return the values."""
        ...

    def unlock(self) -> None:
        """Hand exposure and white balance back to the automatic algorithms."""
        ...

    @property
    def locked(self) -> Exposure | None: ...


def check_frame(image: Any, what: str = "frame") -> np.ndarray:
    """Validate a driver's output: RGB ``uint8`` H x W x 3, or CameraError saying what is off."""
    if not isinstance(image, np.ndarray):
        raise CameraError(f"the camera returned no image for the {what}; check its connection")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise CameraError(
            f"the camera returned a {image.dtype} array of shape {image.shape} for the {what},"
            " not RGB uint8 HxWx3; check the driver's pixel format"
        )
    return image
