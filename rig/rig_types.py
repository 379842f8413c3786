"""The :class:`Rig` protocol: what the layers above (capture runs, the sorter, the web app) use
of the bench that :func:`rig.rig.open_rig` opens.

Why a protocol and not the class: the web app and the capture runs are tested against small
recording doubles of the rig, and the concrete :class:`rig.rig.Rig` is built only by
``open_rig``; typing the callers with this protocol lets the type checker hold both to the same
surface.  The devices it hands out are the concrete classes (one implementation each) or their
own protocols (:class:`~rig.link_types.Link`, :class:`~rig.camera_types.Camera`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rig.camera_types import Camera
    from rig.config import Settings
    from rig.lights import Lights
    from rig.link_types import Link
    from rig.sim.board import RemoteBoard
    from rig.sim.clock import SimClock
    from rig.sim.marlin import SimFirmware
    from rig.sim.world import SimWorld
    from rig.turntable import Turntable


class Rig(Protocol):
    """Everything on the bench, opened once by the process that owns the hardware."""

    settings: Settings
    link: Link
    turntable: Turntable
    lights: Lights
    #: None when the rig was opened without its camera (``partrig rig`` commands, the demo).
    camera: Camera | None
    #: The simulated world (sheet, part, pose) when simulated, else None.
    world: SimWorld | None
    #: The simulated board when simulated, else None.
    firmware_sim: SimFirmware | RemoteBoard | None
    #: The simulator's clock (moves and exposures share its timeline), else None.
    clock: SimClock | None

    @property
    def simulated(self) -> bool: ...

    @property
    def fault(self) -> str | None:
        """The first latched fault: the rig's own, the link's, or the turntable's."""
        ...

    @property
    def emergency_stopped(self) -> bool:
        """True from the moment an e-stop is pressed until :meth:`clear_fault`."""
        ...

    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot for the status page and ``partrig rig status``."""
        ...

    def emergency_stop(self) -> bool:
        """``M112`` on the wire now, ahead of every queue and lock; True once written."""
        ...

    def finish_emergency_stop(self) -> None: ...

    def safe_stop(self, reason: str) -> None: ...

    def clear_fault(self, *, zero_confirmed: bool = False) -> None: ...

    def close(self) -> None: ...
