"""The image functions the run engine calls, gathered so a test can hand it fakes.

Why a module of its own: the engine's logic is about the rig (moves, prompts, faults, resume);
the image work (expanding the plan, masks, sheet detection, colour, measuring) lives in
:mod:`capture.plans` and :mod:`capture.vision`.  ``CaptureTools.default()`` names the real
functions once, typed, so a renamed function is an import error at start-up and a type error
under mypy, never a silent no-op at the first shot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from capture.plans.order import ShotSpec
    from capture.plans.schema import Plan
    from capture.runs.pipeline import MeasureFn
    from capture.vision.masks import Box, MaskReference


def _no_measurer(_data_dir: Path) -> MeasureFn | None:
    return None


def _as_taken(reference: np.ndarray) -> MaskReference:
    return reference


@dataclass(frozen=True)
class CaptureTools:
    """The image functions the engine uses; :meth:`default` takes the real ones."""

    expand: Callable[[Plan], list[ShotSpec]]
    mask_and_box: Callable[[np.ndarray, MaskReference], tuple[np.ndarray, Box | None]]
    detect_sheet: Callable[[np.ndarray], int | None]
    colour_matrix: Callable[[np.ndarray], np.ndarray | None]
    #: Makes the per-shot measurer (mm from the sheet's marker) for a data folder; None: off.
    measurer: Callable[[Path], MeasureFn | None] = _no_measurer
    #: Readies a segment's reference once for every ``mask_and_box`` of its shots; by default
    #: the frame as taken.
    prepare_reference: Callable[[np.ndarray], MaskReference] = _as_taken

    @classmethod
    def default(cls) -> CaptureTools:
        from capture.plans.order import expand
        from capture.vision.backgrounds import detect_sheet
        from capture.vision.colour import colour_matrix_from_reference
        from capture.vision.masks import mask_and_box, prepare_reference
        from capture.vision.measure import ShotMeasurer

        return cls(
            expand=expand,
            mask_and_box=mask_and_box,
            detect_sheet=detect_sheet,
            colour_matrix=colour_matrix_from_reference,
            measurer=ShotMeasurer.for_data_dir,
            prepare_reference=prepare_reference,
        )


def matrix_list(matrix: np.ndarray | None) -> list[list[float]] | None:
    """A colour matrix as the JSON-ready nested list the store keeps (6 decimals)."""
    if matrix is None:
        return None
    rows: list[list[float]] = np.asarray(matrix, dtype=float).round(6).tolist()
    return rows
