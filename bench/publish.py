"""Benchmark: publishing and reading a snapshot through partrig vs bare boto3, on a local moto.

Prints one JSON object as its last line:
``{"bench": "publish", "bytes", "publish_ratio", "read_ratio", "incremental_bytes_ratio", ...}``

- The snapshot is a real one: ``--shots`` incompressible JPEGs (valid files: a small real
  image whose APP15 segments carry random bytes, ``--shot-kb`` each) saved through the store,
  then ``create_snapshot`` in the WebDataset and folder formats (``--shard-mb`` shards).  A
  second snapshot adds 1 % new shots.  Both are written once under bench/out/publish/ and reused.
- The endpoint is moto's S3 server in its own process on loopback (``python -m moto.server``);
  each measured side gets a fresh bucket.
- ``publish_ratio`` = partrig's publish rate / a bare boto3 upload of the same files: one
  ``S3Transfer`` with the same ``TransferConfig`` (concurrency, part size) driven by a pool of
  the same number of threads.  partrig's side includes its sha256 check of every file before it
  leaves, the HEAD per object that makes publishing resumable, and the manifest written last.
- ``read_ratio`` = ``pull_published`` (download, sha256 of every file, one sync, renames) / the
  same ``S3Transfer.download_file`` calls with no checks, same pool, into an empty folder.
- ``incremental_bytes_ratio``: bytes uploaded when the second snapshot is published after the
  first, over that snapshot's size, on the folder format (its files are content-addressed: the
  contract's definition, as for ``pull``).  ``incremental_bytes_ratio_all_formats`` counts
  everything publish uploaded, WebDataset shards included: a shard is reused only when its
  members did not change, and appending shots rewrites the last shard of each split.

Figures are wall-clock on whatever else the machine runs; files are read once before timing so
neither side pays the disk's first read.  ``--repeat N`` runs N rounds, each on a fresh moto,
the sides taking turns going first, and keeps each side's best time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from capture.publish.objstore import MiB, ObjectStore, TransferSettings, make_client  # noqa: E402
from capture.publish.published import pull_published  # noqa: E402
from capture.publish.publisher import publish_snapshot  # noqa: E402
from capture.snapshots.build import create_snapshot, load_manifest, snapshot_dir  # noqa: E402
from capture.snapshots.filter import SnapshotFilter  # noqa: E402
from capture.snapshots.splits import SplitRules  # noqa: E402
from capture.store import DatasetStore, ShotRecord  # noqa: E402
from rig.config import Settings  # noqa: E402

OUT = REPO / "bench" / "out" / "publish"
ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


def jpeg_ish(rng: np.random.Generator, size: int) -> bytes:
    """A decodable JPEG of about ``size`` bytes whose bulk is random (incompressible)."""
    small = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=80)
    body = buf.getvalue()
    segments = []
    left = max(0, size - len(body))
    while left > 0:
        n = min(left, 65000)
        segments.append(b"\xff\xef" + (n + 2).to_bytes(2, "big") + rng.bytes(n))
        left -= n + 4
    return body[:2] + b"".join(segments) + body[2:]


def add_shots(store: DatasetStore, first: int, count: int, shot_bytes: int, tag: str) -> None:
    rng = np.random.default_rng(first)
    run = store.create_run(f"bench-{tag}", "", "{}", 0)
    batch: list[tuple[str, bytes, ShotRecord]] = []
    for i in range(first, first + count):
        label = f"part-{i % 8}"
        record = ShotRecord(
            label=label, instance_id=f"{label}-{i // 3}", path="", sha256="0" * 64, size=0,
            run_id=run, shot_index=i, pose="up", background_id=1, angle_cmd=0.0, width=64,
            height=48, format="jpeg", captured_at=f"2026-01-01T10:00:{i % 60:02d}Z",
        )  # fmt: skip
        batch.append((f"images/{run}/{i:06d}.jpg", jpeg_ish(rng, shot_bytes), record))
        if len(batch) == 100:
            store.save_shots(batch)
            batch = []
    if batch:
        store.save_shots(batch)


def make_snapshots(args: argparse.Namespace) -> Path:
    """snap-0001 (``--shots``) and snap-0002 (plus 1 % new shots), written once and reused."""
    data = OUT / "data"
    tag = f"{args.shots}x{args.shot_kb}k-{args.shard_mb}m"
    ready = OUT / "ready.txt"
    if ready.exists() and ready.read_text() == tag:
        return data
    shutil.rmtree(OUT, ignore_errors=True)
    settings = Settings()
    settings.snapshot.shard_bytes = args.shard_mb * MiB
    with DatasetStore.open(data) as store:
        add_shots(store, 0, args.shots, args.shot_kb * 1000, "base")
        create_snapshot(store, settings, SnapshotFilter(), SplitRules(seed=1),
                        formats=("webdataset", "folder"))  # fmt: skip
        add_shots(store, args.shots, max(1, args.shots // 100), args.shot_kb * 1000, "new")
        create_snapshot(store, settings, SnapshotFilter(), SplitRules(seed=1),
                        formats=("webdataset", "folder"))  # fmt: skip
    ready.write_text(tag)
    return data


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **ENV},
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, endpoint
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto did not start")


def warm(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(8 * MiB):
                pass


def bare_upload(settings: TransferSettings, bucket: str, files: list[tuple[Path, str]]) -> float:
    from boto3.s3.transfer import S3Transfer

    transfer = S3Transfer(make_client(settings), settings.transfer_config())
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        list(pool.map(lambda pk: transfer.upload_file(str(pk[0]), bucket, pk[1]), files))
    return time.monotonic() - started


def bare_download(settings: TransferSettings, bucket: str, keys: list[str], dest: Path) -> float:
    from boto3.s3.transfer import S3Transfer

    transfer = S3Transfer(make_client(settings), settings.transfer_config())
    dest.mkdir(parents=True)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        list(
            pool.map(
                lambda k: transfer.download_file(bucket, k, str(dest / k.replace("/", "_"))), keys
            )
        )
    return time.monotonic() - started


def measure_round(
    args: argparse.Namespace,
    data: Path,
    settings: TransferSettings,
    unique: dict[str, dict[str, Any]],
    times: dict[str, list[float]],
    partrig_first: bool,
) -> Any:
    """Upload and read back both ways on fresh buckets; then publish the 1 % newer snapshot."""
    folder = snapshot_dir(data, "snap-0001")
    make_client(settings).create_bucket(Bucket="bare")
    make_client(settings).create_bucket(Bucket="partrig")
    store = ObjectStore.connect("partrig", settings)
    dest = OUT / "read"

    def bare_up() -> None:
        pairs = [(folder / f["path"], f["path"]) for f in unique.values()]
        times["bare"].append(bare_upload(settings, "bare", pairs))

    def partrig_up() -> None:
        pub = publish_snapshot(data, "snap-0001", "s3://partrig", rig_id="bench",
                               settings=settings, store=store)  # fmt: skip
        times["pub"].append(pub.seconds)

    def bare_down() -> None:
        shutil.rmtree(dest, ignore_errors=True)
        keys = [f["path"] for f in unique.values()]
        times["bare_read"].append(bare_download(settings, "bare", keys, dest))
        shutil.rmtree(dest, ignore_errors=True)

    def partrig_down() -> None:
        shutil.rmtree(dest, ignore_errors=True)
        started = time.monotonic()
        pull_published("s3://partrig/bench/snap-0001", dest, settings, store=store)
        times["read"].append(time.monotonic() - started)
        shutil.rmtree(dest, ignore_errors=True)

    steps = [partrig_up, bare_up, partrig_down, bare_down] if partrig_first else [
        bare_up, partrig_up, bare_down, partrig_down]  # fmt: skip
    for step in steps:
        step()
    return publish_snapshot(data, "snap-0002", "s3://partrig", rig_id="bench",
                            settings=settings, store=store)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shots", type=int, default=1400)
    ap.add_argument("--shot-kb", type=int, default=400)
    ap.add_argument("--shard-mb", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--part-mb", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=1, help="rounds; the best of each side counts")
    args = ap.parse_args()

    data = make_snapshots(args)
    base, new = load_manifest(data, "snap-0001"), load_manifest(data, "snap-0002")
    folder = snapshot_dir(data, "snap-0001")
    files = base["files"]
    total = sum(f["size"] for f in files)
    result: dict[str, Any] = {"bench": "publish", "bytes": total, "files": len(files)}
    unique = {f["sha256"]: f for f in files}
    warm([folder / f["path"] for f in unique.values()])
    times: dict[str, list[float]] = {"bare": [], "pub": [], "bare_read": [], "read": []}
    for round_ in range(args.repeat):
        # NOTE: a fresh moto per round (its objects live in its memory), and the sides take
        # turns going first, so load from other processes hits both alike.
        proc, endpoint = start_moto()
        os.environ.update(ENV)
        settings = TransferSettings(endpoint, "", args.concurrency, args.part_mb * MiB)
        try:
            inc = measure_round(args, data, settings, unique, times, partrig_first=round_ % 2 == 1)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    bare_s, pub_s = min(times["bare"]), min(times["pub"])
    bare_read_s, read_s = min(times["bare_read"]), min(times["read"])
    old = {f["sha256"] for f in files}
    folder_new = [f for f in new["files"] if f["format"] == "folder"]
    folder_sent = sum(f["size"] for f in folder_new if f["sha256"] not in old)
    mb = total / 1e6
    result.update(
        concurrency=args.concurrency,
        part_mb=args.part_mb,
        shard_mb=args.shard_mb,
        new_shots=max(1, args.shots // 100),
        repeat=args.repeat,
        partrig_publish_MBps=round(mb / pub_s, 1),
        bare_upload_MBps=round(mb / bare_s, 1),
        publish_ratio=round(bare_s / pub_s, 3),
        partrig_read_MBps=round(mb / read_s, 1),
        bare_download_MBps=round(mb / bare_read_s, 1),
        read_ratio=round(bare_read_s / read_s, 3),
        incremental_bytes_ratio=round(folder_sent / sum(f["size"] for f in folder_new), 4),
        incremental_bytes_ratio_all_formats=round(inc.uploaded_bytes / inc.total_bytes, 4),
        incremental_uploaded_bytes=inc.uploaded_bytes,
        cpus=os.cpu_count(),
        load_1min=round(os.getloadavg()[0], 2),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
