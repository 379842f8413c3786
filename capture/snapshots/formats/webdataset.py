"""WebDataset tar shards: ``webdataset/{split}-{000000..}.tar``, the format GPU loaders stream.

Why deterministic tars: a trainer who pulls a newer snapshot skips files it already has by
sha256, and that only works if unchanged content gives identical bytes.  Members are written in
ascending shot id with fixed owner, mode and an mtime taken from the shot's capture time, in
the plain ustar format (no pax headers carrying the current time).

A sample is every member sharing a key up to the first dot, so keys are ``s{shot_id:08d}``:
``{key}.jpg`` (or ``.png``), ``{key}.cls`` (the class index as text), ``{key}.json`` (all the
shot's metadata) and ``{key}.mask.png`` when the shot has a mask.
"""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime
from pathlib import Path

from capture.snapshots.formats import HashingFile, Sample, WrittenFile

NAME = "webdataset"
_BLOCK = 512


def _padded(n: int) -> int:
    return _BLOCK + -(-n // _BLOCK) * _BLOCK


class WebDatasetWriter:
    """Rolls to a new shard before one would pass ``shard_bytes`` (a shard holds >= 1 sample)."""

    name = NAME

    def __init__(self, root: Path, shard_bytes: int) -> None:
        self.root = root
        self.shard_bytes = int(shard_bytes)
        self._split: str | None = None
        self._number = 0
        self._file: HashingFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._bytes = 0
        self._written: list[WrittenFile] = []

    def add(self, sample: Sample) -> None:
        members = [
            (f"{sample.key}.{sample.image_ext}", sample.image),
            (f"{sample.key}.cls", str(sample.class_index).encode()),
            (f"{sample.key}.json", _json(sample)),
        ]
        if sample.mask is not None:
            members.append((f"{sample.key}.mask.png", sample.mask))
        size = sum(_padded(len(data)) for _, data in members)
        if sample.split != self._split:
            self._finish_shard()
            self._split, self._number = sample.split, 0
        elif self._tar is not None and self._bytes and self._bytes + size > self.shard_bytes:
            self._finish_shard()
            self._number += 1
        if self._tar is None:
            self._open_shard()
        mtime = _epoch(sample.shot.get("captured_at"))
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))  # type: ignore[union-attr]
        self._bytes += size

    def _open_shard(self) -> None:
        path = self.root / NAME / f"{self._split}-{self._number:06d}.tar"
        self._file = HashingFile(path)
        # NOTE: closed in _finish_shard(); plain ustar carries no pax header with the time.
        self._tar = tarfile.TarFile(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)  # type: ignore[arg-type]
        self._bytes = 0

    def _finish_shard(self) -> None:
        if self._tar is None or self._file is None:
            return
        self._tar.close()
        self._written.append(self._file.written(self.root, NAME))
        self._tar = self._file = None

    def close(self) -> list[WrittenFile]:
        self._finish_shard()
        return list(self._written)


def _json(sample: Sample) -> bytes:
    return json.dumps(sample.metadata(), sort_keys=True, separators=(",", ":")).encode()


def _epoch(captured_at: str | None) -> int:
    if not captured_at:
        return 0
    try:
        return max(0, int(datetime.fromisoformat(captured_at).timestamp()))
    except ValueError:
        return 0


def shard_pattern(files: list[str], split: str) -> str | None:
    """The brace pattern (``train-{000000..000003}.tar``) naming a split's shards, if any."""
    names = sorted(Path(f).name for f in files if Path(f).name.startswith(f"{split}-"))
    if not names:
        return None
    if len(names) == 1:
        return f"{NAME}/{names[0]}"
    return f"{NAME}/{split}-{{000000..{len(names) - 1:06d}}}.tar"
