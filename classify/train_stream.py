"""The streaming input pipeline: shots decoded, cropped and augmented on the fly by ``tf.data``.

Why: the first recipe decoded every full-resolution image of a split into memory before the
first epoch and then built a whole augmented epoch as one array, so memory grew with the
dataset (100k shots of 96 px crops is 2.8 GB before a single step).  Here a split is an
*index* of small :class:`ShotRef` records (where the bytes are: a file, or an offset into a
WebDataset shard; the box, the colour matrix, the class) and every epoch is a ``tf.data``
pipeline over it::

    shuffled ids -> map(decode + shrink to the sorter's density + crop + augment, parallel)
                 -> batch -> prefetch(2)

Only ``PARALLEL`` shots being decoded, one batch being built and two waiting are ever in
memory, plus a fixed pool of at most ``PATCH_POOL`` background patches for swaps; the index
costs a few hundred bytes a shot.  ``bench/train_input.py`` measures both (images/s against
bare decoding, peak RSS at 10k and 100k shots).

Determinism: shot ``j`` of epoch ``e`` is augmented with ``default_rng([seed, e, j])``, so the
parallel map gives the same pixels whatever order its threads finish in.
"""

from __future__ import annotations

import collections
import json
import os
import tarfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from classify.augment import AugmentConfig, as_affine, augment, background_patch
from classify.preprocess import prepare, prepare_mask
from classify.train_data import IMAGE_EXTS, Snapshot, record_bbox, record_matrix
from rig.errors import StoreError

#: Shots decoded at once (cv2 releases the GIL while decoding and resizing).
PARALLEL = max(1, min(8, os.cpu_count() or 1))
#: Batches waiting for the model.
PREFETCH = 2
#: Background patches kept for swaps (each one crop's size).
PATCH_POOL = 256

Blob = tuple[str, int, int]  # path, offset, length (-1: the whole file)


@dataclass(frozen=True)
class ShotRef:
    """Where one shot's bytes are and what the recipe needs to know about it."""

    key: str
    class_index: int
    bbox: tuple[float, float, float, float] | None
    matrix: list[list[float]] | None
    image: Blob
    mask: Blob | None = None


def read_blob(blob: Blob) -> bytes:
    path, offset, length = blob
    with open(path, "rb") as f:
        if length < 0:
            return f.read()
        f.seek(offset)
        return f.read(length)


def at_sorter_density(
    image: np.ndarray, bbox: Any, sorter_px: int | None
) -> tuple[np.ndarray, Any]:
    """The frame (and box) shrunk to the sorter's preview size when it is larger.

    Why: the sorter classifies crops of its preview frames (640x480 by default) while the rig
    stores 12 MP stills; a model trained on a still's crop sees fine detail the sorter never
    gets.  Shrinking the whole frame with area averaging, as the camera's scaler does, gives
    the crop the sorter's pixels per millimetre.
    """
    long_side = max(image.shape[:2])
    if not sorter_px or long_side <= sorter_px:
        return image, bbox
    f = sorter_px / long_side
    small = cv2.resize(
        image,
        (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f))),
        interpolation=cv2.INTER_AREA,
    )
    return small, None if bbox is None else tuple(float(v) * f for v in bbox)


def index_split(snap: Snapshot, split: str) -> list[ShotRef]:
    """The split's shots as references, from its shards (headers only) or its folder."""
    shards = snap.shard_refs(split)
    if shards:
        refs = [r for ref in shards for r in _index_shard(snap, snap.root / ref)]
    else:
        refs = list(_index_folder(snap, split))
    return sorted(refs, key=lambda r: r.key)


def _class_of(snap: Snapshot, key: str, record: dict[str, Any]) -> int:
    label = str(record.get("label", ""))
    try:
        return snap.labels.index(label)
    except ValueError:
        raise StoreError(
            f"sample {key} of snapshot {snap.id} has label {label!r}, which is not in the "
            "manifest's classes; the snapshot is inconsistent, create it again"
        ) from None


def _index_shard(snap: Snapshot, path: Path) -> Iterator[ShotRef]:
    members: dict[str, dict[str, Blob]] = collections.defaultdict(dict)
    records: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(path) as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, _, ext = info.name.rpartition("/")[2].partition(".")
                members[key][ext] = (str(path), info.offset_data, info.size)
                if ext == "json":
                    handle = tar.extractfile(info)
                    records[key] = json.loads(handle.read()) if handle else {}
                elif ext == "cls" and "label" not in records.get(key, {}):
                    handle = tar.extractfile(info)
                    if handle:
                        cls = int(handle.read())
                        records.setdefault(key, {})["label"] = snap.labels[cls]
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise StoreError(f"cannot read the shard {path}: {exc}") from None
    for key, parts in members.items():
        image_ext = next((e for e in IMAGE_EXTS if e in parts), None)
        if image_ext is None:
            continue
        record = records.get(key, {})
        yield ShotRef(
            key,
            _class_of(snap, key, record),
            record_bbox(record),
            record_matrix(record),
            parts[image_ext],
            parts.get("mask.png"),
        )


def _index_folder(snap: Snapshot, split: str) -> Iterator[ShotRef]:
    folder = snap.root / "folder" / split
    meta = folder / "metadata.jsonl"
    if not meta.is_file():
        return
    with meta.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            image = folder / record["file_name"]
            key = Path(record["file_name"]).stem
            mask_name = record.get("mask_file_name")
            mask = folder / mask_name if mask_name else image.with_suffix(".mask.png")
            yield ShotRef(
                key,
                _class_of(snap, key, record),
                record_bbox(record),
                record_matrix(record),
                (str(image), 0, -1),
                (str(mask), 0, -1) if mask.is_file() else None,
            )


class CropLoader:
    """Decode one shot and cut the crop the sorter would see; augment it for training."""

    def __init__(self, size: int, sorter_px: int | None, cfg: AugmentConfig) -> None:
        self.size = size
        self.sorter_px = sorter_px
        self.cfg = cfg
        self.patches: list[np.ndarray] = []
        self._lock = threading.Lock()

    def fill_patches(self, refs: Sequence[ShotRef], seed: int) -> None:
        """Cut the background-patch pool once, from up to :data:`PATCH_POOL` shots.

        NOTE: a fixed pool, not one fed as shots stream by: the parallel map finishes shots
        in any order, and a pool that depended on it would make the pixels irreproducible.
        """
        with self._lock:
            if self.patches or self.cfg.background_swap <= 0:
                return
            if not any(r.mask is not None for r in refs):
                return
            picks = np.random.default_rng([seed, 7]).permutation(len(refs))[:PATCH_POOL]
            for i in picks:
                image, bbox = at_sorter_density(
                    self._decode(refs[int(i)]), refs[int(i)].bbox, self.sorter_px
                )
                patch = background_patch(image, bbox, self.size)
                if patch is not None:
                    self.patches.append(patch)

    def _decode(self, ref: ShotRef) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(read_blob(ref.image), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise StoreError(f"sample {ref.key}: the image does not decode; pull it again")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def plain(self, ref: ShotRef, *, corrected: bool = True) -> np.ndarray:
        """The crop as val, test and the sorter see it (colour corrected unless asked not)."""
        image, bbox = at_sorter_density(self._decode(ref), ref.bbox, self.sorter_px)
        return prepare(image, bbox, ref.matrix if corrected else None, self.size)

    def training(self, ref: ShotRef, rng: np.random.Generator) -> np.ndarray:
        """One augmented training crop (backgrounds swapped in from the fixed pool)."""
        full = self._decode(ref)
        image, bbox = at_sorter_density(full, ref.bbox, self.sorter_px)
        crop = prepare(image, bbox, None, self.size)
        mask = None
        if ref.mask is not None:
            raw = cv2.imdecode(np.frombuffer(read_blob(ref.mask), np.uint8), cv2.IMREAD_GRAYSCALE)
            if raw is not None:
                mask = prepare_mask(raw > 0, ref.bbox, self.size)
        return augment(crop, as_affine(ref.matrix), mask, self.patches, rng, self.cfg)


class StreamSplit:
    """One split for training or evaluation, streamed from its index."""

    def __init__(self, refs: Sequence[ShotRef], loader: CropLoader) -> None:
        self.refs = list(refs)
        self.loader = loader
        self.classes = np.asarray([r.class_index for r in self.refs], np.int64)

    def __len__(self) -> int:
        return len(self.refs)

    def epoch(self, seed: int, epoch: int, min_samples: int, batch: int) -> Any:
        """A ``tf.data.Dataset`` of one epoch of fresh augmentations, ``(crops, classes)``."""
        import tensorflow as tf

        self.loader.fill_patches(self.refs, seed)
        rng = np.random.default_rng([seed, epoch])
        repeats = max(1, -(-min_samples // max(1, len(self.refs))))
        order = np.concatenate([rng.permutation(len(self.refs)) for _ in range(repeats)])

        def load(i: np.int64, j: np.int64) -> tuple[np.ndarray, np.int64]:
            ref = self.refs[int(i)]
            crop = self.loader.training(ref, np.random.default_rng([seed, epoch, int(j)]))
            return crop, np.int64(ref.class_index)

        ids = tf.data.Dataset.from_tensor_slices((order, np.arange(len(order), dtype=np.int64)))
        crops = ids.map(
            lambda i, j: tf.numpy_function(load, [i, j], (tf.uint8, tf.int64)),
            num_parallel_calls=PARALLEL,
        )
        return self._finish(crops, batch)

    def evaluation(self, batch: int) -> Any:
        """A ``tf.data.Dataset`` of the split's plain crops in key order."""
        import tensorflow as tf

        def load(i: np.int64) -> tuple[np.ndarray, np.int64]:
            ref = self.refs[int(i)]
            return self.loader.plain(ref), np.int64(ref.class_index)

        ids = tf.data.Dataset.from_tensor_slices(np.arange(len(self.refs), dtype=np.int64))
        crops = ids.map(
            lambda i: tf.numpy_function(load, [i], (tf.uint8, tf.int64)),
            num_parallel_calls=PARALLEL,
        )
        return self._finish(crops, batch)

    def _finish(self, ds: Any, batch: int) -> Any:
        import tensorflow as tf

        size = self.loader.size

        def shaped(x: Any, y: Any) -> tuple[Any, Any]:
            return tf.ensure_shape(x, (size, size, 3)), tf.ensure_shape(y, ())

        return ds.map(shaped).batch(batch).prefetch(PREFETCH)

    def plain_crops(self) -> Iterator[tuple[np.ndarray, int]]:
        """Every plain crop with its class, one at a time (the TFLite test pass)."""
        for ref in self.refs:
            yield self.loader.plain(ref), ref.class_index

    def calibration(self, rng: np.random.Generator, limit: int = 200) -> list[np.ndarray]:
        """Up to ``limit`` colour-corrected training crops for the int8 export."""
        picks = rng.permutation(len(self.refs))[:limit]
        return [self.loader.plain(self.refs[int(i)]) for i in picks]
