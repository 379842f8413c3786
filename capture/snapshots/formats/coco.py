"""COCO JSON per split, ``coco/{split}.json``: boxes and masks for detection and segmentation.

One image and one annotation per shot.  ``bbox`` is ``[x, y, w, h]`` in pixels, masks are
compressed RLE with ``iscrowd: 0`` (our own encoder, :mod:`capture.snapshots.formats.rle`,
identical to
pycocotools').  Category ids are the manifest's class index + 1, because detection trainers
(torchvision, Detectron2) reserve 0 for the background; each category also carries its
``class_index``.  ``file_name`` is the image's path in the folder format's split folder
(``folder/{split}/``), so that folder is the COCO image root.

Why two scratch files: a COCO file lists all images, then all annotations.  Both lists are
streamed to scratch files beside the target while shots arrive, then joined into the final file
in one pass, so no list is ever held in memory.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from capture.snapshots.formats import HashingFile, Sample, WrittenFile
from capture.snapshots.formats.rle import encode

NAME = "coco"


class _SplitFile:
    def __init__(self, directory: Path, split: str) -> None:
        self.target = directory / f"{split}.json"
        self.images_path = directory / f".{split}.images.part"
        self.annotations_path = directory / f".{split}.annotations.part"
        self.images: IO[str] = open(self.images_path, "x", encoding="utf-8")  # noqa: SIM115
        self.annotations: IO[str] = open(self.annotations_path, "x", encoding="utf-8")  # noqa: SIM115
        self.n_images = 0
        self.n_annotations = 0

    def add(self, image: dict[str, Any], annotation: dict[str, Any] | None) -> None:
        self.images.write(("," if self.n_images else "") + _dumps(image))
        self.n_images += 1
        if annotation is not None:
            self.annotations.write(("," if self.n_annotations else "") + _dumps(annotation))
            self.n_annotations += 1

    def join(self, head: str, root: Path) -> WrittenFile:
        self.images.close()
        self.annotations.close()
        out = HashingFile(self.target)
        out.write((head + ',"images":[').encode())
        _copy(self.images_path, out)
        out.write(b'],"annotations":[')
        _copy(self.annotations_path, out)
        out.write(b"]}\n")
        self.images_path.unlink()
        self.annotations_path.unlink()
        return out.written(root, NAME)


class CocoWriter:
    name = NAME

    def __init__(
        self,
        root: Path,
        classes: list[str],
        description: str,
        attributes: list[dict[str, Any]] | None = None,
    ) -> None:
        self.root = root
        self.directory = root / NAME
        self.directory.mkdir(parents=True, exist_ok=True)
        categories: list[dict[str, Any]] = [
            {"id": i + 1, "name": label, "supercategory": "part", "class_index": i}
            for i, label in enumerate(classes)
        ]
        # NOTE: each category carries its part's catalogue attributes (capture.store.catalogue)
        if attributes is not None:
            for category, attrs in zip(categories, attributes, strict=True):
                category["attributes"] = attrs
        self._head = _dumps(
            {"info": {"description": description}, "licenses": [], "categories": categories}
        )[:-1]
        self._splits: dict[str, _SplitFile] = {}

    def add(self, sample: Sample) -> None:
        split = self._splits.get(sample.split)
        if split is None:
            split = self._splits[sample.split] = _SplitFile(self.directory, sample.split)
        shot = sample.shot
        width, height = shot.get("width"), shot.get("height")
        if not width or not height:
            with Image.open(io.BytesIO(sample.image)) as im:
                width, height = im.size
        image_id = int(shot["id"])
        image = {
            "id": image_id,
            "file_name": sample.file_name,
            "width": int(width),
            "height": int(height),
            "key": sample.key,
        }
        split.add(image, _annotation(sample, image_id))

    def close(self) -> list[WrittenFile]:
        return [self._splits[s].join(self._head, self.root) for s in sorted(self._splits)]


def _annotation(sample: Sample, image_id: int) -> dict[str, Any] | None:
    bbox = sample.bbox
    segmentation = None
    area = None
    if sample.mask is not None:
        with Image.open(io.BytesIO(sample.mask)) as im:
            mask = np.asarray(im.convert("L")) > 127
        segmentation = encode(mask)
        area = int(mask.sum())
        if bbox is None and area:
            ys, xs = np.nonzero(mask)
            x0, y0 = int(xs.min()), int(ys.min())
            bbox = [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]
    if bbox is None:
        return None
    out: dict[str, Any] = {
        "id": image_id,
        "image_id": image_id,
        "category_id": sample.class_index + 1,
        "bbox": bbox,
        "area": area if area is not None else bbox[2] * bbox[3],
        "iscrowd": 0,
    }
    if segmentation is not None:
        out["segmentation"] = segmentation
    # NOTE: COCO's "area" stays in pixels (tools expect it); real units beside it.
    for key in ("area_mm2", "length_mm", "width_mm", "shaft_length_mm"):
        if sample.shot.get(key) is not None:
            out[key] = sample.shot[key]
    if "attributes" in sample.shot:
        out["attributes"] = sample.shot["attributes"]
    return out


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _copy(path: Path, out: HashingFile) -> None:
    with open(path, "rb") as f:
        shutil.copyfileobj(f, out)
