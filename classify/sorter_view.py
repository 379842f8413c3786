"""What the sorting loop keeps for the page's feeder view: the last frame it looked at and the
frames of its last decisions (web/feeder_view.py draws and encodes them).

Why references and no copies: the loop must not slow down for a viewer, and it never writes to
a frame after taking it; the page copies a frame (to draw on) only while somebody watches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Decisions (with the frame each was made on) the sorter keeps in memory for the feeder view.
RECENT_DECISIONS = 8


@dataclass(frozen=True)
class SeenFrame:
    """A frame the loop has already taken, the part's box in it (None: no part), and for a
    decided part its decision (a :class:`classify.sorter.SortDecision`).

    ``number`` is the frame's count since start-up, or for a decided part the decision's.
    """

    number: int
    frame: np.ndarray
    bbox: tuple[int, int, int, int] | None
    decision: object | None = None
