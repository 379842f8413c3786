"""Printable background sheets, and recognising which sheet is installed from its marker.

Why printed and generated: the operator needs many backgrounds (plain colours, textures,
patterns) so a model does not learn "the part is whatever is on white paper", and each sheet's
identity must be machine-checkable so every shot records the background it really had.  The
designs live in :mod:`rig.sheets`; this module turns them into pages and reads them back.

Printing: one PNG per sheet and paper size, plus one multi-page PDF per paper size.  The PDF is
written with Pillow (already a dependency): it embeds each page as one image at the requested
dpi with the exact page size, which is all a sheet of flat colour needs; a vector PDF library
would add a dependency without making the colours any more exact.  Print at 100 % ("actual
size"), never "fit to page", so textures keep their millimetre scale.

Each page is :func:`rig.sheets.render_sheet` at the page's pixel size (marker, patch strip) plus
a caption with the sheet's id, name and kind next to the marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from rig.errors import StoreError
from rig.sheets import ARUCO_DICT, SHEETS, SheetSpec, render_sheet, sheet_layout

Paper = Literal["a4", "letter", "both"]

#: Landscape page sizes in millimetres.
PAPER_MM: dict[str, tuple[float, float]] = {"a4": (297.0, 210.0), "letter": (279.4, 215.9)}
#: Marker search works on frames shrunk to this long side first (12 MP takes far longer).
DETECT_PX = 1600


@dataclass(frozen=True)
class PrintedSet:
    """What :func:`print_sheets` wrote: PNG paths per paper, and the PDF per paper."""

    pngs: dict[str, list[Path]]
    pdfs: dict[str, Path]


def page_pixels(paper: str, dpi: int) -> tuple[int, int]:
    """Width and height in pixels of a landscape page of ``paper`` at ``dpi``."""
    w_mm, h_mm = PAPER_MM[paper]
    return round(w_mm / 25.4 * dpi), round(h_mm / 25.4 * dpi)


def render_page(spec: SheetSpec, width: int, height: int, dpi: float) -> np.ndarray:
    """One printable page: the sheet design with its id, name and kind captioned."""
    img = render_sheet(spec.id, width, height, dpi=dpi)
    layout = sheet_layout(width, height)
    q = layout.quiet
    text = f"partrig sheet {spec.id}: {spec.name} ({spec.kind})"
    scale = max(0.3, q.h / 140.0)
    thick = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, th // 3)
    x = q.x + q.w + max(4, q.w // 4)
    y = q.y + pad
    # NOTE: a white label box keeps the caption readable on dark and patterned sheets; it sits
    # beside the marker's quiet zone, so neither the marker nor the patches are touched.
    x1, y1 = min(width - 1, x + tw + 2 * pad), y + th + base + 2 * pad
    img[y:y1, x:x1] = 255
    cv2.putText(
        img,
        text,
        (x + pad, y + pad + th),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        thick,
        cv2.LINE_AA,
    )
    return img


def _papers(paper: str) -> list[str]:
    if paper == "both":
        return ["a4", "letter"]
    if paper not in PAPER_MM:
        raise ValueError(f"paper must be a4, letter or both (got {paper!r})")
    return [paper]


def print_sheets(out_dir: Path | str, paper: Paper = "a4", dpi: int = 300) -> PrintedSet:
    """Write every sheet as ``sheet-NN-name-PAPER.png`` and one ``sheets-PAPER.pdf`` per paper.

    ``dpi`` 50..1200 (300 is right for inkjet and laser printers).  Existing files of the same
    names are replaced.  Raises :class:`~rig.errors.StoreError` when ``out_dir`` is unwritable.
    """
    from PIL import Image

    papers = _papers(paper)
    if not (50 <= int(dpi) <= 1200):
        raise ValueError(f"dpi must be between 50 and 1200 (got {dpi})")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {out}: {exc.strerror}; choose a writable --out") from None
    pngs: dict[str, list[Path]] = {}
    pdfs: dict[str, Path] = {}
    for p in papers:
        w, h = page_pixels(p, dpi)
        pages: list[Image.Image] = []
        pngs[p] = []
        for spec in sorted(SHEETS.values(), key=lambda s: s.id):
            page = Image.fromarray(render_page(spec, w, h, dpi))
            path = out / f"sheet-{spec.id:02d}-{spec.name}-{p}.png"
            _save(page, path, format="PNG", dpi=(dpi, dpi))
            pngs[p].append(path)
            pages.append(page)
        pdf = out / f"sheets-{p}.pdf"
        _save(pages[0], pdf, format="PDF", save_all=True, append_images=pages[1:], resolution=dpi)
        pdfs[p] = pdf
    return PrintedSet(pngs, pdfs)


def _save(image, path: Path, **kw) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        image.save(tmp, **kw)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror}; check the output folder") from None


# --- reading the marker back ---------------------------------------------------------------


def _detector() -> cv2.aruco.ArucoDetector:
    return cv2.aruco.ArucoDetector(
        cv2.aruco.getPredefinedDictionary(ARUCO_DICT), cv2.aruco.DetectorParameters()
    )


def find_marker(frame: np.ndarray) -> tuple[int, np.ndarray] | None:
    """The largest sheet marker in an RGB (or grey) frame: ``(id, corners 4x2)`` in frame pixels.

    Only ids of known sheets count.  Large frames are searched shrunk first and at full size
    only if that finds nothing; corners are always in full-frame pixels.
    """
    grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape[:2]
    scale = min(1.0, DETECT_PX / max(h, w))
    tries = [scale, 1.0] if scale < 1.0 else [1.0]
    detector = _detector()
    for s in tries:
        img = grey if s == 1.0 else cv2.resize(grey, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        corners, ids, _ = detector.detectMarkers(img)
        if ids is None:
            continue
        found = [
            (cv2.contourArea(c.reshape(4, 2)), int(i), c.reshape(4, 2) / s)
            for c, i in zip(corners, np.asarray(ids).ravel(), strict=True)
            if int(i) in SHEETS
        ]
        if found:
            _, sheet, pts = max(found, key=lambda t: t[0])
            return sheet, pts.astype(np.float32)
    return None


def detect_sheet(frame: np.ndarray) -> int | None:
    """The id of the installed sheet, read from its ArUco marker, or None when none is visible.

    The run engine calls this at the start of each background segment and prompts again when
    the answer is not the sheet the plan needs.
    """
    found = find_marker(frame)
    return None if found is None else found[0]
