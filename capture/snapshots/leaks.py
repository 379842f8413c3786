"""Duplicates that cross splits: exact (same sha256) and near (perceptual hash), and the check of
a folder-format dataset on disk.

Why both: a byte-identical image in train and test is the leak a published LEGO turntable set
had (30 % of its test images); a re-encoded, resized or slightly re-lit copy is the same leak in
disguise, so images are also compared by a perceptual hash.

Why this hash: a 256-bit pHash (the 16x16 lowest frequencies of the DCT of a 32x32 grey image,
one bit each, above the median or not).  On the 583 real Pi photos of small parts on a white
belt in ../shared/data, a 64-bit dHash put photos of *different* parts within 0 to 4 bits of each
other (the belt dominates the image), while this pHash keeps every pair of distinct photos at
28 bits or more and a re-encoded, brightened or resized copy within 18 bits: hence the default
threshold of 20.

Why bands: comparing every pair of a big dataset is out of reach.  Two hashes within
``max_distance`` bits agree exactly on at least one of ``max_distance + 1`` disjoint bands of
bits (pigeonhole), so only images sharing a band value are compared, bucket by bucket in numpy.
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from rig.errors import NotFound

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
HASH_BITS = 256
DEFAULT_MAX_DISTANCE = 20
MAX_LISTED = 200
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)
_CHUNK = 64
_SCRATCH_BYTES = 4 << 20


@dataclass(frozen=True)
class ImageEntry:
    """One image as the duplicate check sees it; ``phash`` is 32 bytes."""

    name: str
    split: str
    label: str
    sha256: str
    phash: bytes


def phash(data: bytes) -> bytes:
    """The 256-bit perceptual hash of an encoded image, as 32 bytes."""
    with Image.open(io.BytesIO(data)) as im:
        # NOTE: draft() lets the JPEG decoder scale by up to 1/8 while decoding, so a 12 MP
        # shot costs a fraction of a full decode.
        im.draft("L", (64, 64))
        grey = np.asarray(im.convert("L").resize((32, 32), Image.Resampling.BOX), np.float32)
    low = cv2.dct(grey)[:16, :16].ravel()
    return np.packbits(low > np.median(low)).tobytes()


def distance(a: bytes, b: bytes) -> int:
    """Hamming distance between two hashes."""
    return int((int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count())


def exact_cross_split(entries: Iterable[ImageEntry]) -> list[dict[str, Any]]:
    """Groups of byte-identical images found in more than one split."""
    by_sha: dict[str, list[ImageEntry]] = defaultdict(list)
    for e in entries:
        by_sha[e.sha256].append(e)
    out = []
    for sha, group in sorted(by_sha.items()):
        if len({e.split for e in group}) > 1:
            out.append(
                {"sha256": sha, "images": [{"name": e.name, "split": e.split} for e in group]}
            )
    return out


def near_cross_split(
    entries: list[ImageEntry], max_distance: int = DEFAULT_MAX_DISTANCE
) -> list[dict[str, Any]]:
    """Pairs of images in different splits whose hashes differ in at most ``max_distance`` bits.

    Byte-identical pairs are left to :func:`exact_cross_split`.
    """
    if len(entries) < 2:
        return []
    hashes = np.frombuffer(b"".join(e.phash for e in entries), np.uint8).reshape(len(entries), -1)
    bits = hashes.shape[1] * 8
    splits = np.unique([e.split for e in entries], return_inverse=True)[1]
    shas = np.unique([e.sha256 for e in entries], return_inverse=True)[1]
    bands = max_distance + 1
    width = bits // bands
    if width < 1:
        raise ValueError(f"max_distance {max_distance} must be below {bits}")
    found: dict[tuple[int, int], int] = {}
    for band in range(bands):
        values = _band_values(hashes, band * width, width)
        order = np.argsort(values, kind="stable")
        cuts = np.flatnonzero(np.diff(values[order])) + 1
        for members in np.split(order, cuts):
            if len(members) > 1:
                _compare(members, hashes, splits, shas, max_distance, found)
    out: list[dict[str, Any]] = []
    for (a, b), d in found.items():
        ea, eb = entries[a], entries[b]
        out.append(
            {
                "distance": d,
                "a": {"name": ea.name, "split": ea.split, "label": ea.label},
                "b": {"name": eb.name, "split": eb.split, "label": eb.label},
            }
        )
    out.sort(key=lambda p: (p["distance"], p["a"]["name"], p["b"]["name"]))
    return out


def _band_values(hashes: np.ndarray, start: int, width: int) -> np.ndarray:
    """The integer value of bits ``[start, start + width)`` of every hash."""
    first, last = start // 8, (start + width - 1) // 8 + 1
    bits = np.unpackbits(hashes[:, first:last], axis=1)[:, start - first * 8 :][:, :width]
    return bits.astype(np.int64) @ (1 << np.arange(width, dtype=np.int64))


def _compare(
    members: np.ndarray,
    hashes: np.ndarray,
    splits: np.ndarray,
    shas: np.ndarray,
    max_distance: int,
    found: dict[tuple[int, int], int],
) -> None:
    """Record the close cross-split pairs among one bucket's members (in chunks of rows)."""
    members = np.sort(members)
    block = hashes[members]
    # NOTE: bound the (rows x members x 32) scratch arrays to a few MB, even for a bucket of
    # many near-blank images.
    step = max(1, min(_CHUNK, _SCRATCH_BYTES // (len(members) * block.shape[1])))
    for lo in range(0, len(members), step):
        rows = block[lo : lo + step]
        dist = _POPCOUNT[rows[:, None, :] ^ block[None, :, :]].sum(axis=2)
        ia, ib = np.nonzero(dist <= max_distance)
        for x, y in zip(ia.tolist(), ib.tolist(), strict=True):
            a, b = int(members[lo + x]), int(members[y])
            if a < b and splits[a] != splits[b] and shas[a] != shas[b]:
                found[(a, b)] = int(dist[x, y])


def held_out_rate(
    entries: list[ImageEntry], exact: list[dict[str, Any]], near: list[dict[str, Any]]
) -> float:
    """The share of val and test images with an exact or near duplicate in another split.

    Why this and not the pair count: a pair count grows with the square of a cluster and says
    nothing about how much of the held-out score is memory; this share is (roughly) the part of
    the test accuracy that a model could get by remembering training images.
    """
    held = {e.name for e in entries if e.split != "train"}
    if not held:
        return 0.0
    hit = {i["name"] for g in exact for i in g["images"] if i["name"] in held}
    hit |= {p[k]["name"] for p in near for k in ("a", "b") if p[k]["name"] in held}
    return round(len(hit) / len(held), 4)


def duplicate_summary(
    entries: list[ImageEntry], max_distance: int = DEFAULT_MAX_DISTANCE
) -> dict[str, Any]:
    """The report's duplicate section: counts plus the first :data:`MAX_LISTED` of each kind."""
    exact = exact_cross_split(entries)
    near = near_cross_split(entries, max_distance)
    return {
        "method": f"sha256; pHash {HASH_BITS}-bit, Hamming distance <= {max_distance}",
        "exact_cross_split": len(exact),
        "near_cross_split": len(near),
        "held_out_rate": held_out_rate(entries, exact, near),
        "exact": exact[:MAX_LISTED],
        "near": near[:MAX_LISTED],
    }


def folder_entries(folder_dir: Path) -> list[ImageEntry]:
    """Every image of a folder-format dataset (``{split}/{class}/{file}``), hashed."""
    folder_dir = Path(folder_dir)
    if not folder_dir.is_dir():
        raise NotFound(f"{folder_dir} is not a folder: give a folder-format dataset directory")
    entries = []
    for path in sorted(folder_dir.glob("*/*/*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        data = path.read_bytes()
        split, label = path.parent.parent.name, path.parent.name
        entries.append(
            ImageEntry(
                name=path.relative_to(folder_dir).as_posix(),
                split=split,
                label=label,
                sha256=hashlib.sha256(data).hexdigest(),
                phash=phash(data),
            )
        )
    if not entries:
        raise NotFound(
            f"no images under {folder_dir}/<split>/<class>/: pass the folder format's top "
            "directory (the one holding train/, val/ and test/)"
        )
    return entries


def leak_report(folder_dir: Path, max_distance: int = DEFAULT_MAX_DISTANCE) -> dict[str, Any]:
    """Cross-split exact and near duplicates of a folder-format dataset directory.

    Works on any ``{split}/{class}/{image}`` tree, including a pulled snapshot's ``folder/``.
    """
    entries = folder_entries(folder_dir)
    per_split: dict[str, int] = defaultdict(int)
    for e in entries:
        per_split[e.split] += 1
    return {
        "folder": str(folder_dir),
        "images": len(entries),
        "by_split": dict(sorted(per_split.items())),
        "duplicates": duplicate_summary(entries, max_distance),
    }
