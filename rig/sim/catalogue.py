"""The simulated parts: what can be put on the simulated turntable.

Why these parts: a model trained on simulated captures must really have to learn shape and
colour, so the catalogue holds (contracts, "Simulation fidelity"):

* parts of the *same colour that differ only in shape* (``brick-2x4-red``, ``brick-2x2-red``),
* parts of the *same shape in different colours* (``brick-2x4-red``, ``brick-2x4-blue``),
* parts that look different at different angles and poses (studs, side holes, threads, a hex),
* parts flagged ``unknown=True`` that no plan should train on: the sorter's review path needs
  parts its model has never seen, including one in a trained part's colour and one in a
  trained part's shape (``bench/open_set.py``);
* M4 pan head screws of 8, 10, 12 and 16 mm that look the same except for their length
  (``screw-m4-8`` ... ``screw-m4-16``): they share the dataset label ``screw-m4``
  (:attr:`PartSpec.shared_label`) and carry ``nominal_length_mm``, because length is measured
  (``capture/vision/measure.py``), never classified; :func:`trainable_labels` leaves them out.

Every part's true size is known: :func:`true_size_mm` gives an instance's extents in
millimetres, and the simulated cameras draw it at that size (``rig/sim/optics.py`` is the
metric one, whose printed sheet marker has its real printed size too).

Each physical copy (an *instance* id) differs a little, deterministically from its id: a
colour and size jitter of a few per cent, and where and how straight the operator set it down
on the turntable (a few millimetres off centre, a few degrees of yaw), which changes with the
pose because the operator re-places the part.

Dimensions are millimetres (LEGO: 8 mm stud pitch, 9.6 mm brick, 3.2 mm plate).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np

from rig.errors import NotFound, PlanError
from rig.sim.shapes import (
    Face,
    Model,
    Solid,
    box,
    disc_mark,
    prism,
    rotation_x,
    rotation_z,
    thread_lines,
)

RGB = tuple[int, int, int]
POSES = ("upright", "side", "upside_down")

PITCH, BRICK_H, PLATE_H, STUD_R, STUD_H = 8.0, 9.6, 3.2, 2.4, 1.7
#: Shaft lengths (under the head, as screws are sold) of the look-alike M4 screws.
M4_LENGTHS = (8, 10, 12, 16)
#: M4 pan head: shaft radius, head radius and head height in millimetres.
M4_SHAFT_R, M4_HEAD_R, M4_HEAD_H = 2.0, 3.6, 2.8


@dataclass(frozen=True)
class PartSpec:
    """One simulated part design.  ``label`` is the class name a dataset uses."""

    label: str
    name: str
    shape: str
    colour: RGB
    poses: tuple[str, ...] = POSES
    unknown: bool = False
    #: The dataset label of a part told apart from its siblings only by a measured size.
    shared_label: str | None = None
    #: Nominal attributes of the design, e.g. ``(("nominal_length_mm", 10.0),)``.
    nominal: tuple[tuple[str, float | str], ...] = ()

    @property
    def attributes(self) -> dict[str, float | str]:
        return dict(self.nominal)


def _spec(
    label: str,
    name: str,
    shape: str,
    colour: RGB,
    poses: tuple[str, ...] = POSES,
    unknown: bool = False,
    *,
    shared_label: str | None = None,
    nominal: tuple[tuple[str, float | str], ...] = (),
) -> PartSpec:
    return PartSpec(label, name, shape, colour, tuple(poses), unknown, shared_label, nominal)


def _m4(length: int) -> PartSpec:
    return _spec(
        f"screw-m4-{length}", f"Pan head screw M4x{length}", f"screw-m4x{length}",
        (172, 178, 188), ("upright", "side"), shared_label="screw-m4",
        nominal=(("nominal_length_mm", float(length)), ("thread", "M4"), ("head", "pan")),
    )  # fmt: skip


# NOTE: order matters to callers that take "the first n trainable parts" (tests, benchmarks):
# the first three contrast well with the plain white and grey sheets.
CATALOGUE: dict[str, PartSpec] = {
    p.label: p
    for p in (
        _spec("brick-2x4-red", "Brick 2x4, red", "brick2x4", (201, 26, 9)),
        _spec("brick-2x2-red", "Brick 2x2, red", "brick2x2", (201, 26, 9)),
        _spec("brick-2x4-blue", "Brick 2x4, blue", "brick2x4", (0, 85, 191)),
        _spec("plate-2x4-green", "Plate 2x4, green", "plate2x4", (35, 130, 60)),
        _spec("brick-1x4-yellow", "Brick 1x4, yellow", "brick1x4", (245, 205, 47)),
        _spec("tile-2x2-tan", "Tile 2x2, tan", "tile2x2", (222, 198, 120)),
        _spec("technic-1x4-orange", "Technic brick 1x4, orange", "technic1x4", (254, 138, 24)),
        _spec("screw-m4x16", "Pan head screw M4x16", "screw", (172, 178, 188), ("upright", "side")),
        _spec("nut-m6-brass", "Hex nut M6, brass", "nut", (181, 150, 70)),
        _spec("brick-1x2-purple", "Brick 1x2, purple", "brick1x2", (129, 0, 123), unknown=True),
        _spec(
            "washer-m8", "Washer M8", "washer", (150, 155, 165), ("upright", "upside_down"), True
        ),
        # NOTE: open-set checks need unknowns that are near misses: one in a known part's
        # colour (red, as brick-2x4-red) and one in a known part's shape (brick 2x4).
        _spec("brick-1x2-red", "Brick 1x2, red", "brick1x2", (201, 26, 9), unknown=True),
        _spec("brick-2x4-black", "Brick 2x4, black", "brick2x4", (27, 42, 52), unknown=True),
        *(_m4(n) for n in M4_LENGTHS),
    )
}


def part_spec(label: str) -> PartSpec:
    """The design with this label, or NotFound listing the labels there are."""
    try:
        return CATALOGUE[label]
    except KeyError:
        raise NotFound(
            f"the simulated catalogue has no part {label!r}; known: {', '.join(CATALOGUE)}"
        ) from None


def trainable_labels() -> list[str]:
    """Labels meant for training, in catalogue order.

    Not ``unknown`` parts, and not parts with a ``shared_label``: those differ from one another
    only in a size a classifier looking at a resized crop cannot see, so they are measured.
    """
    return [p.label for p in CATALOGUE.values() if not p.unknown and p.shared_label is None]


# --- shapes -------------------------------------------------------------------------------------


def _studded(nx: int, ny: int, height: float, colour: np.ndarray, studs: bool = True) -> Model:
    w, d = nx * PITCH - 0.2, ny * PITCH - 0.2
    solids = [box((-w / 2, -d / 2, 0), (w / 2, d / 2, height), colour)]
    if studs:
        stud_colour = colour * 1.02
        for i in range(nx):
            for j in range(ny):
                x, y = (i - (nx - 1) / 2) * PITCH, (j - (ny - 1) / 2) * PITCH
                solids.append(
                    prism((x, y, height), (0, 0, 1), STUD_R, STUD_H, 14, stud_colour, out=(0, 0, 1))
                )
    # NOTE: the underside is open on a real brick: a dark recess shows when it lies upside down.
    inner = (w / 2 - 1.2, d / 2 - 1.2)
    under = np.array([[-inner[0], -inner[1], -0.01], [inner[0], -inner[1], -0.01],
                      [inner[0], inner[1], -0.01], [-inner[0], inner[1], -0.01]])  # fmt: skip
    down = np.array([0, 0, -1.0])
    solids.append(Solid([Face(under, down, colour * 0.6)], down, flat=True))
    return Model(solids)


def _technic(colour: np.ndarray) -> Model:
    model = _studded(4, 1, BRICK_H, colour)
    hole = colour * 0.25
    for k in range(3):
        x = (k - 1) * PITCH
        for side in (-1, 1):
            centre = (x, side * (PITCH - 0.2) / 2, 5.8)
            model.solids.append(disc_mark(centre, (0, side, 0), 2.4, hole))
    return model


def _screw(colour: np.ndarray, length: float = 16.0) -> Model:
    # NOTE: upright = standing on its head with the shaft up, so the threads face the camera.
    shaft = prism((0, 0, M4_HEAD_H), (0, 0, 1), M4_SHAFT_R, length, 16, colour * 0.95)
    shaft.lines = thread_lines((0, 0, 2.8), (0, 0, 1), 2.0, length, 0.7, colour * 0.45, 0.25)
    head = prism((0, 0, 0), (0, 0, 1), M4_HEAD_R, M4_HEAD_H, 24, colour, out=(0, 0, -1))
    slot = box((-2.8, -0.4, -0.02), (2.8, 0.4, 0.0), colour * 0.3, out=(0, 0, -1))
    slot.flat = True
    return Model([shaft, head, slot])


def _nut(colour: np.ndarray) -> Model:
    body = prism((0, 0, 0), (0, 0, 1), 5.77, 5.0, 6, colour, phase=np.pi / 6)
    hole = colour * 0.4
    return Model([body, disc_mark((0, 0, 5.0), (0, 0, 1), 3.0, hole, depth=5.0),
                  disc_mark((0, 0, 0.0), (0, 0, -1), 3.0, hole, depth=5.0)])  # fmt: skip


def _washer(colour: np.ndarray) -> Model:
    body = prism((0, 0, 0), (0, 0, 1), 8.0, 1.6, 32, colour)
    hole = colour * 0.2
    return Model([body, disc_mark((0, 0, 1.6), (0, 0, 1), 4.2, hole, 24, depth=1.6),
                  disc_mark((0, 0, 0.0), (0, 0, -1), 4.2, hole, 24, depth=1.6)])  # fmt: skip


SHAPES: dict[str, Callable[[np.ndarray], Model]] = {
    "brick2x4": lambda c: _studded(4, 2, BRICK_H, c),
    "brick2x2": lambda c: _studded(2, 2, BRICK_H, c),
    "brick1x4": lambda c: _studded(4, 1, BRICK_H, c),
    "brick1x2": lambda c: _studded(2, 1, BRICK_H, c),
    "plate2x4": lambda c: _studded(4, 2, PLATE_H, c),
    "tile2x2": lambda c: _studded(2, 2, PLATE_H, c, studs=False),
    "technic1x4": _technic,
    "screw": _screw,
    "nut": _nut,
    "washer": _washer,
    **{f"screw-m4x{n}": partial(_screw, length=float(n)) for n in M4_LENGTHS},
}


# --- instances and poses --------------------------------------------------------------------------


def _rng(*parts: str) -> np.random.Generator:
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


_POSE_ROTATION = {"upright": rotation_x(0), "side": rotation_x(90), "upside_down": rotation_x(180)}


@dataclass(frozen=True)
class Placement:
    """Where an instance sits on the turntable at turntable angle 0 (mm, degrees)."""

    offset_mm: tuple[float, float]
    yaw_deg: float


def placement(label: str, instance: str, pose: str) -> Placement:
    """How the operator set this instance down in this pose (deterministic from the ids)."""
    rng = _rng("placement", label, instance, pose)
    r, a = 3.0 * np.sqrt(rng.random()), rng.random() * 2 * np.pi
    return Placement((float(r * np.cos(a)), float(r * np.sin(a))), float(rng.uniform(-8, 8)))


def instance_scale(label: str, instance: str) -> float:
    """The size jitter of this physical copy (the design's millimetres times this)."""
    rng = _rng("instance", label, str(instance))
    rng.uniform(0.96, 1.04, 3)  # NOTE: the colour jitter is drawn first, as in part_model
    return float(rng.uniform(0.99, 1.01))


def true_size_mm(label: str, instance: str) -> tuple[float, float, float]:
    """The instance's true extents along the design's x, y and z axes, in millimetres.

    Ground truth for the measurement benchmark; for a screw, z is its overall length (head
    plus shaft) and the shaft alone is ``nominal_length_mm`` times :func:`instance_scale`.
    """
    spec = part_spec(label)
    lo, hi = SHAPES[spec.shape](np.asarray(spec.colour, float)).bounds()
    ext = (hi - lo) * instance_scale(label, instance)
    return float(ext[0]), float(ext[1]), float(ext[2])


@lru_cache(maxsize=128)
def part_model(label: str, instance: str, pose: str = "upright") -> Model:
    """The instance's model resting on the turntable at angle 0, centred on its placement.

    The turntable centre is the origin, z is up; turning the turntable is a rotation of this
    model about z.  Raises NotFound for an unknown label, PlanError for a pose the part cannot
    take.
    """
    spec = part_spec(label)
    if pose not in spec.poses:
        raise PlanError(
            f"part {label!r} cannot be placed {pose!r}; it can be: {', '.join(spec.poses)}"
        )
    rng = _rng("instance", label, str(instance))
    colour = np.clip(np.asarray(spec.colour, float) * rng.uniform(0.96, 1.04, 3), 0, 255)
    model = SHAPES[spec.shape](colour)
    scale = float(rng.uniform(0.99, 1.01))
    rot = _POSE_ROTATION[pose] * scale
    model = model.transformed(rot, np.zeros(3))
    lo, hi = model.bounds()
    centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    place = placement(label, str(instance), pose)
    yaw = rotation_z(place.yaw_deg)
    shift = np.array([place.offset_mm[0], place.offset_mm[1], 0.0])
    return model.transformed(yaw, -(yaw @ centre) + shift)
