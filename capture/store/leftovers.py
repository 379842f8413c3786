"""Leftovers of interrupted writes in a data folder: what ``partrig dataset check`` reports.

Why a module of its own: the store's temporary files (``.<name>.partrig-tmp``, see
:mod:`capture.store.files`) are only one kind.  A snapshot is written into
``snapshots/snap-NNNN.tmp/`` and renamed when complete (:mod:`capture.snapshots.build`), a model
upload is staged in ``models/.upload-<hex>.tmp/`` (:mod:`classify.registry`), and partial
downloads end in ``.part``.  A crash or a kill at the wrong moment leaves any of them behind,
sometimes tens of megabytes, and none is ever named by a row, so removing one loses nothing.
A store that still holds them is not clean, so the check lists each with its size.

The names are repeated here rather than imported: the store sits below
:mod:`capture.snapshots.build`
and :mod:`classify.registry` (imports run one way), and a test proves the names agree.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from capture.store.files import is_temp_name

#: capture.snapshots.build.SNAPSHOTS_DIR / TMP_SUFFIX / SNAPSHOT_ID_RE
SNAPSHOTS_DIR = "snapshots"
SNAPSHOT_TMP_SUFFIX = ".tmp"
SNAPSHOT_ID_RE = re.compile(r"^snap-(\d{4,})$")
#: capture.store.models.MODELS_DIR / classify.registry.STAGING_PREFIX
MODELS_DIR = "models"
MODEL_STAGING_PREFIX = ".upload-"
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class Leftover:
    """One leftover: ``path`` relative to the data folder, what it is, and its size in bytes."""

    path: str
    kind: str
    size: int

    def describe(self) -> str:
        return f"{self.kind}: {self.path} ({_human(self.size)})"


def find_leftovers(data_dir: Path, recorded_snapshots: set[str] | None) -> list[Leftover]:
    """Every leftover of an interrupted write under ``data_dir``, sorted by path.

    ``recorded_snapshots`` are the snapshot ids the database knows; a ``snap-NNNN`` folder it
    does not know is a crash between the rename and the commit.  ``None`` (the database could
    not be read) skips that test: without the rows, no snapshot folder is provably stale.
    """
    found: list[Leftover] = []
    whole_dirs: list[Path] = []
    snapshots = data_dir / SNAPSHOTS_DIR
    if snapshots.is_dir():
        for entry in sorted(snapshots.iterdir()):
            if not entry.is_dir() or entry.is_symlink():
                continue
            name = entry.name
            stem = name[: -len(SNAPSHOT_TMP_SUFFIX)] if name.endswith(SNAPSHOT_TMP_SUFFIX) else ""
            if stem and SNAPSHOT_ID_RE.match(stem):
                kind = "unfinished snapshot folder (a snapshot was interrupted)"
            elif (
                recorded_snapshots is not None
                and SNAPSHOT_ID_RE.match(name)
                and name not in recorded_snapshots
            ):
                kind = "snapshot folder the database never recorded (interrupted before commit)"
            else:
                continue
            whole_dirs.append(entry)
            found.append(Leftover(_rel(data_dir, entry), kind, _tree_bytes(entry)))
    models = data_dir / MODELS_DIR
    if models.is_dir():
        for entry in sorted(models.iterdir()):
            if entry.name.startswith(MODEL_STAGING_PREFIX) and not entry.is_symlink():
                whole_dirs.append(entry)
                kind = "unfinished model upload (staging folder)"
                found.append(Leftover(_rel(data_dir, entry), kind, _tree_bytes(entry)))
    skip = {str(d) for d in whole_dirs}
    for dirpath, dirs, names in os.walk(data_dir):
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in skip]
        for name in names:
            if name.endswith(PART_SUFFIX) and not is_temp_name(name):
                path = Path(dirpath, name)
                found.append(Leftover(_rel(data_dir, path), "partial download", _size(path)))
    return sorted(found, key=lambda leftover: leftover.path)


def remove_leftovers(data_dir: Path, leftovers: list[Leftover]) -> list[Leftover]:
    """Delete the given leftovers (folders whole); returns those that are gone now.

    The caller must own the data folder (no server or run writing it), or it could delete a
    snapshot or upload that is being written right now.
    """
    gone: list[Leftover] = []
    for leftover in leftovers:
        path = data_dir / leftover.path
        with contextlib.suppress(FileNotFoundError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        if not os.path.lexists(path):
            gone.append(leftover)
    return gone


def _rel(root: Path, path: Path) -> str:
    return PurePosixPath(path.relative_to(root).as_posix()).as_posix()


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        total += sum(_size(Path(dirpath, n)) for n in names)
    return total


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
