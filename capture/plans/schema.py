"""Capture plans: what to photograph, read from TOML, validated, expanded into ordered shots.

Why a plan is data and not code: the operator writes or picks one on the rig's page, the run
engine executes it and a resumed run re-expands it from the stored TOML.  Expansion is therefore
a pure, deterministic function of the plan: the same plan always gives the same shots with the
same indices, which is what lets a resumed run find "the first missing shot".

A plan (see ``examples/plans/`` and ``docs/capture.md``)::

    name = "three bricks"
    backgrounds = [1, 3]                 # sheet ids from rig.sheets.SHEETS
    angles_per_rev = 36                  # or: angles = [0, 45, 90]
    lights = [1.0, 0.5]                  # ring levels 0..1
    settle_s = 0.2
    parts = [
      { label = "3001", instance = "3001-a", name = "Brick 2x4" },
      { label = "3001", instance = "3001-b", poses = ["upright"] },
    ]
    poses = [
      { name = "upright", prompt = "stand it on its studs-up face" },
      { name = "side", prompt = "lay it on its long side" },
    ]
    [image]
    format = "jpeg"                      # or "png"
    quality = 90

The ordering of shots (operator actions first, then turntable travel) lives in
:mod:`capture.plans.order`; this module owns the file format and its validation.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from rig.errors import PlanError

#: Pose used when a plan names none: the part as the operator first sets it down.
DEFAULT_POSE = "upright"
#: The largest plan accepted when no configuration says otherwise (``capture.max_shots``).
DEFAULT_MAX_SHOTS = 20_000
#: Labels, instance ids and pose names end up in folder names, file names and CSV/JSON cells:
#: letters, digits and a few separators only, starting with a letter or digit.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._+-]*$"
NAME_HINT = "letters, digits, space, '.', '_', '+' and '-', starting with a letter or digit"

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=NAME_PATTERN)]
#: A catalogue attribute (capture.store.catalogue checks the same; not imported here, since
#: the store imports this module): lower case, digits and ``_``; a word or a finite number.
AttributeName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
#: Catalogue columns, not attributes (the same list as capture.store.catalogue.RESERVED).
RESERVED_ATTRIBUTES = frozenset(
    {"label", "name", "instance", "instance_id", "split", "id", "shot_id"}
)
AttributeValue = (
    Annotated[str, Field(min_length=1, max_length=200)]
    | Annotated[float, Field(allow_inf_nan=False)]
)


class _Strict(BaseModel):
    # NOTE: forbid unknown keys so a typo ("angle_per_rev") is an error, never a silent default.
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The label of a "bag" run's parts (unsorted or mixed, not yet known): a part entry without a
#: label gets it, and the labelling station takes the model's top-1 for it (docs/web.md).
UNLABELLED = "unlabelled"


class PartEntry(_Strict):
    """One physical part instance: two copies of brick 3001 are two entries, two instances."""

    label: Name = Field(
        UNLABELLED,
        description="the class label the dataset uses, e.g. 3001; left out for a bag of "
        "unlabelled or mixed parts, which the active model pre-labels for the labelling station",
    )
    instance: Name = Field(description="physical instance id, unique in the plan")
    name: str | None = Field(None, max_length=200, description="human name, shown in prompts")
    poses: list[Name] | None = Field(
        None, description="pose names for this part only (override the plan's poses)"
    )
    attributes: dict[AttributeName, AttributeValue] | None = Field(
        None,
        max_length=32,
        description="the part's catalogue attributes, e.g. {category = 'screw', thread = 'M4',"
        " nominal_length_mm = 10}; merged over the catalogue's when the run starts",
    )

    @model_validator(mode="after")
    def _attribute_names(self) -> PartEntry:
        reserved = sorted(set(self.attributes or {}) & RESERVED_ATTRIBUTES)
        if reserved:
            raise ValueError(
                f"attributes: {', '.join(reserved)} is a catalogue column, not an attribute;"
                " choose another name"
            )
        return self


class Pose(_Strict):
    """How the operator sets the part down; ``prompt`` is what they are told to do."""

    name: Name
    prompt: str = Field("", max_length=300)


class ImageSpec(_Strict):
    """How shots are stored.  ``quality`` None means ``data.jpeg_quality`` from the config."""

    format: Literal["jpeg", "png"] = "jpeg"
    quality: int | None = Field(None, ge=1, le=100)


class Plan(_Strict):
    """A validated capture plan.  Build it with :func:`load_plan` to get field-naming errors."""

    name: str = Field(min_length=1, max_length=200)
    parts: list[PartEntry]
    backgrounds: list[int]
    angles_per_rev: int | None = Field(None, ge=1, le=3600)
    angles: list[float] | None = None
    lights: list[float] = Field(default_factory=lambda: [1.0])
    poses: list[Pose] = Field(default_factory=lambda: [Pose(name=DEFAULT_POSE)])
    settle_s: float = Field(0.2, ge=0, le=60)
    image: ImageSpec = Field(default_factory=ImageSpec)

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        # NOTE: ValueError texts become "field: message" lines in PlanError (see _describe).
        _check_parts(self.parts, {p.name for p in self.poses})
        _check_backgrounds(self.backgrounds)
        _check_angles(self.angles_per_rev, self.angles)
        _check_lights(self.lights)
        if not self.poses:
            raise ValueError("poses: must not be empty; omit it to use the single pose 'upright'")
        _unique("poses", [p.name for p in self.poses], "pose name")
        return self

    # --- derived ---------------------------------------------------------------------------------

    def angle_list(self) -> list[float]:
        """The angles to shoot, ascending, in degrees 0 <= a < 360."""
        if self.angles is not None:
            return sorted(float(a) for a in self.angles)
        n = int(self.angles_per_rev or 1)
        return [round(360.0 * i / n, 6) for i in range(n)]

    def poses_of(self, part: PartEntry) -> list[str]:
        """The pose names to shoot ``part`` in, in plan order."""
        if part.poses is not None:
            return list(part.poses)
        return [p.name for p in self.poses]

    def pose_prompt(self, pose: str) -> str:
        for p in self.poses:
            if p.name == pose:
                return p.prompt
        return ""

    def shot_count(self) -> int:
        """parts x poses x backgrounds x angles x lights (poses counted per part).

        NOTE: arithmetic only, never expanding: it is what bounds a plan before expansion.
        """
        combos = sum(len(p.poses) if p.poses is not None else len(self.poses) for p in self.parts)
        angles = len(self.angles) if self.angles is not None else int(self.angles_per_rev or 1)
        return combos * len(self.backgrounds) * angles * len(self.lights)


# --- validation helpers ----------------------------------------------------------------------


def plan_attributes(plan: Plan) -> dict[str, dict[str, str | float]]:
    """Each label's catalogue attributes as the plan gives them (entries of one label merged)."""
    out: dict[str, dict[str, str | float]] = {}
    for part in plan.parts:
        if part.attributes:
            out.setdefault(part.label, {}).update(part.attributes)
    return out


def _unique(field: str, values: list[Any], what: str) -> None:
    seen: set[Any] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ValueError(f"{field}[{i}]: duplicate {what} {v!r}; each may appear only once")
        seen.add(v)


def _check_parts(parts: list[PartEntry], pose_names: set[str]) -> None:
    if not parts:
        raise ValueError("parts: must list at least one part, e.g. [{label='3001', instance='a'}]")
    seen: dict[str, int] = {}
    for i, part in enumerate(parts):
        if part.instance in seen:
            raise ValueError(
                f"parts[{i}].instance: {part.instance!r} is already used by parts"
                f"[{seen[part.instance]}]; every physical part needs its own instance id"
            )
        seen[part.instance] = i
        if part.poses is None:
            continue
        if not part.poses:
            raise ValueError(f"parts[{i}].poses: must not be empty; omit it to use all poses")
        for j, pose in enumerate(part.poses):
            if pose not in pose_names:
                raise ValueError(
                    f"parts[{i}].poses[{j}]: pose {pose!r} is not defined in poses;"
                    f" defined: {', '.join(sorted(pose_names))}"
                )
        _unique(f"parts[{i}].poses", list(part.poses), "pose")


def _check_backgrounds(backgrounds: list[int]) -> None:
    from rig.sheets import SHEETS

    if not backgrounds:
        raise ValueError("backgrounds: must list at least one sheet id, e.g. [1]")
    valid = ", ".join(str(i) for i in sorted(SHEETS))
    for i, sheet in enumerate(backgrounds):
        if sheet not in SHEETS:
            raise ValueError(f"backgrounds[{i}]: there is no sheet {sheet}; valid ids: {valid}")
    _unique("backgrounds", backgrounds, "sheet")


def _check_angles(per_rev: int | None, angles: list[float] | None) -> None:
    if (per_rev is None) == (angles is None):
        raise ValueError(
            "angles: give exactly one of angles_per_rev = N (1..3600) or angles = [list of degrees]"
        )
    if angles is None:
        return
    if not angles:
        raise ValueError("angles: must list at least one angle in degrees, 0 <= angle < 360")
    for i, a in enumerate(angles):
        if not (math.isfinite(a) and 0.0 <= a < 360.0):
            raise ValueError(f"angles[{i}]: {a} is out of range; use 0 <= angle < 360 degrees")
    _unique("angles", [float(a) for a in angles], "angle")


def _check_lights(lights: list[float]) -> None:
    if not lights:
        raise ValueError("lights: must list at least one light level, e.g. [1.0]")
    for i, level in enumerate(lights):
        if not (math.isfinite(level) and 0.0 <= level <= 1.0):
            raise ValueError(f"lights[{i}]: {level} is out of range; levels are 0..1")
    _unique("lights", [float(v) for v in lights], "light level")


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _describe(err: ErrorDetails) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "value_error":
        # NOTE: our own checks already start with the field name; drop pydantic's prefix.
        msg = msg.removeprefix("Value error, ")
        prefix = _loc(err["loc"])
        return f"{prefix}.{msg}" if prefix and not msg.startswith(prefix) else msg
    if kind == "extra_forbidden":
        msg = "unknown key; check the spelling against docs/capture.md"
    elif kind == "literal_error":
        msg = "must be one of " + str(err.get("ctx", {}).get("expected", ""))
    elif kind == "string_pattern_mismatch":
        msg = f"use {NAME_HINT}"
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or kind == "missing" else f" (got {_short(got)})"
    return f"{_loc(err['loc']) or 'plan'}: {msg}{shown}"


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: an answer never echoes a whole input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_shot_count(plan: Plan, max_shots: int) -> None:
    """Refuse ``plan`` when it has more than ``max_shots`` shots, before anything expands it.

    Why here and not in the expansion: a 3 KB plan can ask for a million shots, and expanding
    it costs a minute of CPU and most of a Pi's memory; the product of the list lengths costs
    nothing.
    """
    total = plan.shot_count()
    if total > max_shots:
        raise PlanError(
            f"the plan has {total:,} shots, more than the limit of {max_shots:,} "
            "(capture.max_shots): use fewer angles, light levels, backgrounds or parts, "
            "or split it into several runs"
        )


# --- loading ---------------------------------------------------------------------------------


def parse_plan(
    raw: dict[str, Any], source: str = "", *, max_shots: int | None = DEFAULT_MAX_SHOTS
) -> Plan:
    """Validate a dict (as read from TOML) into a :class:`Plan`, or raise :class:`PlanError`.

    ``max_shots`` bounds the shot count (see :func:`check_shot_count`); None skips the bound,
    for plans already accepted once (a stored run being resumed).
    """
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        where = f"{source}: " if source else ""
        lines = [_describe(e) for e in exc.errors()]
        raise PlanError(where + "invalid plan:\n  " + "\n  ".join(lines)) from None
    if max_shots is not None:
        check_shot_count(plan, max_shots)
    return plan


def load_plan(source: str | Path, *, max_shots: int | None = DEFAULT_MAX_SHOTS) -> Plan:
    """Read a plan from a TOML file (a :class:`~pathlib.Path`) or from TOML text (a ``str``).

    NOTE: a string is always the TOML itself, never a file name: plans arrive as text from the
    web page and the API, and a client must not be able to make the server read its files.
    Every problem raises :class:`PlanError` whose message names the field, e.g.
    ``parts[2].instance: ...``.
    """
    name = ""
    if isinstance(source, Path):
        name = str(source)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise PlanError(
                f"cannot read the plan {source}: {exc.strerror}; check the path"
            ) from None
        except UnicodeDecodeError:
            raise PlanError(f"the plan {source} is not UTF-8 text; save it as UTF-8") from None
    else:
        text = source
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{name + ': ' if name else ''}the plan is not valid TOML: {exc}") from None
    return parse_plan(raw, name, max_shots=max_shots)


__all__ = [
    "DEFAULT_MAX_SHOTS",
    "ImageSpec",
    "PartEntry",
    "Plan",
    "Pose",
    "check_shot_count",
    "load_plan",
    "parse_plan",
]
