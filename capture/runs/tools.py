"""The capture functions the run engine uses, and how it reads what other modules return.

Why a module of its own: the engine talks to several modules written alongside it (plan, masks,
colour, backgrounds, the store, the sheets).  ``CaptureTools`` gathers the functions so tests
can swap in fakes, and the small readers below accept the plain shapes those modules return
(dataclasses, dicts, pydantic models) so the engine's own logic stays about the rig.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


@dataclasses.dataclass
class CaptureTools:
    """The capture functions the engine uses, injectable so the engine can be tested alone.

    ``default()`` takes them from :mod:`capture.plans.schema`, :mod:`capture.vision.masks`,
    :mod:`capture.vision.backgrounds`, :mod:`capture.vision.colour` and :mod:`capture.store`.
    """

    expand: Callable[[Any], list[Any]]
    mask_and_box: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, Any]]
    detect_sheet: Callable[[np.ndarray], int | None]
    colour_matrix: Callable[[np.ndarray], Any]
    shot_record: Callable[..., Any]
    #: Makes the per-shot measurer (mm from the sheet's marker) for a data folder; None: off.
    measurer: Callable[[Path], Any] = lambda _data_dir: None

    @classmethod
    def default(cls) -> CaptureTools:
        from capture import store
        from capture.plans import order as plan
        from capture.vision import backgrounds, colour, masks, measure

        return cls(
            expand=plan.expand,
            mask_and_box=masks.mask_and_box,
            detect_sheet=backgrounds.detect_sheet,
            colour_matrix=_first_attr(colour, COLOUR_MATRIX_NAMES),
            shot_record=store.ShotRecord,
            measurer=measure.ShotMeasurer.for_data_dir,
        )


#: The name capture/vision/colour.py gives its "matrix from a reference frame" function; the first
#: one present is used (the module map fixes only ``apply_colour_matrix``).
COLOUR_MATRIX_NAMES = (
    "colour_matrix_from_reference",
    "colour_matrix",
    "matrix_from_reference",
    "estimate_colour_matrix",
    "compute_colour_matrix",
)


def _first_attr(module: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    raise AttributeError(f"{module.__name__} has none of {', '.join(names)}")


def data_dir_of(store: Any, settings: Any) -> Path:
    for name in ("data_dir", "root", "dir"):
        value = getattr(store, name, None)
        if isinstance(value, str | Path):
            return Path(value)
    return Path(settings.data.dir)


def prompt_text(spec: Any, kind: str) -> str | None:
    """The plan's own wording for an action of ``kind`` before this shot, if it has one."""
    actions = list(getattr(spec, "actions", None) or [])
    first = getattr(spec, "prompt_before", None)
    if first is not None:
        actions.insert(0, first)
    for action in actions:
        if getattr(action, "kind", None) == kind and getattr(action, "text", None):
            return str(action.text)
    return None


def pose_words(plan: Any, pose: str) -> str:
    for p in getattr(plan, "poses", None) or []:
        if getattr(p, "name", None) == pose and getattr(p, "prompt", None):
            return f" ({p.prompt})"
    return f" ({pose})" if pose else ""


def sheet_name(sheet: int) -> str:
    try:
        from rig.sheets import SHEETS

        return str(SHEETS[sheet].name)
    except Exception:
        return "unknown sheet"


def sheet_kind(sheet: int) -> str:
    try:
        from rig.sheets import SHEETS

        return str(SHEETS[sheet].kind)
    except Exception:
        return "unknown"


def call_by_name(obj: Any, method: str, **candidates: Any) -> None:
    """Call ``obj.method`` (when it exists) with those candidates its signature names.

    Why: the store's upsert methods take the identifying columns by name; passing only what
    the signature asks for keeps the engine independent of their optional extras.
    """
    fn = getattr(obj, method, None)
    if fn is None:
        return
    params = inspect.signature(fn).parameters
    fn(**{k: v for k, v in candidates.items() if k in params})


def as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return dict(obj)
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def frame_meta(frame: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key in ("exposure_us", "analogue_gain", "colour_gains"):
        value = getattr(frame, key, None)
        if value is not None:
            meta[key] = list(value) if isinstance(value, tuple) else value
    return meta


def matrix_list(matrix: Any) -> Any:
    if matrix is None:
        return None
    return np.asarray(matrix, dtype=float).round(6).tolist()
