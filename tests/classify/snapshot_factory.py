"""Synthetic snapshot folders for the classify tests: fast, offline, with known answers.

The parts are drawn shapes on two flat "sheets", chosen like the simulated catalogue: two
parts of the same colour that differ only in shape, and two of the same shape in different
colours.  Every shot gets a colour cast and the matrix that undoes it, a box and a mask, so
the reader, the crop and the augmentation all have real work to do.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np

from capture.vision.colour import linear_to_srgb, srgb_to_linear

PARTS = {
    "brick-red-square": ((200, 30, 30), "square"),
    "disc-red-round": ((200, 30, 30), "circle"),
    "brick-blue-square": ((30, 60, 200), "square"),
}
SHEETS = ((235, 235, 230), (120, 170, 120))


def render(label: str, sheet: int, rng: np.random.Generator, width: int = 160, height: int = 120):
    """One shot: (RGB uint8 as the camera saw it, bbox, mask, colour matrix)."""
    colour, shape = PARTS[label]
    img = np.empty((height, width, 3), np.uint8)
    img[:] = SHEETS[sheet]
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    r = int(rng.integers(12, 18))
    cx, cy = int(rng.integers(r + 30, width - r - 30)), int(rng.integers(r + 10, height - r - 10))
    if shape == "circle":
        cv2.circle(mask, (cx, cy), r, 255, -1)
    else:
        box = cv2.boxPoints(((cx, cy), (2 * r * 0.9, 2 * r * 0.9), float(rng.uniform(0, 90))))
        cv2.fillPoly(mask, [box.astype(np.int32)], 255)
    img[mask > 0] = colour
    cast = rng.uniform(0.8, 1.2, size=3)
    seen = linear_to_srgb(srgb_to_linear(img) * cast)
    seen = np.clip(np.round(seen), 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    bbox = [
        int(xs.min()),
        int(ys.min()),
        int(xs.max() - xs.min() + 1),
        int(ys.max() - ys.min() + 1),
    ]
    matrix = np.hstack([np.diag(1.0 / cast), np.zeros((3, 1))]).tolist()
    return seen, bbox, mask, matrix


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_snapshot(
    root: Path,
    per_class: dict[str, int] | None = None,
    seed: int = 0,
    snapshot_id: str = "snap-0007",
) -> Path:
    """Write a snapshot folder (manifest, WebDataset shards and the image folder) at ``root``."""
    rng = np.random.default_rng(seed)
    labels = list(PARTS)
    per_class = per_class or {"train": 24, "val": 6, "test": 8}
    files = []
    shot = 0
    for split, count in per_class.items():
        records, shard = [], io.BytesIO()
        with tarfile.open(fileobj=shard, mode="w") as tar:
            for index, label in enumerate(labels):
                for i in range(count):
                    shot += 1
                    key = f"s{shot:08d}"
                    img, bbox, mask, matrix = render(label, i % 2, rng)
                    jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes()
                    png = cv2.imencode(".png", mask)[1].tobytes()
                    record = {
                        "label": label,
                        "class_index": index,
                        "bbox": bbox,
                        "colour_matrix": matrix,
                        "instance": f"{label}-{i % 3}",
                        "background": i % 2,
                        "captured_at": f"2026-01-01T00:00:{shot:02d}",
                    }
                    name = f"{index:03d}-{label}/{key}.jpg"
                    folder = root / "folder" / split
                    (folder / name).parent.mkdir(parents=True, exist_ok=True)
                    (folder / name).write_bytes(jpg)
                    records.append({"file_name": name, **record})
                    _add(tar, f"{key}.jpg", jpg)
                    _add(tar, f"{key}.cls", str(index).encode())
                    _add(tar, f"{key}.json", json.dumps(record).encode())
                    _add(tar, f"{key}.mask.png", png)
        meta = root / "folder" / split / "metadata.jsonl"
        meta.write_text("".join(json.dumps(r) + "\n" for r in records))
        tar_path = root / "webdataset" / f"{split}-000000.tar"
        tar_path.parent.mkdir(parents=True, exist_ok=True)
        tar_path.write_bytes(shard.getvalue())
        for path, fmt in ((tar_path, "webdataset"), (meta, "folder")):
            data = path.read_bytes()
            files.append(
                {
                    "path": path.relative_to(root).as_posix(),
                    "format": fmt,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                }
            )
    manifest = {
        "id": snapshot_id,
        "created_at": "2026-01-01T00:00:00+00:00",
        "classes": [{"index": i, "label": lbl} for i, lbl in enumerate(labels)],
        "counts": {"total": shot},
        "formats": ["webdataset", "folder"],
        "files": files,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root
