"""SimWorld: what sits on the simulated rig right now.

Why a separate object: the simulated camera renders the scene, the run engine's simulated
operator changes it (install a sheet, place a part, lay it on its side), and the web page shows
it; none of them should own the others.  The turntable angle and the light level are not stored
here but read live from the simulated firmware (``angle_source``, ``light_source``), so the
camera sees the *actual* angle at the moment of exposure, mid-move included.

Thread-safe: the run engine's thread applies actions while the camera renders from another.

Example::

    world = SimWorld(firmware.actual_angle_deg, firmware.light_level)
    world.apply({"kind": "install_background", "sheet": 3})
    world.apply({"kind": "place_part", "label": "brick-2x4-red", "instance": "a", "pose": "side"})
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rig.errors import PlanError
from rig.sheets import sheet_spec
from rig.sim.catalogue import part_model, part_spec

if TYPE_CHECKING:
    from rig.sim.clock import SimClock


@dataclass(frozen=True)
class LoadedPart:
    """The part instance on the turntable and how it was set down."""

    label: str
    instance: str
    pose: str = "upright"


@dataclass(frozen=True)
class Scene:
    """A consistent snapshot of the world for one exposure."""

    sheet: int | None
    part: LoadedPart | None


class SimWorld:
    """The installed sheet and the loaded part, plus live angle and light readings."""

    def __init__(
        self,
        angle_source: Callable[[], float],
        light_source: Callable[[], float],
        *,
        seed: int = 0,
        clock: SimClock | None = None,
    ) -> None:
        self._angle_source = angle_source
        self._light_source = light_source
        self.seed = seed
        #: The simulator's clock, if the rig has one; a SimCamera given none times its
        #: exposures on this one, so moves and exposures share one timeline.
        self.clock = clock
        self._lock = threading.Lock()
        self._sheet: int | None = None
        self._part: LoadedPart | None = None
        self.actions: list[dict[str, Any]] = []

    # --- live readings ------------------------------------------------------------------------

    def angle(self) -> float:
        """The turntable's true angle now, degrees 0..360."""
        return float(self._angle_source()) % 360.0

    def light(self) -> float:
        """The ring light's level now, 0..1."""
        return min(1.0, max(0.0, float(self._light_source())))

    # --- state --------------------------------------------------------------------------------

    @property
    def sheet(self) -> int | None:
        with self._lock:
            return self._sheet

    @property
    def part(self) -> LoadedPart | None:
        with self._lock:
            return self._part

    def scene(self) -> Scene:
        with self._lock:
            return Scene(self._sheet, self._part)

    def install_sheet(self, sheet_id: int) -> None:
        """Put printed sheet ``sheet_id`` on the rig (replacing any other)."""
        spec = sheet_spec(sheet_id)
        with self._lock:
            self._sheet = spec.id

    def remove_sheet(self) -> None:
        with self._lock:
            self._sheet = None

    def load_part(self, label: str, instance: str, pose: str = "upright") -> None:
        """Set an instance of catalogue part ``label`` on the turntable in ``pose``.

        Validated at once (unknown label: NotFound; impossible pose: PlanError) so a bad action
        fails when it is applied, not later inside the camera.
        """
        part_spec(label)
        part_model(label, str(instance), pose)
        with self._lock:
            self._part = LoadedPart(label, str(instance), pose)

    def remove_part(self) -> None:
        with self._lock:
            self._part = None

    def apply(self, action: dict[str, Any]) -> None:
        """Perform an operator action as the run engine's prompt describes it.

        ``{"kind": "install_background", "sheet": 3}``, ``{"kind": "remove_background"}``,
        ``{"kind": "place_part", "label": ..., "instance": ..., "pose": ...}`` (also used to lay
        a part on its side: the pose changes) and ``{"kind": "remove_part"}``.
        """
        kind = action.get("kind") if isinstance(action, dict) else None
        if kind == "install_background":
            self.install_sheet(_field(action, "sheet"))
        elif kind == "remove_background":
            self.remove_sheet()
        elif kind == "place_part":
            self.load_part(
                str(_field(action, "label")),
                str(_field(action, "instance")),
                str(action.get("pose") or "upright"),
            )
        elif kind == "remove_part":
            self.remove_part()
        else:
            raise PlanError(
                f"unknown operator action {action!r}; kinds: install_background,"
                " remove_background, place_part, remove_part"
            )
        with self._lock:
            self.actions.append(dict(action))


def _field(action: dict[str, Any], name: str) -> Any:
    if action.get(name) is None:
        raise PlanError(f"operator action {action.get('kind')!r} needs {name!r} (got {action!r})")
    return action[name]
