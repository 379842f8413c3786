"""Expanding a plan into ordered shots, counting operator actions, estimating the duration.

Why this order: a person swapping sheets and re-placing parts is by far the slowest and most
error-prone step of a run, so the order first minimises operator actions; then it minimises
turntable travel, which is the next largest cost per shot.

* **Operator actions.** Two nestings are possible: background outer (install a sheet, shoot
  every part on it) or part outer (place a part, shoot it on every sheet).  Both are expanded
  and their actions counted with the same model the run engine follows
  (:func:`count_operator_actions`); the one with fewer wins, and a tie goes to background outer
  because every sheet's empty reference frame is then taken before any part is placed.
* **Travel.** Inside each part-pose-sheet group the angles are shot in serpentine order
  (ascending, then descending in the next group), so the turntable never rewinds a full turn
  between groups; at each angle every light level is shot before moving (lights also
  serpentine, so consecutive angles share a level).  The outer loop's inner list is serpentine
  too, so a group boundary keeps the same sheet or part where it can.

The result is deterministic: it depends only on the plan's values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from capture.plans.schema import PartEntry, Plan
    from rig.config import TurntableConfig

ActionKind = Literal["install_background", "place_part", "remove_part"]

#: Seconds a caller may allow per operator action in :func:`estimate` (walk over, swap, press
#: Continue).  NOTE: not counted by default: how long a person takes is unknown, and counting
#: 30 s a prompt made a 4-shot plan "63 s"; the preview shows the number of actions instead.
OPERATOR_ACTION_S = 30.0


@dataclass(frozen=True)
class OperatorAction:
    """Something a person must do before a shot; ``text`` is shown to them verbatim.

    ``as_dict()`` is the structured form the run engine stores with its prompt and the
    simulator performs (``SimWorld.apply``).
    """

    kind: ActionKind
    text: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params}


@dataclass(frozen=True)
class ShotSpec:
    """One planned shot.  ``index`` is its position in the expansion, 0..N-1.

    ``prompt_before`` is set exactly on the shots where the sheet, the part instance or its pose
    changes from the shot before (and on the first shot): ``install_background`` when the sheet
    changes, else ``place_part``.  ``actions`` lists every action the operator is expected to
    perform before the shot (an installed sheet may also need the part removed for its reference
    frame and then placed again); ``prompt_before`` is always its first element.
    """

    index: int
    label: str
    instance: str
    pose: str
    background: int
    angle_deg: float
    light: float
    prompt_before: OperatorAction | None = None
    actions: tuple[OperatorAction, ...] = ()


# --- the operator's actions ------------------------------------------------------------------


def _sheet_name(sheet: int) -> str:
    from rig.sheets import SHEETS

    spec = SHEETS.get(sheet)
    return spec.name if spec is not None else "unknown"


def install_action(sheet: int) -> OperatorAction:
    return OperatorAction(
        "install_background",
        f"Install background sheet {sheet} ({_sheet_name(sheet)}) with its marker visible,"
        " then press Continue.",
        {"sheet": sheet},
    )


def remove_action() -> OperatorAction:
    return OperatorAction(
        "remove_part",
        "Remove the part from the turntable so the empty reference frame can be taken,"
        " then press Continue.",
        {},
    )


def place_action(plan: Plan, part: PartEntry, pose: str) -> OperatorAction:
    what = f"{part.label} ({part.name})" if part.name else part.label
    how = plan.pose_prompt(pose) or f"pose: {pose}"
    return OperatorAction(
        "place_part",
        f"Place part {what}, instance {part.instance}, on the turntable ({how}),"
        " then press Continue.",
        {"label": part.label, "instance": part.instance, "pose": pose},
    )


def count_operator_actions(shots: list[ShotSpec]) -> int:
    """How many operator actions the run engine will ask for to shoot ``shots`` in order.

    The model, as the engine behaves: a sheet change is one action; the first time a sheet is
    installed its empty reference frame is taken, so a loaded part is removed (one action); a
    change of part, instance or pose is one placement.
    """
    return len(_walk(shots))


def _walk(shots: list[ShotSpec]) -> list[tuple[int, str]]:
    """(shot position, action kind) for every action the engine asks for."""
    actions: list[tuple[int, str]] = []
    sheet: int | None = None
    loaded: tuple[str, str, str] | None = None
    referenced: set[int] = set()
    for i, s in enumerate(shots):
        if s.background != sheet:
            actions.append((i, "install_background"))
            sheet = s.background
            if sheet not in referenced:
                referenced.add(sheet)
                if loaded is not None:
                    actions.append((i, "remove_part"))
                    loaded = None
        key = (s.label, s.instance, s.pose)
        if key != loaded:
            actions.append((i, "place_part"))
            loaded = key
    return actions


# --- expansion ---------------------------------------------------------------------------------


def _ordered(plan: Plan, background_outer: bool) -> list[ShotSpec]:
    """All shots for one nesting, without prompts; indices are positions."""
    combos = [(part, pose) for part in plan.parts for pose in plan.poses_of(part)]
    sheets = list(plan.backgrounds)
    groups: list[tuple[PartEntry, str, int]] = []
    if background_outer:
        for i, sheet in enumerate(sheets):
            parts = combos if i % 2 == 0 else combos[::-1]
            groups.extend((part, pose, sheet) for part, pose in parts)
    else:
        for i, (part, pose) in enumerate(combos):
            order = sheets if i % 2 == 0 else sheets[::-1]
            groups.extend((part, pose, sheet) for sheet in order)
    angles, lights = plan.angle_list(), [float(v) for v in plan.lights]
    shots: list[ShotSpec] = []
    step = 0
    for g, (part, pose, sheet) in enumerate(groups):
        for angle in angles if g % 2 == 0 else angles[::-1]:
            for light in lights if step % 2 == 0 else lights[::-1]:
                shots.append(
                    ShotSpec(len(shots), part.label, part.instance, pose, sheet, angle, light)
                )
            step += 1
    return shots


def _with_prompts(plan: Plan, shots: list[ShotSpec]) -> list[ShotSpec]:
    parts = {p.instance: p for p in plan.parts}
    by_shot: dict[int, list[OperatorAction]] = {}
    for i, kind in _walk(shots):
        s = shots[i]
        if kind == "install_background":
            act = install_action(s.background)
        elif kind == "remove_part":
            act = remove_action()
        else:
            act = place_action(plan, parts[s.instance], s.pose)
        by_shot.setdefault(i, []).append(act)
    out: list[ShotSpec] = []
    prev: ShotSpec | None = None
    for i, s in enumerate(shots):
        acts = by_shot.get(i, [])
        changed = prev is None or (s.background, s.label, s.instance, s.pose) != (
            prev.background,
            prev.label,
            prev.instance,
            prev.pose,
        )
        if changed and not acts:
            # NOTE: cannot happen with the engine's model (a change always costs an action),
            # but the contract "a prompt exactly when something changes" must hold regardless.
            acts = [place_action(plan, parts[s.instance], s.pose)]
        first = acts[0] if acts else None
        out.append(
            ShotSpec(
                s.index,
                s.label,
                s.instance,
                s.pose,
                s.background,
                s.angle_deg,
                s.light,
                first,
                tuple(acts),
            )
        )
        prev = s
    return out


def expand(plan: Plan) -> list[ShotSpec]:
    """Every shot of ``plan``, ordered for the fewest operator actions, then the least travel.

    ``len(expand(plan)) == plan.shot_count()``; indices are 0..N-1 in order.
    """
    bg_outer = _ordered(plan, background_outer=True)
    part_outer = _ordered(plan, background_outer=False)
    best = bg_outer
    if count_operator_actions(part_outer) < count_operator_actions(bg_outer):
        best = part_outer
    return _with_prompts(plan, best)


# --- duration ----------------------------------------------------------------------------------


def estimate(
    plan: Plan,
    turntable_config: TurntableConfig,
    exposure_s: float = 0.1,
    operator_action_s: float = 0.0,
) -> float:
    """Estimated seconds to run ``plan`` from a turntable at 0 degrees.

    The sum of: every move by the trapezoid model (:func:`rig.motion.duration`, with the
    turntable's speed, acceleration and direction mode), the settle time and one exposure per
    shot, two extra exposures per sheet installation (marker check and reference frame), and
    ``operator_action_s`` for each operator action (none by default: the rig's time only).
    Moves follow the turntable's own direction rule (:func:`rig.motion.travel_deg`:
    ``absolute`` always turns forward).  Encoding and writing are not counted: the pipeline
    hides them behind the moves.  A running run's ETA is measured instead (capture/runs/eta.py).
    """
    from rig.motion import duration, travel_deg

    tt = turntable_config
    shots = expand(plan)
    total, here = 0.0, 0.0
    for s in shots:
        dist = abs(travel_deg(here, s.angle_deg, tt.mode))
        if dist > 0:
            total += duration(dist, tt.max_speed_deg_s, tt.accel_deg_s2)
        here = s.angle_deg
        total += plan.settle_s + exposure_s
    walk = _walk(shots)
    installs = sum(1 for _, kind in walk if kind == "install_background")
    return total + installs * 2 * exposure_s + len(walk) * operator_action_s
