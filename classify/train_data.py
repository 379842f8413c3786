"""Read a snapshot folder into training samples: pixels, class, box, colour matrix, mask.

Why here and not in ``capture/``: only the trainer needs decoded pixels, and it runs off the
Pi.  The snapshot layout is the contract's (``contracts.md``; written by
``capture/snapshots/build.py``): ``manifest.json`` fixes the class order; the samples come from the
WebDataset shards when the snapshot has them (they carry the mask for background swaps) and
from the image folder otherwise.

A sample's record is the shot's metadata (``metadata.jsonl`` line or the shard's ``.json``).
Fields read: ``label``; ``bbox`` as ``[x, y, w, h]`` (or ``bbox_x``..``bbox_h``);
``colour_matrix`` (nested lists, or a JSON string); ``instance``/``instance_id`` and
``captured_at`` for reports.  A mask comes from the shard's ``.mask.png`` or from a
``mask_file_name`` next to the image.
"""

from __future__ import annotations

import json
import tarfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rig.errors import NotFound, StoreError

SPLITS = ("train", "val", "test")
IMAGE_EXTS = ("jpg", "jpeg", "png")


@dataclass
class Sample:
    """One shot of a snapshot, decoded lazily from its bytes."""

    key: str
    class_index: int
    label: str
    image_bytes: bytes
    bbox: tuple[float, float, float, float] | None
    colour_matrix: list[list[float]] | None
    mask_png: bytes | None = None
    instance: str | None = None
    captured_at: str | None = None

    def image(self) -> np.ndarray:
        """The stored photo (JPEG or PNG) as RGB ``uint8``; stored images are as captured."""
        bgr = cv2.imdecode(np.frombuffer(self.image_bytes, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise StoreError(f"sample {self.key}: the image does not decode; pull it again")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def mask(self) -> np.ndarray | None:
        """The part's mask (``bool`` H x W), or None when the snapshot has none."""
        if self.mask_png is None:
            return None
        mask = cv2.imdecode(np.frombuffer(self.mask_png, np.uint8), cv2.IMREAD_GRAYSCALE)
        return None if mask is None else mask > 0


@dataclass
class Snapshot:
    """A snapshot folder opened for training."""

    root: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.manifest.get("id", self.root.name))

    @property
    def labels(self) -> list[str]:
        """Class labels in the manifest's fixed order (the model's output order)."""
        classes = sorted(self.manifest["classes"], key=lambda c: int(c["index"]))
        return [str(c["label"]) for c in classes]

    def samples(self, split: str) -> list[Sample]:
        """Every sample of ``split`` in key order."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} (got {split!r})")
        paths = [f["path"] for f in self.manifest.get("files", [])]
        shards = sorted(p for p in paths if p.startswith(f"webdataset/{split}-"))
        # NOTE: a pull mirrors one format, so the manifest may list shards that are not here.
        if shards and all((self.root / p).is_file() for p in shards):
            found = [s for p in shards for s in self._from_shard(self.root / p)]
        elif (self.root / "folder" / split / "metadata.jsonl").is_file():
            found = list(self._from_folder(split))
        elif shards or f"folder/{split}/metadata.jsonl" in paths:
            raise StoreError(
                f"snapshot {self.id} at {self.root} lacks the files of its {split} split; "
                "pull it again (webdataset or folder format)"
            )
        else:
            found = []
        return sorted(found, key=lambda s: s.key)

    def _sample(self, key: str, record: dict[str, Any], image: bytes, mask: bytes | None) -> Sample:
        label = str(record.get("label", ""))
        labels = self.labels
        if label not in labels:
            raise StoreError(
                f"sample {key} of snapshot {self.id} has label {label!r}, which is not in the "
                "manifest's classes; the snapshot is inconsistent, create it again"
            )
        return Sample(
            key=key,
            class_index=labels.index(label),
            label=label,
            image_bytes=image,
            bbox=record_bbox(record),
            colour_matrix=record_matrix(record),
            mask_png=mask,
            instance=record.get("instance") or record.get("instance_id"),
            captured_at=record.get("captured_at"),
        )

    def shard_refs(self, split: str) -> list[str]:
        """The split's WebDataset shards (manifest paths) when all are here, else none."""
        paths = [f["path"] for f in self.manifest.get("files", [])]
        shards = sorted(p for p in paths if p.startswith(f"webdataset/{split}-"))
        return shards if shards and all((self.root / p).is_file() for p in shards) else []

    def shard_samples(self, ref: str) -> list[Sample]:
        """The samples of one shard named by :meth:`shard_refs` (one worker's share)."""
        return list(self._from_shard(self.root / ref))

    def _from_shard(self, path: Path) -> Iterator[Sample]:
        try:
            with tarfile.open(path) as tar:
                found = list(self._from_tar(tar, str(path)))
        except (OSError, tarfile.TarError) as exc:
            raise StoreError(f"cannot read the shard {path}: {exc}") from None
        yield from found

    def _from_tar(self, tar: tarfile.TarFile, where: str) -> Iterator[Sample]:
        """Samples of an open tar, read front to back (a stream from object storage works)."""
        members: dict[str, dict[str, bytes]] = defaultdict(dict)
        try:
            for info in tar:
                if not info.isfile():
                    continue
                key, _, ext = info.name.rpartition("/")[2].partition(".")
                handle = tar.extractfile(info)
                if handle is not None:
                    members[key][ext] = handle.read()
        except (OSError, tarfile.TarError) as exc:
            raise StoreError(f"cannot read the shard {where}: {exc}") from None
        for key, parts in members.items():
            image_ext = next((e for e in IMAGE_EXTS if e in parts), None)
            if image_ext is None:
                continue
            record = json.loads(parts["json"]) if "json" in parts else {}
            if "label" not in record and "cls" in parts:
                record["label"] = self.labels[int(parts["cls"])]
            yield self._sample(key, record, parts[image_ext], parts.get("mask.png"))

    def _from_folder(self, split: str) -> Iterator[Sample]:
        folder = self.root / "folder" / split
        meta = folder / "metadata.jsonl"
        if not meta.is_file():
            return
        for line in meta.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            image_path = folder / record["file_name"]
            key = Path(record["file_name"]).stem
            mask_name = record.get("mask_file_name")
            mask_path = folder / mask_name if mask_name else image_path.with_suffix(".mask.png")
            mask = mask_path.read_bytes() if mask_path.is_file() else None
            yield self._sample(key, record, image_path.read_bytes(), mask)


def record_bbox(record: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """The ``(x, y, w, h)`` box of a metadata record, in either spelling; None if absent."""
    box = record.get("bbox")
    if isinstance(box, dict):
        box = [box.get(k) for k in ("x", "y", "w", "h")]
    if box is None and record.get("bbox_w") is not None:
        box = [record.get(f"bbox_{k}") for k in ("x", "y", "w", "h")]
    if box is None or any(v is None for v in box):
        return None
    x, y, w, h = (float(v) for v in box)
    return (x, y, w, h) if w > 0 and h > 0 else None


def record_matrix(record: dict[str, Any]) -> list[list[float]] | None:
    """The colour matrix of a metadata record (stored as lists or a JSON string), or None."""
    matrix = record.get("colour_matrix")
    if isinstance(matrix, str):
        matrix = json.loads(matrix) if matrix.strip() else None
    return matrix


def open_snapshot(root: Path) -> Snapshot:
    """Open the snapshot folder ``root`` (the one holding ``manifest.json``)."""
    root = Path(root)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise NotFound(
            f"{root} is not a snapshot folder (no manifest.json); give the folder that "
            "`partrig dataset snapshot` created, or a rig URL. To train on a folder of photos "
            f"(one sub-folder per class), import it first: `partrig dataset import {root} "
            "--new-labels`, then `partrig dataset snapshot` and train on the snapshot it prints"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if not manifest.get("classes"):
        raise StoreError(f"the manifest of {root} lists no classes; nothing to train")
    return Snapshot(root, manifest)
