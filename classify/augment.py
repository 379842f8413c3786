"""Augmentation for turntable photos: what changes between shots of a real part, no more.

Why these and not a generic recipe:

- **Colour** varies with the light and the camera's white balance, and the rig *records* how
  much: each shot carries the colour matrix that corrects its cast.  Jitter therefore scales
  the recorded correction (between half and 1.25 times it) plus a small gain per channel, so
  the model sees the casts the rig really meets without learning colours that never occur.
- **Rotation** turns the *part* about its own centre, the turntable's axis as a camera above
  it sees it: with a mask, the part's pixels turn and are pasted back onto the unturned
  background (another shot's background patch, or the crop's own with the part's old place
  filled in).  The whole crop is never turned by default: under a fixed oblique camera that
  teaches views the rig never sees (light from the wrong side, the sheet's pattern spinning).
  Without a mask the default is no rotation; ``rotate="crop"`` turns the whole crop, for a
  camera looking straight down.  **Scale** within +-15 % covers parts at different heights
  and box wobble.  No flips: mirror-image parts (left and right wedges) are different parts.
- **Light and colour** jitter is strong by default (brightness +-25 %, saturation 0.6-1.4,
  +-15 % per channel): with +-4 % a model learnt "tan means 2456" from the colour of the few
  training bricks and called 102 of 113 held-out tan 3002 bricks 2456.  ``colour="light"``
  keeps the old +-4 % for rigs whose classes differ *only* in colour.
- **Background swaps** paste the part (by its stored mask) onto a patch of another shot's
  background, so the model cannot learn which sheet a part was shot on.

Crops arrive *without* colour correction (``prepare(..., colour_matrix=None, ...)``); the
correction is applied here per epoch, so val and test crops prepared with the real matrix see
exactly the pixels :func:`classify.preprocess.prepare` gives the sorter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from capture.vision.colour import apply_colour_matrix
from classify.preprocess import CROP_MARGIN, resize_square

IDENTITY = np.hstack([np.eye(3), np.zeros((3, 1))])


ROTATE_MODES = ("part", "crop", "off")
#: Colour presets: per-channel gain, brightness and saturation ranges.
COLOUR_PRESETS: dict[str, dict[str, object]] = {
    "strong": {"gain_jitter": 0.15, "brightness": (0.75, 1.25), "saturation": (0.6, 1.4)},
    "light": {"gain_jitter": 0.04, "brightness": (1.0, 1.0), "saturation": (1.0, 1.0)},
    "off": {
        "gain_jitter": 0.0,
        "brightness": (1.0, 1.0),
        "saturation": (1.0, 1.0),
        "colour_scale": (1.0, 1.0),
    },
}
#: Rec. 709 luma weights: saturation blends towards this grey.
_LUMA = np.array([0.2126, 0.7152, 0.0722])


@dataclass(frozen=True)
class AugmentConfig:
    """How strong each augmentation is; the defaults suit a rig with masks (see module doc).

    ``rotate`` is ``"part"`` (masked part only; nothing without a mask), ``"crop"`` (the
    whole crop, for a camera looking straight down) or ``"off"``; ``True``/``False`` are read
    as ``"crop"``/``"off"`` for callers of the old boolean.
    """

    colour_scale: tuple[float, float] = (0.5, 1.25)
    gain_jitter: float = 0.15
    brightness: tuple[float, float] = (0.75, 1.25)
    saturation: tuple[float, float] = (0.6, 1.4)
    rotate: str = "part"
    scale: tuple[float, float] = (0.85, 1.15)
    background_swap: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.rotate, bool):
            object.__setattr__(self, "rotate", "crop" if self.rotate else "off")
        if self.rotate not in ROTATE_MODES:
            raise ValueError(f"rotate must be one of {ROTATE_MODES} (got {self.rotate!r})")
        if not 0.0 <= self.background_swap <= 1.0:
            raise ValueError(f"background_swap is a probability in [0, 1] ({self.background_swap})")

    @classmethod
    def preset(
        cls, colour: str = "strong", rotate: str = "part", background_swap: float = 0.5
    ) -> AugmentConfig:
        """The configuration the CLI's ``--colour``, ``--rotate`` and ``--background-swap`` ask."""
        if colour not in COLOUR_PRESETS:
            raise ValueError(f"colour must be one of {tuple(COLOUR_PRESETS)} (got {colour!r})")
        return cls(rotate=rotate, background_swap=background_swap, **COLOUR_PRESETS[colour])  # type: ignore[arg-type]


def as_affine(matrix: Sequence[Sequence[float]] | np.ndarray | None) -> np.ndarray:
    """The 3x4 form of a stored colour matrix (identity when there is none)."""
    if matrix is None:
        return IDENTITY.copy()
    m = np.asarray(matrix, np.float64)
    if m.shape == (3, 3):
        m = np.hstack([m, np.zeros((3, 1))])
    if m.shape != (3, 4):
        raise ValueError(f"a colour matrix must be 3x3 or 3x4 (got {m.shape})")
    return m


def jitter_matrix(matrix: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """A colour matrix between the uncorrected and an over-corrected version of ``matrix``,
    then a random brightness, saturation and gain per channel (one affine map, one pass)."""
    t = rng.uniform(*cfg.colour_scale)
    m = IDENTITY + t * (matrix - IDENTITY)
    s = rng.uniform(*cfg.saturation)
    saturate = s * np.eye(3) + (1.0 - s) * np.tile(_LUMA, (3, 1))
    gains = rng.uniform(*cfg.brightness) * (
        1.0 + rng.uniform(-cfg.gain_jitter, cfg.gain_jitter, size=3)
    )
    return gains[:, None] * (saturate @ m)


def background_patch(
    image: np.ndarray, bbox: Sequence[float] | None, size: int
) -> np.ndarray | None:
    """A part-free square of ``image`` as large as the part's crop, resized to ``size``.

    Tried beside the box (left, right, above, below); None when no such square fits, e.g. a
    part that fills the frame.
    """
    if bbox is None:
        return None
    height, width = image.shape[:2]
    x, y, w, h = bbox
    side = round(max(w, h) * (1 + 2 * CROP_MARGIN))
    cy, cx = y + h / 2 - side / 2, x + w / 2 - side / 2
    candidates = ((x - side, cy), (x + w, cy), (cx, y - side), (cx, y + h))
    for px, py in candidates:
        px, py = round(px), round(py)
        if px >= 0 and py >= 0 and px + side <= width and py + side <= height and side >= 4:
            return resize_square(image[py : py + side, px : px + side], size)
    return None


def _turn(size: int, angle: float, scale: float) -> np.ndarray:
    return cv2.getRotationMatrix2D(((size - 1) / 2.0, (size - 1) / 2.0), angle, scale)


def rotate_scale(crop: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Scale about the centre, and with ``rotate="crop"`` turn the whole crop too."""
    size = crop.shape[0]
    angle = rng.uniform(0.0, 360.0) if cfg.rotate == "crop" else 0.0
    return cv2.warpAffine(
        crop,
        _turn(size, angle, rng.uniform(*cfg.scale)),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def rotate_part(
    crop: np.ndarray, mask: np.ndarray, ground: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """Turn the masked part by a random angle about the crop's centre, onto ``ground``.

    ``ground`` is a part-free background of the crop's size; without one, the crop's own
    background with the part's old place filled in (``cv2.inpaint``) stands in.
    """
    size = crop.shape[0]
    if ground is None:
        ground = cv2.inpaint(crop, mask.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
    turn = _turn(size, rng.uniform(0.0, 360.0), 1.0)
    part = cv2.warpAffine(crop, turn, (size, size), flags=cv2.INTER_LINEAR)
    turned = cv2.warpAffine(mask.astype(np.uint8), turn, (size, size), flags=cv2.INTER_NEAREST)
    return np.where(turned[..., None] > 0, part, ground)


def augment(
    crop: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray | None,
    backgrounds: Sequence[np.ndarray],
    rng: np.random.Generator,
    cfg: AugmentConfig = AugmentConfig(),
) -> np.ndarray:
    """One augmented, colour-corrected training crop from an uncorrected prepared crop."""
    out = crop
    ground = None
    if mask is not None and backgrounds and rng.random() < cfg.background_swap:
        ground = backgrounds[int(rng.integers(len(backgrounds)))]
        out = np.where(mask[..., None], crop, ground)
    if cfg.rotate == "part" and mask is not None and mask.any():
        out = rotate_part(out, mask, ground, rng)
    out = rotate_scale(out, rng, cfg)
    return apply_colour_matrix(np.ascontiguousarray(out), jitter_matrix(matrix, rng, cfg))
