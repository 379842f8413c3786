"""Rig: the bundle of everything on the bench (link, turntable, lights, camera, world).

Why one bundle: one process owns the hardware (contracts.md), and everything above ``rig`` (the
run engine, the sorter, the web app) receives a :class:`Rig` instead of opening devices itself.
:func:`open_rig` is the single place that decides real versus simulated, so a driver never knows
which it is talking to.

Faults: :meth:`Rig.safe_stop` is what the top of a run calls when anything unexpected happens:
stop the motor (``M410``, position kept), lights down, latch the reason.  The latch (``fault``)
stays until :meth:`Rig.clear_fault`, which resets the board and needs homing or the operator's
confirmation of zero before the turntable moves again.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rig.config import Settings
from rig.errors import MotionError
from rig.lights import Lights
from rig.turntable import Turntable

log = logging.getLogger("rig")


class Rig:
    """Everything ``open_rig`` built.  A context manager; ``close()`` is idempotent."""

    def __init__(
        self,
        settings: Settings,
        link: Any,
        turntable: Turntable,
        lights: Lights,
        camera: Any,
        *,
        world: Any = None,
        firmware_sim: Any = None,
        clock: Any = None,
        temp_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.link = link
        self.turntable = turntable
        self.lights = lights
        self.camera = camera
        #: The simulated world (sheet, part, pose) when simulated, else None.
        self.world = world
        #: The simulated board (:class:`~rig.sim.marlin.SimFirmware`) when simulated.
        self.firmware_sim = firmware_sim
        self.clock = clock
        self._temp_dir = temp_dir
        self._fault: str | None = None
        self._closed = False

    @property
    def simulated(self) -> bool:
        return self.firmware_sim is not None

    @property
    def fault(self) -> str | None:
        """The first latched fault: the rig's own, the link's, or the turntable's."""
        return self._fault or getattr(self.link, "fault", None) or self.turntable.fault

    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot for the status page and ``partrig rig status``."""
        info = getattr(self.link, "firmware", None)
        state = getattr(self.link, "state", None)
        return {
            "simulated": self.simulated,
            "port": getattr(self.link, "path", None) or self.settings.serial.port,
            "link": str(getattr(state, "value", state)),
            "firmware": {
                "name": getattr(info, "name", None),
                "version": getattr(info, "version", None),
                "dialect": getattr(info, "dialect", None),
            },
            "resets": getattr(self.link, "resets", 0),
            "angle_deg": round(self.turntable.angle, 4),
            "lights": self.lights.level,
            "camera": self.settings.camera.driver,
            "fault": self.fault,
        }

    def emergency_stop(self) -> None:
        """``M112`` ahead of everything; the board halts until the fault is cleared."""
        self._fault = self._fault or "emergency stop pressed"
        self.link.emergency_stop()

    def safe_stop(self, reason: str) -> None:
        """Stop the motor (M410, position kept), lights down, latch ``reason``.  Never raises."""
        self._fault = self._fault or reason
        log.warning("safe stop: %s", reason)
        for step in (lambda: self.link.send("M410"), self.lights.off):
            try:
                step()
            except Exception as exc:  # NOTE: fail safe: a dead link must not hide the stop
                log.warning("safe stop step failed: %s", exc)

    def clear_fault(self, *, zero_confirmed: bool = False) -> None:
        """Reset the board, then recover the position: home if there is an endstop, else
        take the operator's word (``zero_confirmed``) that the table is at its zero mark."""
        if getattr(self.link, "fault", None) is not None or self._fault is not None:
            self.link.clear_fault()
        self._fault = None
        if self.settings.turntable.endstop == "x_min":
            self.turntable.home()
        elif zero_confirmed:
            self.turntable.set_zero()
        elif self.turntable.fault is not None:
            raise MotionError(
                "the fault is cleared but the turntable's position is unknown: turn it to the "
                "zero mark and confirm zero"
            )
        else:
            self.turntable.setup()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            if self.fault is None:
                self.lights.off()
        for thing in (self.camera, self.link, self.firmware_sim):
            close = getattr(thing, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    log.warning("closing %s failed: %s", type(thing).__name__, exc)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_rig(settings: Settings, *, with_camera: bool = True) -> Rig:
    """Open the real rig, or the simulated one when ``settings.sim``; everything or nothing.

    ``with_camera=False`` leaves the camera closed (``rig.camera is None``): the demo and the
    ``partrig rig`` commands only move the table, and a busy or absent camera must not stop
    them.
    """
    from rig.link import GcodeLink

    opened: list[Any] = []
    temp_dir: Path | None = None
    fw = clock = world = None
    try:
        port = settings.serial.port
        reset_hook = None
        if settings.sim:
            from rig.sim.clock import SimClock
            from rig.sim.marlin import SimFirmware

            temp_dir = Path(tempfile.mkdtemp(prefix="partrig-sim-"))
            clock = SimClock(settings.simulator.time_scale)
            fw = SimFirmware(
                settings.simulator,
                clock,
                dialect=settings.simulator.firmware,
                link_path=temp_dir / "ramps",
                steps_per_degree=settings.turntable.steps_per_degree,
                light_pin=settings.lights.pin,
                endstop=settings.turntable.endstop == "x_min",
            ).start()
            opened.append(fw)
            fw.wait_ready()
            port, reset_hook = fw.port, fw.reset
            world = _sim_world(settings, fw, clock) if with_camera else None
        link = GcodeLink(settings.serial, port=port, reset_hook=reset_hook)
        link.open()
        opened.append(link)
        turntable = Turntable(link, settings.turntable)
        turntable.setup()
        if settings.sim:
            # NOTE: the simulated table powers up exactly at its zero mark, so the simulated
            # operator's "confirm zero" is true; a real rig waits for the operator or homing.
            turntable.set_zero()
        lights = Lights(link, settings.lights)
        lights.off()
        camera = _open_camera(settings, world, clock) if with_camera else None
        if camera is not None:
            opened.append(camera)
        return Rig(
            settings,
            link,
            turntable,
            lights,
            camera,
            world=world,
            firmware_sim=fw,
            clock=clock,
            temp_dir=temp_dir,
        )
    except BaseException:
        for thing in reversed(opened):
            with contextlib.suppress(Exception):
                thing.close()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise


def _sim_world(settings: Settings, fw: Any, clock: Any) -> Any:
    from rig.sim.world import SimWorld

    return SimWorld(
        angle_source=fw.actual_angle_deg,
        light_source=fw.light_level,
        seed=settings.simulator.seed,
        clock=clock,
    )


def _open_camera(settings: Settings, world: Any, clock: Any) -> Any:
    from rig.camera import open_camera

    # NOTE: the simulated camera times its exposure on the rig's SimClock, so a virtual clock
    # makes captures instant and moves and exposures share one timeline.
    return open_camera(settings.camera, sim_world=world, sim=settings.simulator, clock=clock)
