"""Rig: the bundle of everything on the bench (link, turntable, lights, camera, world).

Why one bundle: one process owns the hardware (contracts.md), and everything above ``rig`` (the
run engine, the sorter, the web app) receives a :class:`Rig` instead of opening devices itself.
:func:`open_rig` is the single place that decides real versus simulated, so a driver never knows
which it is talking to.

Faults: :meth:`Rig.safe_stop` is what the top of a run calls when anything unexpected happens:
stop the motor (``M410`` ahead of the queue, position kept), lights down, latch the reason.
:meth:`Rig.emergency_stop` is the e-stop: ``M112`` written out of band, never blocking.  The
latch (``fault``) stays until :meth:`Rig.clear_fault`, which resets the board and needs homing
or the operator's confirmation of zero before the turntable moves again.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rig.config import Settings
from rig.errors import MotionError
from rig.firmware_check import check_firmware
from rig.lights import Lights
from rig.link_types import Link
from rig.turntable import Turntable

if TYPE_CHECKING:
    from rig.camera_types import Camera
    from rig.sim.board import RemoteBoard
    from rig.sim.clock import SimClock
    from rig.sim.marlin import SimFirmware
    from rig.sim.world import SimWorld

    #: The simulated board: in this process, or in its own (the e-stop benchmark's).
    SimBoard = SimFirmware | RemoteBoard

log = logging.getLogger("rig")


class Rig:
    """Everything ``open_rig`` built.  A context manager; ``close()`` is idempotent."""

    def __init__(
        self,
        settings: Settings,
        link: Link,
        turntable: Turntable,
        lights: Lights,
        camera: Camera | None,
        *,
        world: SimWorld | None = None,
        firmware_sim: SimBoard | None = None,
        clock: SimClock | None = None,
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
        self._estop = False
        self._closed = False

    @property
    def simulated(self) -> bool:
        return self.firmware_sim is not None

    @property
    def fault(self) -> str | None:
        """The first latched fault: the rig's own, the link's, or the turntable's."""
        return self._fault or self.link.fault or self.turntable.fault

    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot for the status page and ``partrig rig status``."""
        info = self.link.firmware
        return {
            "simulated": self.simulated,
            "port": self.link.path or self.settings.serial.port,
            "link": str(self.link.state),
            "firmware": {
                "name": info.name if info is not None else None,
                "version": info.version if info is not None else None,
                "dialect": info.dialect if info is not None else None,
            },
            "resets": self.link.resets,
            "angle_deg": round(self.turntable.angle, 4),
            "lights": self.lights.level,
            "camera": self.settings.camera.driver,
            "fault": self.fault,
        }

    @property
    def emergency_stopped(self) -> bool:
        """True from the moment an e-stop is pressed until :meth:`clear_fault`.

        Threads that see a command fail (the run engine) read this to tell an e-stop, which
        ends a run as ``interrupted``, from a real failure.
        """
        return self._estop

    def emergency_stop(self) -> bool:
        """``M112`` on the wire now, ahead of every queue and lock; True once written.

        Never blocks (the web app calls it on its event loop): it sets the latch and writes
        the line out of band.  The link latches its own fault when the board reports the
        halt; :meth:`finish_emergency_stop` does the slower rest from another thread.
        """
        self._estop = True
        self._fault = self._fault or "emergency stop pressed"
        return bool(self.link.write_emergency())

    def finish_emergency_stop(self) -> None:
        """After :meth:`emergency_stop`: latch the link's fault, record the lights as off.

        Why the lights need no command: the board is halted and ignores everything until a
        reset, and our firmware's kill switches every MOSFET output off (firmware/src/idle.c);
        a reset drives them low as well.  Never raises.
        """
        try:
            self.link.latch_emergency()
        except Exception as exc:  # NOTE: fail safe: the latch above already refuses motion
            log.warning("latching the link's e-stop failed: %s", exc)
        if self._kill_drops_lights():
            self.lights.outputs_dropped()

    def _kill_drops_lights(self) -> bool:
        """Whether the halted board has switched the light's output off by itself."""
        info = self.link.firmware
        dialect = info.dialect if info is not None else "partrig"
        # NOTE: stock Marlin's kill turns its heaters (D8, D10) off but not the fan pin (D9).
        return dialect != "marlin" or self.lights.pin != 9

    def safe_stop(self, reason: str) -> None:
        """Stop the motor (M410 ahead of the queue, position kept), lights down, latch
        ``reason``.  Never raises.

        The lights go off before the fault is latched in the link, so the latch never refuses
        its own lights-off step.  When the link is already halted (an e-stop, a fatal firmware
        error) the board has switched its outputs off itself and nothing is sent.
        """
        first = self._fault is None
        self._fault = self._fault or reason
        link_fault = self.link.fault
        if self._estop or link_fault is not None:
            log.warning("safe stop: %s (the link is latched: %s)", reason, link_fault or "e-stop")
            halted = self._estop or str(link_fault).startswith(
                ("emergency stop", "firmware halted")
            )
            if halted and self._kill_drops_lights():
                self.lights.outputs_dropped()
            return
        if first:
            log.warning("safe stop: %s", reason)
        try:
            self.link.quick_stop()
        except Exception as exc:  # NOTE: fail safe: a dead link must not hide the stop
            log.warning("safe stop: M410 could not be sent: %s", exc)
        try:
            self.lights.off()
        except Exception as exc:
            log.warning("safe stop: the lights could not be switched off: %s", exc)

    def clear_fault(self, *, zero_confirmed: bool = False) -> None:
        """Reset the board, then recover the position: home if there is an endstop, else
        take the operator's word (``zero_confirmed``) that the table is at its zero mark."""
        if self.link.fault is not None or self._fault is not None:
            self.link.clear_fault()
        self._fault = None
        self._estop = False
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
            if thing is None:
                continue
            try:
                thing.close()
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

    opened: list[SimBoard | Link | Camera] = []
    temp_dir: Path | None = None
    fw: SimBoard | None = None
    clock: SimClock | None = None
    world: SimWorld | None = None
    try:
        port = settings.serial.port
        reset_hook = None
        if settings.sim and settings.simulator.board:
            # NOTE: a board in its own process (rig/sim/board.py), for the e-stop benchmark.
            from rig.sim.board import RemoteBoard
            from rig.sim.clock import SimClock

            clock = SimClock(settings.simulator.time_scale)
            remote = RemoteBoard(settings.simulator.board).wait_ready()
            fw = remote
            opened.append(remote)
            port, reset_hook = remote.port, remote.reset
            world = _sim_world(settings, remote, clock) if with_camera else None
        elif settings.sim:
            from rig.sim.clock import SimClock
            from rig.sim.marlin import SimFirmware

            temp_dir = Path(tempfile.mkdtemp(prefix="partrig-sim-"))
            clock = SimClock(settings.simulator.time_scale)
            local = SimFirmware(
                settings.simulator,
                clock,
                dialect=settings.simulator.firmware,
                link_path=temp_dir / "ramps",
                steps_per_degree=settings.turntable.steps_per_degree,
                light_pin=settings.lights.pin,
                endstop=settings.turntable.endstop == "x_min",
            ).start()
            fw = local
            opened.append(local)
            local.wait_ready()
            port, reset_hook = local.port, local.reset
            world = _sim_world(settings, local, clock) if with_camera else None
        link = GcodeLink(settings.serial, port=port, reset_hook=reset_hook)
        link.open()
        opened.append(link)
        # NOTE: before anything moves: refuse a firmware whose position partrig cannot trust.
        check_firmware(link, settings.turntable, settings.lights)
        turntable = Turntable(
            link, settings.turntable, clock=clock.now if clock is not None else None
        )
        turntable.setup()
        if settings.sim:
            # NOTE: the simulated table powers up exactly at its zero mark, so the simulated
            # operator's "confirm zero" is true; a real rig waits for the operator or homing.
            turntable.set_zero()
        lights = Lights(link, settings.lights, sleep=clock.sleep if clock is not None else None)
        lights.off()
        if with_camera and world is None and settings.camera.driver == "sim":
            # NOTE: board bring-up: a real board with the simulated camera, before the camera
            # arrives.  The simulated world follows the angle the real board reports.
            clock, world = _bring_up_world(settings, turntable, lights)
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


def _bring_up_world(
    settings: Settings, turntable: Turntable, lights: Lights
) -> tuple[SimClock, SimWorld]:
    """A simulated world for a real board: the part turns as the board's ``M114`` says."""
    from rig.sim.clock import SimClock
    from rig.sim.world import SimWorld

    def reported_angle() -> float:
        try:
            return turntable.position()
        except Exception:  # NOTE: a busy or faulted link must not fail a frame; use the target
            return turntable.angle

    clock = SimClock(1.0)
    world = SimWorld(
        angle_source=reported_angle,
        light_source=lambda: lights.level,
        seed=settings.simulator.seed,
        clock=clock,
    )
    return clock, world


def _sim_world(settings: Settings, fw: SimBoard, clock: SimClock) -> SimWorld:
    from rig.sim.world import SimWorld

    return SimWorld(
        angle_source=fw.actual_angle_deg,
        light_source=fw.light_level,
        seed=settings.simulator.seed,
        clock=clock,
    )


def _open_camera(settings: Settings, world: SimWorld | None, clock: SimClock | None) -> Camera:
    from rig.camera import open_camera

    # NOTE: the simulated camera times its exposure on the rig's SimClock, so a virtual clock
    # makes captures instant and moves and exposures share one timeline.
    return open_camera(settings.camera, sim_world=world, sim=settings.simulator, clock=clock)
