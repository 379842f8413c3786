"""What an import reads: the photos of a source, each with its label and what else it offers.

Three kinds of source, told apart by what is there:

- a **snapshot** of another partrig rig (a folder with ``manifest.json`` and the folder
  format): its shots keep their instance ids, prefixed by that rig's id, and their split;
- a **table**: a ``.csv`` or ``.jsonl`` file with a ``file`` (or ``path``/``image``) and a
  ``label`` column, and optional ``instance``, ``session``, ``split`` and box columns
  (``x, y, w, h`` or ``left, upper, right, lower``), paths relative to the file;
- an **image folder**: one sub-folder per class; sub-folders named ``reference``,
  ``references`` or ``background`` hold frames of the empty background, not a class.  A
  ``.csv`` beside the class folders with a ``file`` column and box columns gives boxes.

Why one label normaliser for all three: a label becomes a folder name in every snapshot format
and a key in the parts catalogue, so ``3001``, ``3001 `` and ``3001/`` must not become three
classes, and a bad one is refused with the folder or row that carried it.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.errors import QueryError

LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
REFERENCE_DIRS = frozenset({"reference", "references", "background"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
FILE_COLUMNS = ("file", "path", "image", "file_name", "filename")
LABEL_COLUMNS = ("label", "class", "part")
SPLITS = ("train", "val", "test")


class ImportSourceError(QueryError):
    """A source cannot be imported as it is; the message names the folder, row or column."""


@dataclass(frozen=True)
class ImportItem:
    """One photo to import: where it is, what it shows, and what the source says about it."""

    origin: str  # the path inside the source (POSIX), the key a re-run skips by
    path: Path
    label: str
    instance: str | None = None
    session: str | None = None
    split: str | None = None
    box: tuple[int, int, int, int] | None = None  # x, y, w, h in pixels
    captured_at: str | None = None


@dataclass
class ImportSource:
    """The photos of one source, its reference frames and what kind of source it is."""

    kind: str  # "folder", "table" or "snapshot"
    root: Path
    items: list[ImportItem]
    references: list[Path]
    rig_id: str | None = None


def normalise_label(raw: object, where: str) -> str:
    """The one label normaliser: trimmed, lower-case, spaces as ``-``; refused naming ``where``."""
    label = re.sub(r"\s+", "-", str(raw if raw is not None else "").strip().lower())
    if not LABEL_RE.match(label):
        raise ImportSourceError(
            f"{where}: label {str(raw)!r} is not a part label (1-64 characters of a-z, 0-9, "
            "'.', '_', '-', starting with a letter or digit); rename it"
        )
    return label


def read_source(src: Path, rig_id: str | None = None) -> ImportSource:
    """Everything importable in ``src`` (a folder, a snapshot folder or a CSV/JSONL file)."""
    src = Path(src)
    if src.is_file():
        if src.suffix.lower() not in (".csv", ".jsonl"):
            raise ImportSourceError(f"{src}: import reads a .csv or .jsonl list, or a folder")
        return ImportSource("table", src, _table_items(src), [])
    if not src.is_dir():
        raise ImportSourceError(
            f"{src} does not exist: give a folder of class folders, a .csv/.jsonl"
        )
    if (src / "manifest.json").is_file():
        return _snapshot_source(src, rig_id)
    return _folder_source(src)


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _folder_source(src: Path) -> ImportSource:
    boxes = _side_boxes(src)
    items: list[ImportItem] = []
    references: list[Path] = []
    for sub in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.name.lower() in REFERENCE_DIRS:
            references += _images(sub)
            continue
        label = normalise_label(sub.name, f"folder {sub}")
        for path in _images(sub):
            origin = path.relative_to(src).as_posix()
            items.append(ImportItem(origin, path, label, box=boxes.get(origin)))
    if not items:
        raise ImportSourceError(
            f"{src} has no class folders with images: put each class's photos in a folder "
            "named by its label (e.g. 3001/), empty-background frames in reference/"
        )
    return ImportSource("folder", src, items, references)


def _side_boxes(src: Path) -> dict[str, tuple[int, int, int, int]]:
    """Boxes from ``.csv`` files beside the class folders that have a file and box columns."""
    boxes: dict[str, tuple[int, int, int, int]] = {}
    for sheet in sorted(src.glob("*.csv")):
        with sheet.open(newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.DictReader(f), start=2):
                name = _first(row, FILE_COLUMNS)
                box = _box(row, f"{sheet.name} row {n}")
                if name and box is not None:
                    boxes[Path(name).as_posix()] = box
    return boxes


def _table_items(sheet: Path) -> list[ImportItem]:
    rows = _rows(sheet)
    items: list[ImportItem] = []
    for n, row in rows:
        where = f"{sheet.name} row {n}"
        name = _first(row, FILE_COLUMNS)
        if not name:
            raise ImportSourceError(f"{where}: no file column ({'/'.join(FILE_COLUMNS)})")
        raw_label = _first(row, LABEL_COLUMNS)
        if raw_label is None:
            raise ImportSourceError(f"{where}: no label column ({'/'.join(LABEL_COLUMNS)})")
        path = (sheet.parent / name).resolve()
        if not path.is_file():
            raise ImportSourceError(
                f"{where}: {name} does not exist (paths are relative to the list)"
            )
        split = _first(row, ("split",))
        if split is not None and split not in SPLITS:
            raise ImportSourceError(f"{where}: split {split!r} must be train, val or test")
        items.append(
            ImportItem(
                origin=Path(name).as_posix(),
                path=path,
                label=normalise_label(raw_label, where),
                instance=_first(row, ("instance", "instance_id")),
                session=_first(row, ("session",)),
                split=split,
                box=_box(row, where),
                captured_at=_first(row, ("captured_at", "time")),
            )
        )
    if not items:
        raise ImportSourceError(f"{sheet} lists no photos")
    return items


def _rows(sheet: Path) -> list[tuple[int, dict[str, Any]]]:
    if sheet.suffix.lower() == ".csv":
        with sheet.open(newline="", encoding="utf-8") as f:
            return list(enumerate(csv.DictReader(f), start=2))
    out = []
    for n, line in enumerate(sheet.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ImportSourceError(f"{sheet.name} line {n} is not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise ImportSourceError(f"{sheet.name} line {n} is not a JSON object")
        out.append((n, row))
    return out


def _first(row: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = row.get(name)
        if value is not None and str(value).strip() != "":
            return str(value).strip()
    return None


def _box(row: dict[str, Any], where: str) -> tuple[int, int, int, int] | None:
    """``(x, y, w, h)`` from x/y/w/h, left/upper/right/lower or a ``bbox`` list; None if absent."""
    try:
        if isinstance(row.get("bbox"), list | tuple) and len(row["bbox"]) == 4:
            x, y, w, h = (float(v) for v in row["bbox"])
        elif all(_first(row, (k,)) is not None for k in ("x", "y", "w", "h")):
            x, y, w, h = (float(row[k]) for k in ("x", "y", "w", "h"))
        elif all(_first(row, (k,)) is not None for k in ("left", "upper", "right", "lower")):
            left, upper = float(row["left"]), float(row["upper"])
            x, y, w, h = left, upper, float(row["right"]) - left, float(row["lower"]) - upper
        else:
            return None
    except (TypeError, ValueError):
        raise ImportSourceError(f"{where}: the box is not four numbers") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ImportSourceError(f"{where}: the box ({x}, {y}, {w}, {h}) is empty or negative")
    return round(x), round(y), round(w), round(h)


def _snapshot_source(src: Path, rig_id: str | None) -> ImportSource:
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    rig = rig_id or manifest.get("rig_id")
    if not rig:
        raise ImportSourceError(
            f"{src} is a snapshot without a rig id: say whose it is with --rig-id NAME, so its "
            "instance ids cannot collide with this rig's"
        )
    rig = normalise_label(rig, "--rig-id")
    items: list[ImportItem] = []
    for split in SPLITS:
        meta = src / "folder" / split / "metadata.jsonl"
        if not meta.is_file():
            continue
        for n, row in _rows(meta):
            where = f"{meta.relative_to(src)} line {n}"
            path = meta.parent / str(row.get("file_name", ""))
            if not path.is_file():
                raise ImportSourceError(
                    f"{where}: {row.get('file_name')} is missing from the snapshot"
                )
            bbox = row.get("bbox")
            if bbox and (not isinstance(bbox, list | tuple) or len(bbox) != 4):
                raise ImportSourceError(
                    f"{where}: {row.get('file_name')} has bbox {bbox!r}; give [x, y, w, h]"
                )
            box = (int(bbox[0]), int(bbox[1]), int(bbox[2]), int(bbox[3])) if bbox else None
            items.append(
                ImportItem(
                    origin=path.relative_to(src).as_posix(),
                    path=path,
                    label=normalise_label(row.get("label"), where),
                    instance=f"{rig}:{row.get('instance_id') or row.get('key')}",
                    split=split,
                    box=box,
                )
            )
    if not items:
        raise ImportSourceError(
            f"{src} is a snapshot without the folder format: snapshot it with --format folder"
        )
    return ImportSource("snapshot", src, items, [], rig_id=rig)
