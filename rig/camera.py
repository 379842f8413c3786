"""The camera factory: :func:`open_camera` builds the driver the configuration names.

The protocol and the frame are in :mod:`rig.camera_types` (re-exported here).  Why a protocol:
the run engine and the sorter must not care whether the pixels come from a Raspberry Pi camera
(``rig/camera_picamera2.py``), a USB webcam (``rig/camera_opencv.py``) or the renderer of the
simulated rig (``rig/sim/camera.py``).

Exposure is metered once and then locked for a run (``meter_and_lock``) because a dataset whose
brightness drifts with the part in view teaches a model the wrong thing, and because the
empty-turntable reference frame used for masks is only valid at the exposure it was taken at.

Example::

    from rig.camera import open_camera
    with open_camera(settings.camera, sim_world=world, sim=settings.simulator) as cam:
        exposure = cam.meter_and_lock()
        frame = cam.capture()          # frame.image: RGB uint8, frame.exposure_us, ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rig.camera_types import Camera, Exposure, Frame, check_frame
from rig.errors import ConfigError

if TYPE_CHECKING:
    from rig.config import CameraConfig, SimConfig
    from rig.sim.clock import SimClock
    from rig.sim.world import SimWorld

# NOTE: the seam's types live in rig.camera_types (the drivers import them from there, so the
# drivers and this factory import one way); they are re-exported here for callers.
__all__ = ["Camera", "Exposure", "Frame", "check_frame", "open_camera"]


def open_camera(
    camera_config: CameraConfig,
    *,
    sim_world: SimWorld | None = None,
    sim: SimConfig | None = None,
    clock: SimClock | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Camera:
    """Build and open the driver ``camera_config.driver`` names.

    ``sim_world`` and ``sim`` (the ``[simulator]`` section) are needed by the ``sim`` driver only;
    ``clock`` (a :class:`~rig.sim.clock.SimClock`) or ``sleep`` times its modelled exposure.
    The returned camera is open; close it (or use it in a ``with``) when done.
    """
    driver = camera_config.driver
    camera: Camera
    if driver == "picamera2":
        from rig.camera_picamera2 import Picamera2Camera

        camera = Picamera2Camera(camera_config)
    elif driver == "opencv":
        from rig.camera_opencv import OpenCVCamera

        camera = OpenCVCamera(camera_config)
    elif driver == "sim":
        if sim_world is None:
            raise ConfigError(
                "camera.driver = 'sim' needs the simulated world; run with --sim so the rig"
                " builds one"
            )
        from rig.sim.camera import SimCamera

        camera = SimCamera(sim_world, camera_config, sim, clock=clock, sleep=sleep)
    else:
        raise ConfigError(f"camera.driver: must be picamera2, opencv or sim (got {driver!r})")
    camera.open()
    return camera
