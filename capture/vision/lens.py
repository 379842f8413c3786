"""One-time lens calibration from a printed ChArUco board, stored in the data folder.

Why: the sheet's marker gives the scale on the sheet plane per shot, but a wide lens bends
straight lines by several pixels towards the frame's corners, and the marker sits in a corner
while the part sits in the middle; measured lengths would be off by up to a few per cent.  The
lens does not change between runs (the camera and sheet may), so it is calibrated once:

1. ``print_board()`` writes a ChArUco board (chessboard squares with ArUco markers, so partial
   and tilted views still identify every corner) for A4 or Letter; print it at 100 %.
2. Photograph it 8-20 times, tilted by 15-35 degrees in different directions and filling
   different parts of the frame (flat, face-on views alone cannot tell focal length from
   distance).
3. ``calibrate(frames)`` fits OpenCV's pinhole model with radial (k1, k2, k3) and tangential
   distortion; ``save`` writes ``calibration/lens.json`` in the data folder.

The board's markers come from ``DICT_5X5_100``, a dictionary no background sheet uses, so a
board lying on a sheet is never mistaken for the sheet (sheets use ``DICT_4X4_50``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rig.errors import StoreError

BOARD_DICT = cv2.aruco.DICT_5X5_100
#: Squares across and down, square and marker side in millimetres: 264 x 192 mm fits A4 and
#: Letter landscape with a margin.
BOARD_SQUARES, SQUARE_MM, MARKER_MM = (11, 8), 24.0, 18.0
#: Fewest board views a calibration needs.
MIN_VIEWS = 6
LENS_FILE = Path("calibration") / "lens.json"


def board() -> cv2.aruco.CharucoBoard:
    """The printed calibration board (dimensions in millimetres)."""
    dictionary = cv2.aruco.getPredefinedDictionary(BOARD_DICT)
    return cv2.aruco.CharucoBoard(BOARD_SQUARES, SQUARE_MM, MARKER_MM, dictionary)


def render_board(px_per_mm: float = 300 / 25.4) -> np.ndarray:
    """The board as a grey image, ``px_per_mm`` pixels per millimetre, with a 10 mm margin."""
    cols, rows = BOARD_SQUARES
    size = (round((cols * SQUARE_MM + 20) * px_per_mm), round((rows * SQUARE_MM + 20) * px_per_mm))
    return board().generateImage(size, marginSize=round(10 * px_per_mm), borderBits=1)


def print_board(out_dir: Path | str, dpi: int = 300) -> Path:
    """Write ``lens-board.png`` (print at 100 %, "actual size") and return its path."""
    from PIL import Image

    if not (150 <= int(dpi) <= 1200):
        raise ValueError(f"dpi must be between 150 and 1200 (got {dpi})")
    out = Path(out_dir)
    path = out / "lens-board.png"
    try:
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render_board(dpi / 25.4)).save(path, dpi=(dpi, dpi))
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}; choose a writable folder") from None
    return path


@dataclass(frozen=True)
class LensCalibration:
    """A calibrated lens at one frame size: intrinsics, distortion and the fit's RMS error."""

    width: int
    height: int
    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray
    rms_px: float
    views: int

    def for_size(self, width: int, height: int) -> LensCalibration:
        """The same lens at another frame size of the same aspect (preview, a scaled still)."""
        if (width, height) == (self.width, self.height):
            return self
        s = width / self.width
        if abs(height / self.height - s) > 0.01:
            raise ValueError(
                f"the lens was calibrated at {self.width}x{self.height}; frames of {width}x"
                f"{height} have another aspect: calibrate again at this size"
            )
        k = self.camera_matrix.copy()
        k[:2] *= s
        # NOTE: pixel centres: (c + 0.5) * s - 0.5 keeps the principal point on the same spot.
        k[0, 2] = (self.camera_matrix[0, 2] + 0.5) * s - 0.5
        k[1, 2] = (self.camera_matrix[1, 2] + 0.5) * s - 0.5
        return LensCalibration(width, height, k, self.dist_coeffs, self.rms_px, self.views)

    def to_json(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "camera_matrix": self.camera_matrix.tolist(),
            "dist_coeffs": self.dist_coeffs.ravel().tolist(),
            "rms_px": self.rms_px,
            "views": self.views,
        }

    @classmethod
    def from_json(cls, data: dict) -> LensCalibration:
        try:
            k = np.asarray(data["camera_matrix"], float)
            d = np.asarray(data["dist_coeffs"], float)
            cal = cls(int(data["width"]), int(data["height"]), k, d, float(data["rms_px"]),
                      int(data["views"]))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(
                f"the lens calibration is malformed ({exc}); calibrate again"
            ) from None
        if k.shape != (3, 3) or d.size not in (4, 5, 8, 12, 14):
            raise StoreError("the lens calibration has the wrong shape; calibrate again")
        return cal


def board_corners(image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(object points (k, 3) in mm, image points (k, 2)) of the board corners seen, or None."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    detector = cv2.aruco.CharucoDetector(board())
    corners, ids, _, _ = detector.detectBoard(grey)
    if ids is None or len(ids) < 8:
        return None
    obj, img = board().matchImagePoints(corners, ids)
    return obj.reshape(-1, 3), img.reshape(-1, 2)


def calibrate(frames: list[np.ndarray]) -> LensCalibration:
    """Fit the lens from photographs of the printed board (see the module docstring).

    Raises ValueError naming how many usable views there were when fewer than
    :data:`MIN_VIEWS` show the board.
    """
    if not frames:
        raise ValueError("no frames given; photograph the printed board 8-20 times")
    h, w = frames[0].shape[:2]
    objs, imgs = [], []
    for f in frames:
        if f.shape[:2] != (h, w):
            raise ValueError("all calibration frames must have the same size")
        found = board_corners(f)
        if found is not None:
            objs.append(found[0].astype(np.float32))
            imgs.append(found[1].astype(np.float32))
    if len(objs) < MIN_VIEWS:
        raise ValueError(
            f"only {len(objs)} of {len(frames)} frames show the board clearly; at least "
            f"{MIN_VIEWS} are needed: fill more of the frame and tilt the board 15-35 degrees"
        )
    rms, k, d, _, _ = cv2.calibrateCamera(objs, imgs, (w, h), None, None)
    return LensCalibration(w, h, k, d.ravel(), float(rms), len(objs))


def save(cal: LensCalibration, data_dir: Path | str) -> Path:
    """Write ``calibration/lens.json`` under the data folder atomically; returns the path."""
    path = Path(data_dir) / LENS_FILE
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cal.to_json(), indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from None
    return path


def load(data_dir: Path | str) -> LensCalibration | None:
    """The stored calibration, or None when the lens was never calibrated."""
    path = Path(data_dir) / LENS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise StoreError(f"{path} is not JSON; calibrate the lens again") from None
    return LensCalibration.from_json(data)
