"""The sorter measures each part in millimetres from the platform's own printed sheet.

Why a still and not the preview frame the sorter watches: at the preview's 640 px an A4 sheet
is under 2 px/mm, and an M4 x 8 screw's head no longer separates from its shaft (measured on the
metric simulator: 2-3 mm errors on a third of the 8 mm screws at 1280 px, 0.3 mm at most from
2028 px).  So, only when a sorting rule looks at a size (:func:`classify.rules.needs_sizes`),
the sorter takes one full-resolution still of the empty platform with its reference and one
of each part once it is still, and measures it exactly as a capture run measures a shot
(:class:`capture.vision.measure.ShotMeasurer`: the sheet's marker gives the scale, the stored
lens calibration corrects distortion, round parts lying down are corrected for parallax).

No marker in the reference still: every part is unmeasured and the size rules send it to
review; the Sorter page shows ``marker_missing``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from capture.vision.lens import LensCalibration
from capture.vision.lens import load as load_lens
from capture.vision.masks import mask_and_box
from capture.vision.measure import ShotMeasurer
from rig.camera import Frame, check_frame
from rig.errors import StoreError
from rig.sort_rules import SIZE_KEYS


@runtime_checkable
class StillCamera(Protocol):
    """What the measurer needs of the sorter's camera: a full-resolution still."""

    def capture(self) -> Frame: ...


#: Two stills of a part at rest agree at least this well (mask IoU).
STILL_IOU = 0.9


@dataclass(frozen=True)
class PartSize:
    """One part's measurement: ``status`` is ``measured``, ``marker_missing`` or ``no_part``."""

    status: str
    sizes: dict[str, float | None]


class PlatformMeasurer:
    """Measures parts on the sorting platform against a still of it taken empty."""

    def __init__(self, lens: LensCalibration | None = None, paper: str | None = None) -> None:
        self._measure = ShotMeasurer(lens, paper)
        self._reference: np.ndarray | None = None
        #: Whether the last reference still showed the sheet's marker.
        self.marker_found: bool | None = None

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> PlatformMeasurer:
        """With the data folder's lens calibration when there is one (else uncalibrated)."""
        try:
            lens = load_lens(data_dir)
        except StoreError:
            lens = None  # NOTE: a damaged calibration file measures uncalibrated, never not at all
        return cls(lens)

    def take_reference(self, camera: StillCamera) -> None:
        """Photograph the empty platform at full resolution (call with nothing on it)."""
        still = check_frame(camera.capture().image, "reference still")
        self._reference = still
        status, _ = self._measure(still, still, np.zeros(still.shape[:2], bool))
        self.marker_found = status != "marker_missing"

    @property
    def ready(self) -> bool:
        return self._reference is not None

    def measure(self, camera: StillCamera) -> PartSize:
        """Take two stills of the part now on the platform and measure the second.

        Why two: a part still turning when the loop judged it at rest (its stillness is judged
        on the coarse preview) is smeared and mis-measured on a still; a wrong size puts it in
        a wrong bin, which is worse than review.  Masks that disagree (IoU below
        :data:`STILL_IOU`) mean it moved: ``moving``, unmeasured.
        """
        reference = self._reference
        if reference is None:
            return PartSize("no_reference", {})
        first = check_frame(camera.capture().image, "measuring still")
        still = check_frame(camera.capture().image, "measuring still")
        if still.shape != reference.shape or first.shape != reference.shape:
            return PartSize("no_reference", {})
        before, _ = mask_and_box(first, reference)
        mask, _ = mask_and_box(still, reference)
        union = int(np.count_nonzero(before | mask))
        if union and np.count_nonzero(before & mask) / union < STILL_IOU:
            return PartSize("moving", {})
        status, found = self._measure(still, reference, mask)
        if found is None:
            return PartSize(status, {})
        sizes = {k: (None if found.get(k) is None else float(found[k])) for k in SIZE_KEYS}
        return PartSize(status, sizes)
