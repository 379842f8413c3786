"""Snapshot folders written straight to the on-disk contract, for the HTTP and pull tests.

Why not always ``capture.snapshots.build.create_snapshot``: the serving and pulling tests need
control over file sizes (a shard big enough to kill a pull inside it) and over exactly which files
change between two versions; the layout written here is the contract's (manifest.json listing
every other file with format, sha256 and size; ``webdataset/{split}-NNNNNN.tar`` with
``{key}.jpg/.cls/.json`` members; ``folder/{split}/{index:03d}-{label}/{key}.jpg`` with
``metadata.jsonl``; ``report.json``/``report.md``).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ["brick-2x4-red", "plate-1x2-blue"]


def noise(n: int, seed: int) -> bytes:
    """Incompressible bytes, reproducible from ``seed``."""
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def shard(shot_ids: list[int], payload: int, seed: int) -> bytes:
    """A WebDataset tar: for each shot ``s{id:08d}.jpg/.cls/.json``, fixed mtimes and order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for shot in shot_ids:
            key = f"s{shot:08d}"
            label = shot % len(CLASSES)
            members = {
                f"{key}.jpg": noise(payload, seed * 100_003 + shot),
                f"{key}.cls": str(label).encode(),
                f"{key}.json": json.dumps({"id": shot, "label": CLASSES[label]}).encode(),
            }
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sample_files(
    shards: int = 2, shots_per_shard: int = 2, payload: int = 4096, folder_shots: int = 6
) -> dict[str, tuple[str, bytes]]:
    """``path -> (format, bytes)`` for a small snapshot in every format the tests pull."""
    files: dict[str, tuple[str, bytes]] = {}
    shot = 1
    for n in range(shards):
        ids = list(range(shot, shot + shots_per_shard))
        shot += shots_per_shard
        files[f"webdataset/train-{n:06d}.tar"] = ("webdataset", shard(ids, payload, 1))
    files["webdataset/val-000000.tar"] = ("webdataset", shard([shot], payload, 1))
    files.update(folder_files(range(1, folder_shots + 1)))
    files["coco/train.json"] = ("coco", json.dumps({"images": [], "annotations": []}).encode())
    files["csv/shots.csv"] = ("csv", b"shot_id,label,split\n1,brick-2x4-red,train\n")
    return files


def folder_files(shot_ids: Any, payload: int = 3000) -> dict[str, tuple[str, bytes]]:
    """Folder-format images (content fixed per shot id, as the store's JPEGs) + metadata."""
    files: dict[str, tuple[str, bytes]] = {}
    lines = []
    for shot in shot_ids:
        index = shot % len(CLASSES)
        name = f"{index:03d}-{CLASSES[index]}/s{shot:08d}.jpg"
        files[f"folder/train/{name}"] = ("folder", noise(payload, 7_000_000 + shot))
        lines.append(json.dumps({"file_name": name, "label": CLASSES[index], "class": index}))
    files["folder/train/metadata.jsonl"] = ("folder", ("\n".join(lines) + "\n").encode())
    return files


def write_snapshot(
    data_dir: Path, snapshot_id: str, files: dict[str, tuple[str, bytes]], store: Any = None
) -> dict[str, Any]:
    """Write the folder ``<data_dir>/snapshots/<id>/`` (and its row when ``store`` is given)."""
    folder = Path(data_dir) / "snapshots" / snapshot_id
    report = {"counts": {"train": len(files)}, "duplicates_across_splits": []}
    files = dict(files, **{"report.json": ("report", json.dumps(report).encode())})
    files["report.md"] = ("report", b"# Report\n")
    entries = []
    for path, (fmt, data) in sorted(files.items()):
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        entries.append({"path": path, "format": fmt, "sha256": sha, "size": len(data)})
    manifest = {
        "id": snapshot_id,
        "created_at": "2026-11-29T12:00:00Z",
        "software_version": "0.1.0",
        "filter": {},
        "rules": {
            "train": 0.7,
            "val": 0.15,
            "test": 0.15,
            "seed": 0,
            "group_by": "instance",
            "weaker": False,
        },
        "classes": [{"index": i, "label": label} for i, label in enumerate(CLASSES)],
        "counts": {"total": len(files), "by_split": {}, "by_class_split": {}},
        "formats": sorted({fmt for fmt, _ in files.values()} - {"report"}),
        "files": entries,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    if store is not None:
        store.record_snapshot(manifest, [], [])
    return manifest
