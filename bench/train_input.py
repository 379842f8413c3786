"""The training input pipeline: images/s against bare decoding, peak memory at 10k and 100k shots.

What it measures, each in a fresh child process so peak RSS (``ru_maxrss``) is its own:

- ``bare``: read each file and ``cv2.imdecode`` it, nothing else, one thread: the floor any
  pipeline starts from;
- ``stream``: :class:`classify.train_stream.StreamSplit` training epochs (decode, shrink to the
  sorter's density, crop, augment, batch, prefetch) as ``partrig train`` runs them;
- peak RSS of ``stream`` after indexing a split of 10k and of 100k shots and streaming the same
  number of images through it; and of the in-memory path (``snapshot.samples`` +
  ``prepare_split``, every crop held; TensorFlow imported for the same baseline) at 10k, and
  with ``--memory-100k`` at 100k, for comparison.

Data: a folder-format snapshot of synthetic 160x120 JPEGs (a coloured bar on a grey sheet, with
its box) written under ``bench/out/train_input/`` (gitignored) once and reused.

Usage: ``python bench/train_input.py [--size 64] [--images 3000]``.  The last line printed is
one JSON object: ``{"bench": "train_input", "bare_images_per_s", "stream_images_per_s",
"ratio", "peak_rss_mb": {"10000": ..., "100000": ...}, "in_memory_peak_rss_mb": {...}, ...}``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OUT = Path(__file__).resolve().parent / "out" / "train_input"
LABELS = ("bar-red", "bar-blue", "bar-green")
VARIANTS = 60


def _jpegs() -> list[tuple[bytes, list[int], str]]:
    """A few dozen distinct small JPEGs with their boxes and labels (files reuse them)."""
    import numpy as np
    from PIL import Image

    colours = {"bar-red": (200, 40, 40), "bar-blue": (40, 60, 200), "bar-green": (40, 160, 60)}
    rng = np.random.default_rng(0)
    out = []
    for n in range(VARIANTS):
        label = LABELS[n % len(LABELS)]
        img = np.clip(rng.normal(190, 6, (120, 160, 3)), 0, 255).astype(np.uint8)
        x, y = int(rng.integers(10, 100)), int(rng.integers(10, 80))
        img[y : y + 20, x : x + 44] = colours[label]
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=90)
        out.append((buf.getvalue(), [x, y, 44, 20], label))
    return out


def make_snapshot(count: int) -> Path:
    """A folder-format snapshot of ``count`` training shots (written once, then reused)."""
    root = OUT / f"snap-{count}"
    if (root / "manifest.json").is_file():
        return root
    blobs = _jpegs()
    train = root / "folder" / "train"
    for i, label in enumerate(LABELS):
        (train / f"{i:03d}-{label}").mkdir(parents=True, exist_ok=True)
    lines = []
    for n in range(count):
        data, box, label = blobs[n % VARIANTS]
        name = f"{LABELS.index(label):03d}-{label}/s{n:08d}.jpg"
        (train / name).write_bytes(data)
        lines.append(json.dumps({"file_name": name, "label": label, "bbox": box}))
    (train / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    manifest = {
        "id": f"snap-{count}",
        "classes": [{"index": i, "label": lbl} for i, lbl in enumerate(LABELS)],
        "files": [{"path": "folder/train/metadata.jsonl", "format": "folder"}],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM), in MB.

    NOTE: not ``ru_maxrss``: Linux carries it across ``execve``, so a child would report the
    parent's peak at fork time.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(mode: str, root: Path, size: int, images: int) -> dict:
    """One measurement in this process; returns images, seconds and peak RSS."""
    from classify.train_output import quiet_tensorflow

    quiet_tensorflow()
    import cv2
    import numpy as np

    from classify.augment import AugmentConfig
    from classify.train_data import open_snapshot
    from classify.train_stream import CropLoader, StreamSplit, index_split, read_blob

    snap = open_snapshot(root)
    if mode == "memory":
        import tensorflow  # noqa: F401  (the same baseline as the streaming child)

        from classify.train import prepare_split

        started = time.perf_counter()
        prepared = prepare_split(snap.samples("train"), size, for_training=True)
        return {"images": len(prepared.crops), "seconds": time.perf_counter() - started,
                "peak_rss_mb": _peak_mb()}  # fmt: skip
    refs = index_split(snap, "train")
    if mode == "bare":
        started = time.perf_counter()
        for ref in refs[:images]:
            cv2.imdecode(np.frombuffer(read_blob(ref.image), np.uint8), cv2.IMREAD_COLOR)
        return {"images": min(images, len(refs)), "seconds": time.perf_counter() - started,
                "peak_rss_mb": _peak_mb()}  # fmt: skip
    import tensorflow as tf

    split = StreamSplit(refs, CropLoader(size, 640, AugmentConfig()))
    data = split.epoch(seed=0, epoch=1, min_samples=0, batch=32).take(-(-images // 32))
    seen = 0
    started = time.perf_counter()
    for x, _ in data:
        seen += int(tf.shape(x)[0])
    return {"images": seen, "seconds": time.perf_counter() - started, "peak_rss_mb": _peak_mb()}


def run_child(mode: str, root: Path, size: int, images: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--root", str(root), "--size", str(size),
         "--images", str(images)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--child", choices=("bare", "stream", "memory"))
    parser.add_argument("--root", type=Path)
    parser.add_argument(
        "--memory-100k", action="store_true", help="also measure the in-memory path at 100k"
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.root, args.size, args.images)))
        return
    import importlib.util

    # NOTE: only looked up, not imported: the children measure their own memory.
    if importlib.util.find_spec("tensorflow") is None:
        print(json.dumps({"bench": "train_input", "skipped": "TensorFlow is not installed"}))
        return
    load_before = os.getloadavg()
    small, large = make_snapshot(10_000), make_snapshot(100_000)
    bare = run_child("bare", small, args.size, args.images)
    stream_small = run_child("stream", small, args.size, args.images)
    stream_large = run_child("stream", large, args.size, args.images)
    memory = run_child("memory", small, args.size, args.images)
    memory_large = run_child("memory", large, args.size, args.images) if args.memory_100k else None
    bare_rate = bare["images"] / bare["seconds"]
    stream_rate = stream_small["images"] / stream_small["seconds"]
    result = {
        "bench": "train_input",
        "size": args.size,
        "image": "160x120 JPEG, quality 90",
        "images_timed": args.images,
        "bare_images_per_s": round(bare_rate, 1),
        "stream_images_per_s": round(stream_rate, 1),
        "ratio": round(stream_rate / bare_rate, 3),
        "stream_images_per_s_100k": round(stream_large["images"] / stream_large["seconds"], 1),
        "peak_rss_mb": {
            "10000": round(stream_small["peak_rss_mb"], 1),
            "100000": round(stream_large["peak_rss_mb"], 1),
        },
        "bare_peak_rss_mb": round(bare["peak_rss_mb"], 1),
        "in_memory_peak_rss_mb": {
            "10000": round(memory["peak_rss_mb"], 1),
            "100000": round(memory_large["peak_rss_mb"], 1) if memory_large else None,
        },
        "cpus": os.cpu_count(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
