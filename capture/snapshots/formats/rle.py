"""COCO's compressed run-length encoding of a binary mask, encoder and decoder.

Why our own: pycocotools is a compiled package the Pi does not need; the encoding is small and
fixed.  Runs are counted over the mask in column-major order, starting with a run of zeros
(possibly empty).  Each count (after the third, as a difference from the count two before) is
written as 5-bit groups, least significant first, each offset by 48 into printable ASCII, with
0x20 meaning "more groups follow" and 0x10 the sign of the last group.
"""

from __future__ import annotations

import numpy as np


def run_lengths(mask: np.ndarray) -> list[int]:
    """Column-major run lengths of ``mask != 0``, the first run being zeros."""
    flat = np.asarray(mask).reshape(mask.shape[0], -1).ravel(order="F") != 0
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return [int(c) for c in counts]


def encode_counts(counts: list[int]) -> str:
    out = bytearray()
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(c + 48)
    return out.decode("ascii")


def decode_counts(text: str) -> list[int]:
    counts: list[int] = []
    data = text.encode("ascii")
    p = 0
    while p < len(data):
        x = 0
        k = 0
        more = True
        while more:
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> dict[str, object]:
    """``{"size": [h, w], "counts": "..."}`` as COCO stores a compressed RLE."""
    h, w = int(mask.shape[0]), int(mask.shape[1])
    return {"size": [h, w], "counts": encode_counts(run_lengths(mask))}


def decode(rle: dict[str, object]) -> np.ndarray:
    """The uint8 0/1 mask of shape (h, w) that a compressed RLE describes."""
    size = rle["size"]
    if not isinstance(size, list | tuple):
        raise TypeError(f"a compressed RLE's size is [h, w], not {size!r}")
    h, w = (int(v) for v in size)
    counts = decode_counts(str(rle["counts"]))
    flat = np.zeros(h * w, dtype=np.uint8)
    pos = 0
    value = 0
    for n in counts:
        if value:
            flat[pos : pos + n] = 1
        pos += n
        value ^= 1
    return flat.reshape((w, h)).T.copy()
