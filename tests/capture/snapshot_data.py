"""A small synthetic dataset saved through the store's real API, for the snapshot tests.

Every shot is a small JPEG: a random grey texture per (instance, background, angle), so no two
shots are near-duplicates by accident, with a coloured part rectangle whose mask and bbox are
stored with it.  One run per background, so each instance has two capture sessions.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from capture.store import DatasetStore, ShotRecord

LABELS = ("brick-2x4-red", "plate 1x2", "nut")
COLOURS = {"brick-2x4-red": (200, 30, 30), "plate 1x2": (30, 160, 40), "nut": (40, 40, 200)}


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png(grey: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, "PNG")
    return buf.getvalue()


def shot_image(seed: int, label: str, size: tuple[int, int], noise: bool = False):
    """(jpeg bytes, mask png bytes, bbox) of one synthetic shot."""
    w, h = size
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (6, 8), dtype=np.uint8)
    grey = np.asarray(Image.fromarray(texture).resize((w, h), Image.Resampling.NEAREST))
    rgb = np.repeat(grey[:, :, None], 3, axis=2).copy()
    if noise:
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    bw, bh = w // 4, h // 4
    x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    rgb[y : y + bh, x : x + bw] = COLOURS.get(label, (128, 128, 0))
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[y : y + bh, x : x + bw] = 255
    return jpeg(rgb), png(mask), (x, y, bw, bh)


def add_shots(
    store: DatasetStore,
    labels: tuple[str, ...] = LABELS,
    instances: int = 4,
    angles: int = 3,
    backgrounds: tuple[int, ...] = (1, 2),
    size: tuple[int, int] = (64, 48),
    prefix: str = "i",
    noise: bool = False,
    day: int = 1,
) -> list[int]:
    """Capture ``instances`` of each label at ``angles`` angles on every background; shot ids."""
    ids: list[int] = []
    for bg in backgrounds:
        run = store.create_run(f"{prefix}-bg{bg}", "", "{}", 0)
        items = []
        index = 0
        for label in labels:
            for n in range(instances):
                instance = f"{label}-{prefix}{n}"
                for a in range(angles):
                    seed = zlib.crc32(f"{instance}/{bg}/{a}".encode())
                    image, mask, (x, y, bw, bh) = shot_image(seed, label, size, noise)
                    mask_rel = f"masks/{run}/{index:06d}.png"
                    stored = store.write_file(mask_rel, mask)
                    record = ShotRecord(
                        label=label,
                        instance_id=instance,
                        path="",
                        sha256="0" * 64,
                        size=0,
                        run_id=run,
                        shot_index=index,
                        pose="up" if a % 2 == 0 else "side",
                        background_id=bg,
                        angle_cmd=float(a * 120),
                        width=size[0],
                        height=size[1],
                        format="jpeg",
                        mask_path=stored.path,
                        bbox_x=x,
                        bbox_y=y,
                        bbox_w=bw,
                        bbox_h=bh,
                        captured_at=f"2026-01-{day:02d}T10:{bg:02d}:{index % 60:02d}Z",
                    )
                    items.append((f"images/{run}/{index:06d}.jpg", image, record))
                    index += 1
        ids += store.save_shots(items)
    return ids


def open_store(data_dir: Path, **kw) -> DatasetStore:
    store = DatasetStore.open(data_dir)
    add_shots(store, **kw)
    return store
