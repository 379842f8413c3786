"""Inferred part groups for imported photos: the part's crop, its perceptual hash, time gaps.

Why groups at all: a folder of photos rarely says which physical part each one shows, yet a
split that puts neighbouring angles of one part on both sides measures memory, not sorting.
Photos are linked into one group (standing in for a physical part) when

- their part crops look alike: the 256-bit average hash of the crop differs in at most
  ``max_distance`` bits (the same part at nearly the same angle and light), or
- they are neighbours in time within ``time_gap`` seconds (one sitting of one part on the
  turntable), where EXIF or the file name gives the time.

Why the crop and never the whole frame: on a rig every frame shows the same sheet or belt, so
whole frames all look alike and the hash would say nothing about the part.  The crop is the
given box, else the difference against the reference frames
(:func:`capture.vision.masks.mask_and_box`),
else the difference against the median of the photos themselves (a fixed camera over a moving
part: the median is the empty background).

Groups are numbered in the order they are first met and never renumbered: a re-run (resume, or
more photos in the same source) keeps every existing group id and links new photos to them.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from capture.vision.masks import mask_and_box

#: Bits of 256 two crops of one part at nearly one pose may differ by.  NOTE: links chain
#: (single linkage), so a loose threshold joins a whole class: on the real belt photos 24 bits
#: left 1-3 groups per class, 8 bits 14-18 (time gaps alone: 18-20).
DEFAULT_MAX_DISTANCE = 8
#: Seconds between photos that still count as one sitting of one part.
DEFAULT_TIME_GAP = 300.0
#: Photos whose median stands in for the background when there are no reference frames.
MEDIAN_SAMPLE = 25
#: Long side of the frames the difference and the hash work on.
WORK_PX = 480
_NAME_TIME = re.compile(r"(20\d\d)[-_]?(\d\d)[-_]?(\d\d)[-_T ]?(\d\d)[-_:.]?(\d\d)[-_:.]?(\d\d)")


@dataclass
class Photo:
    """What the import learnt from one photo's bytes."""

    sha256: str
    size: int
    width: int
    height: int
    format: str
    box: tuple[int, int, int, int] | None
    crop_hash: bytes
    taken: datetime | None


def photo_time(data_name: str, exif_time: str | None) -> datetime | None:
    """When the photo was taken: EXIF first, else a timestamp in the file name, else None."""
    if exif_time:
        try:
            return datetime.strptime(exif_time.strip()[:19], "%Y:%m:%d %H:%M:%S").replace(
                tzinfo=UTC
            )
        except ValueError:
            pass
    found = _NAME_TIME.search(Path(data_name).name)
    if found:
        try:
            y, mo, d, h, mi, s = (int(g) for g in found.groups())
            return datetime(y, mo, d, h, mi, s, tzinfo=UTC)
        except ValueError:
            return None
    return None


def _exif_time(im: Image.Image) -> str | None:
    exif = im.getexif()
    stamp = exif.get_ifd(0x8769).get(36867) or exif.get(36867) or exif.get(306)
    return str(stamp) if stamp else None


def stored_time(path: Path, origin: str) -> datetime | None:
    """:func:`photo_time` of a stored photo (its header only) under its original name."""
    try:
        with Image.open(path) as im:
            return photo_time(origin, _exif_time(im))
    except OSError:
        return photo_time(origin, None)


def _work_rgb(im: Image.Image) -> tuple[np.ndarray, float]:
    """The photo as RGB at about :data:`WORK_PX` on the long side, and the scale used."""
    scale = min(1.0, WORK_PX / max(im.size))
    im.draft("RGB", (max(1, int(im.size[0] * scale)), max(1, int(im.size[1] * scale))))
    rgb = im.convert("RGB")
    if max(rgb.size) > WORK_PX:
        s = WORK_PX / max(rgb.size)
        rgb = rgb.resize((max(1, round(rgb.size[0] * s)), max(1, round(rgb.size[1] * s))))
    return np.asarray(rgb), rgb.size[0] / im.size[0] if im.size[0] else 1.0


def crop_hash(rgb: np.ndarray) -> bytes:
    """The 256-bit average hash (32 bytes) of a crop: 16x16 grey cells above their mean.

    NOTE: not the DCT hash of :mod:`capture.snapshots.leaks`: a part crop is a simple shape on
    a plain ground, whose DCT has few non-zero coefficients, so most DCT bits were sensor noise
    (a horizontal bar's crops differed in 90 of 256 bits).  Cells above the mean follow the
    shape itself, and only cells on its edge can flip.
    """
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.packbits(small > small.mean()).tobytes()


def background_of(frames: Sequence[np.ndarray]) -> np.ndarray | None:
    """The per-pixel median of same-sized frames: the empty background under a moving part."""
    if not frames:
        return None
    shape = frames[0].shape
    same = [f for f in frames if f.shape == shape]
    return np.median(np.stack(same), axis=0).astype(np.uint8)


def load_work_frames(paths: Iterable[Path]) -> list[np.ndarray]:
    out = []
    for p in paths:
        with Image.open(p) as im:
            out.append(_work_rgb(im)[0])
    return out


def analyse(
    path: Path, box: tuple[int, int, int, int] | None, background: np.ndarray | None
) -> tuple[bytes, Photo]:
    """Read one photo: its bytes, checksum, size, time, part box and crop hash."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        fmt = (im.format or path.suffix.lstrip(".")).lower()
        stamp = _exif_time(im)
        work, scale = _work_rgb(im)
    if box is None and background is not None and background.shape == work.shape:
        _mask, small_box = mask_and_box(work, background, work_px=WORK_PX)
        if small_box is not None:
            x, y, w, h = (round(v / scale) for v in small_box)
            box = (x, y, w, h)
    crop = _crop(work, box, scale)
    photo = Photo(
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        width=width,
        height=height,
        format="jpeg" if fmt in ("jpg", "mpo") else fmt,
        box=box,
        crop_hash=crop_hash(crop),
        taken=photo_time(path.name, stamp),
    )
    return data, photo


def _crop(work: np.ndarray, box: tuple[int, int, int, int] | None, scale: float) -> np.ndarray:
    """The part's crop in the work frame (a square around the box, 10 % margin).

    NOTE: with no box at all (no references, a single odd-sized photo) the central half stands
    in: it holds the part in nearly every hand-held photo, and never the whole frame.
    """
    h, w = work.shape[:2]
    if box is None:
        return work[h // 4 : h - h // 4, w // 4 : w - w // 4]
    x, y, bw, bh = (v * scale for v in box)
    side = max(bw, bh) * 1.1
    cx, cy = x + bw / 2, y + bh / 2
    x0, y0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    x1, y1 = min(w, int(cx + side / 2) + 1), min(h, int(cy + side / 2) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return work
    return work[y0:y1, x0:x1]


def hamming(a: bytes, b: bytes) -> int:
    return int((int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count())


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def group_photos(
    hashes: Sequence[bytes],
    times: Sequence[datetime | None],
    known: Sequence[int | None],
    *,
    next_number: int,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    time_gap: float = DEFAULT_TIME_GAP,
) -> tuple[list[int], int]:
    """Group numbers for photos of one class, and the next free number.

    ``known[i]`` is the group a photo already has (from an earlier run of the same import); it
    is kept.  A new photo linked to known groups joins the lowest of them; a set of linked new
    photos with none gets the next number, in order of first photo.  Known groups never merge,
    so an id once given never changes.
    """
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    for i, j in _near_pairs(hashes, max_distance):
        union(i, j)
    timed = sorted((t, i) for i, t in enumerate(times) if t is not None)
    for (ta, a), (tb, b) in itertools.pairwise(timed):
        if (tb - ta).total_seconds() <= time_gap:
            union(a, b)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    out: list[int] = [0] * n
    for root in sorted(members):
        group = members[root]
        olds = sorted({k for k in (known[i] for i in group) if k is not None})
        fresh_number = olds[0] if olds else next_number
        if not olds:
            next_number += 1
        for i in group:
            k = known[i]
            out[i] = k if k is not None else fresh_number
    return out, next_number


def _near_pairs(hashes: Sequence[bytes], max_distance: int) -> list[tuple[int, int]]:
    """Every pair within ``max_distance`` bits, compared a block of rows at a time."""
    if len(hashes) < 2:
        return []
    bits = np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), -1)
    pairs: list[tuple[int, int]] = []
    # NOTE: a block of rows against all: bounded to ~8 MB of XOR scratch whatever the count.
    block = max(1, min(256, 8_000_000 // (len(hashes) * bits.shape[1])))
    for start in range(0, len(hashes), block):
        rows = bits[start : start + block]
        dist = _POPCOUNT[rows[:, None, :] ^ bits[None, :, :]].sum(axis=2, dtype=np.uint16)
        ii, jj = np.nonzero(dist <= max_distance)
        for i, j in zip(ii + start, jj, strict=True):
            if i < j:
                pairs.append((int(i), int(j)))
    return pairs
