"""The formats a snapshot is written in, one small module each, fed one shot at a time.

Why one shot at a time: a snapshot of a million 12 MP shots does not fit in memory, so
:mod:`capture.snapshots.build` reads each shot's files once, wraps them in a :class:`Sample` and
hands it to every writer in turn; a writer keeps at most one open file per split and its own small
index.  Every writer hashes what it writes as it writes it, so the manifest's sha256 and size
need no second pass over the files.

Writers share one shape (:class:`FormatWriter`): ``add(sample)`` per shot, in split order and
then ascending shot id, and ``close()`` returning the :class:`WrittenFile` list.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

FORMATS = ("webdataset", "folder", "coco", "csv")


@dataclass(frozen=True)
class WrittenFile:
    """A file of the snapshot: ``path`` is POSIX and relative to the snapshot folder."""

    path: str
    format: str
    sha256: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Sample:
    """One shot on its way into the formats: its row, its bytes and its place in the snapshot."""

    key: str
    split: str
    class_index: int
    class_dir: str
    shot: dict[str, Any]
    image: bytes
    image_ext: str
    image_path: Path
    mask: bytes | None

    @property
    def file_name(self) -> str:
        """The image's path inside a split folder, e.g. ``007-3001/s00000012.jpg``."""
        return f"{self.class_dir}/{self.key}.{self.image_ext}"

    @property
    def bbox(self) -> list[int] | None:
        given = [self.shot.get(k) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")]
        box = [int(v) for v in given if v is not None]
        return box if len(box) == len(given) else None

    def metadata(self) -> dict[str, Any]:
        """Everything known about the shot, as the WebDataset ``.json`` member carries it."""
        meta = dict(self.shot)
        meta.update(key=self.key, split=self.split, class_index=self.class_index)
        return meta


class FormatWriter(Protocol):
    name: str

    def add(self, sample: Sample) -> None: ...

    def close(self) -> list[WrittenFile]: ...


def sample_key(shot_id: int) -> str:
    """WebDataset groups members by the text before the first dot, so keys have no dots."""
    return f"s{int(shot_id):08d}"


def class_dir_name(index: int, label: str) -> str:
    """``007-brick-2x4``: the zero-padded index makes sorted folder names follow class order."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._") or "class"
    return f"{index:03d}-{safe}"


class HashingFile:
    """A new file written once, front to back, hashed as it goes and fsynced on close."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = open(path, "xb")  # noqa: SIM115 - closed in close()
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._f.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> str:
        """Flush, fsync and close; the file's sha256 (idempotent)."""
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
        return self._hash.hexdigest()

    def written(self, root: Path, fmt: str) -> WrittenFile:
        sha = self.close()
        return WrittenFile(self.path.relative_to(root).as_posix(), fmt, sha, self.size)
