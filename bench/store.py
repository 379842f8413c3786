"""Benchmark the dataset store at 1,000,000 shots: durable insert rate and deep-page query p99.

What is measured (contracts.md, "Benchmark definitions", ``store``):

- ``insert_rows_per_s``: the durable write path ``DatasetStore.save_shots``: every shot's small
  file is written to a temporary name, made durable (one ``syncfs`` for the whole batch, or an
  fsync per file where syncfs cannot be relied on: see ``insert_sync``), renamed, and its
  folder fsynced, BEFORE any row names it; rows commit ``--group`` at a time
  (``synchronous=FULL``).  Measured on ``--sample`` shots.
- ``insert_cpu_us_per_row``: this process's CPU time per row on that path; on a shared machine
  the rate swings with the load, this much less.
- ``per_file_fsync_rows_per_s``: the same batches with one fsync per file instead of the syncfs
  (the previous design and the fallback), measured right after it for comparison.
- ``single_shot_rows_per_s``: one shot at a time and one transaction per shot (``save_shot``),
  as the capture engine writes; bound by the disk's fsync latency.
- ``batched_rows_per_s``: bulk row inserts only (no files), used to build the big store.
- ``query_p99_ms``: random DEEP pages of 100 rows filtered by label and background, newest
  first, each starting at a random keyset cursor anywhere in the filtered set.

Usage: ``python bench/store.py [--rows 1000000] [--sample 4096] [--queries 2000] [--data DIR]``.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from capture.store import DatasetStore, ShotRecord
from capture.store.files import REAL_FS, FileSystem
from capture.store.records import encode_cursor
from capture.store.shots import _INSERT_SQL, _shot_values

LABELS = [f"{3000 + i}" for i in range(40)]
BACKGROUNDS = list(range(1, 11))
START = datetime(2025, 1, 1, tzinfo=UTC)


def _record(run_id: int, index: int, at: datetime, rng: random.Random, path: str) -> ShotRecord:
    label = rng.choice(LABELS)
    return ShotRecord(
        label=label,
        instance_id=f"{label}-{rng.randrange(4)}",
        run_id=run_id,
        shot_index=index,
        pose="flat",
        background_id=rng.choice(BACKGROUNDS),
        angle_cmd=float(index % 36 * 10),
        angle_measured=float(index % 36 * 10),
        light_level=1.0,
        exposure_us=9000,
        analogue_gain=1.0,
        colour_gains=[1.8, 1.5],
        colour_matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        path=path,
        sha256="0" * 64,
        size=2048,
        width=4056,
        height=3040,
        format="jpeg",
        mask_path=None,
        bbox_x=10,
        bbox_y=20,
        bbox_w=300,
        bbox_h=200,
        captured_at=at,
        source="capture",
    )


def fsync_ms(directory: Path, n: int = 200) -> float:
    """The disk's cost of one small file write + fsync + directory fsync, for context."""
    d = os.open(directory, os.O_RDONLY)
    t0 = time.perf_counter()
    for i in range(n):
        fd = os.open(directory / f"probe{i}", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"x" * 2048)
        os.fsync(fd)
        os.close(fd)
        os.fsync(d)
    elapsed = time.perf_counter() - t0
    os.close(d)
    for i in range(n):
        os.unlink(directory / f"probe{i}")
    return elapsed / n * 1000


def create_us(directory: Path, n: int = 500) -> float:
    """The file system's CPU-and-wait cost of creating one empty file, for context.

    NOTE: every shot needs a new file (inode), whatever the sync strategy; on the development
    VM's root file system this alone costs 0.2-0.7 ms, against ~20 µs on a fresh ext4.
    """
    probe = directory / "create-probe"
    probe.mkdir()
    t0 = time.perf_counter()
    for i in range(n):
        os.close(os.open(probe / f"{i:06d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    elapsed = time.perf_counter() - t0
    shutil.rmtree(probe)
    return elapsed / n * 1e6


def durable_inserts(store: DatasetStore, run_id: int, n: int, rng: random.Random) -> float:
    """Rows per second through save_shot: file durable, then one transaction per row."""
    payload = os.urandom(2048)
    t0 = time.perf_counter()
    for i in range(n):
        rec = _record(run_id, i, START + timedelta(milliseconds=i), rng, "")
        store.save_shot(f"images/{run_id}/{i:06d}.jpg", payload, rec)
    return n / (time.perf_counter() - t0)


class PerFileFsync(FileSystem):
    """The fallback path: an fsync per file, as where syncfs cannot be relied on."""

    def can_sync_filesystem(self) -> bool:
        return False


def batch_inserts(
    store: DatasetStore, run_id: int, n: int, group: int, workers: int, rng: random.Random
) -> tuple[float, float]:
    """Rows per second and CPU µs per row through save_shots, ``group`` shots per batch."""
    payload = os.urandom(2048)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for start in range(0, n, group):
        items = []
        for i in range(start, min(n, start + group)):
            rec = _record(run_id, i, START + timedelta(milliseconds=i), rng, "")
            items.append((f"images/{run_id}/{i:06d}.jpg", payload, rec))
        store.save_shots(items, workers=workers)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return n / wall, cpu / n * 1e6


def bulk_rows(store: DatasetStore, rows: int, rng: random.Random, batch: int = 50_000) -> float:
    """Rows per second of batched row inserts (no files): how the 1M-row store is built."""
    per_run = 10_000
    runs = [store.create_run(f"bulk {i}", "", "{}", per_run) for i in range(-(-rows // per_run))]
    t0 = time.perf_counter()
    at = START + timedelta(days=1)
    done = 0
    while done < rows:
        values = []
        for i in range(done, min(rows, done + batch)):
            at += timedelta(microseconds=rng.randrange(1, 400_000))
            rec = _record(runs[i // per_run], i % per_run, at, rng, f"images/bulk/{i:07d}.jpg")
            values.append(_shot_values(rec))
        with store.transaction() as conn:
            if done == 0:
                for label in LABELS:
                    for k in range(4):
                        conn.execute("INSERT OR IGNORE INTO parts(label) VALUES (?)", (label,))
                        conn.execute(
                            "INSERT OR IGNORE INTO part_instances(instance_id, label, created_at)"
                            " VALUES (?, ?, '')",
                            (f"{label}-{k}", label),
                        )
                for bg in BACKGROUNDS:
                    conn.execute(
                        "INSERT OR IGNORE INTO backgrounds VALUES (?, ?, 'plain')", (bg, f"bg{bg}")
                    )
            conn.executemany(_INSERT_SQL, values)
        done += len(values)
        print(f"  bulk {done}/{rows}", file=sys.stderr, flush=True)
    return rows / (time.perf_counter() - t0)


def deep_page_p99(
    store: DatasetStore, queries: int, rng: random.Random
) -> tuple[float, float, float]:
    """p50/p99/max ms of one 100-row page, label + background filter, from random deep cursors.

    Each cursor is taken at a random existing shot (anywhere in the million), so the page
    starts deep inside the filtered set, as a browser paging far back would.
    """
    lo, hi = store.db.execute("SELECT MIN(id), MAX(id) FROM shots").fetchone()
    times = []
    full_pages = 0
    for _ in range(queries):
        label, bg = rng.choice(LABELS), rng.choice(BACKGROUNDS)
        at, sid = store.db.execute(
            "SELECT captured_at, id FROM shots WHERE id >= ? AND label = ? AND background_id = ?"
            " ORDER BY id LIMIT 1",
            (rng.randint(lo, hi), label, bg),
        ).fetchone() or (None, None)
        cursor = encode_cursor(at, sid) if at else None
        t0 = time.perf_counter()
        page = store.query_shots(label=label, background=bg, limit=100, cursor=cursor)
        times.append((time.perf_counter() - t0) * 1000)
        full_pages += len(page.items) == 100
    times.sort()
    print(f"  {full_pages}/{queries} pages were full", file=sys.stderr)
    return times[len(times) // 2], times[int(len(times) * 0.99) - 1], times[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=4096, help="shots on each durable path")
    ap.add_argument("--group", type=int, default=256, help="shots per save_shots batch")
    ap.add_argument("--workers", type=int, default=1, help="file-writer threads in save_shots")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--data", type=Path, default=None, help="directory (default: a temporary one)")
    args = ap.parse_args()
    rng = random.Random(42)
    tmp = None if args.data else tempfile.mkdtemp(prefix="partrig-bench-store-")
    data = args.data or Path(tmp)  # type: ignore[arg-type]
    single_n = min(args.sample, 1000)
    try:
        with DatasetStore.open(data) as store:
            disk_ms = fsync_ms(store.data_dir)
            new_file_us = create_us(store.data_dir)
            run_a = store.create_run("durable", "", "{}", single_n)
            per_shot = durable_inserts(store, run_a, single_n, rng)
            run_b = store.create_run("batched", "", "{}", args.sample)
            batched_files, cpu_us = batch_inserts(
                store, run_b, args.sample, args.group, args.workers, rng
            )
            store.fs = PerFileFsync()
            run_c = store.create_run("per-file fsync", "", "{}", args.sample)
            per_file, _ = batch_inserts(store, run_c, args.sample, args.group, 8, rng)
            store.fs = REAL_FS
            t0 = time.perf_counter()
            batched = bulk_rows(store, max(0, args.rows - single_n - 2 * args.sample), rng)
            build_s = time.perf_counter() - t0
            store.db.execute("ANALYZE")
            rows = store.scalar("SELECT COUNT(*) FROM shots")
            p50, p99, worst = deep_page_p99(store, args.queries, rng)
            db_mb = sum(p.stat().st_size for p in store.db_files()) / 1e6
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    sync = "syncfs per batch" if REAL_FS.can_sync_filesystem() else "fsync per file"
    result = {
        "bench": "store",
        "rows": rows,
        "insert_rows_per_s": round(batched_files, 1),
        "insert_sync": sync,
        "insert_path": (
            f"save_shots: {args.group} 2 KiB files per batch, written to temporary names, made"
            f" durable ({sync}), renamed, folder fsynced, then the {args.group} rows in one"
            " commit (synchronous=FULL)"
        ),
        "insert_cpu_us_per_row": round(cpu_us, 1),
        "per_file_fsync_rows_per_s": round(per_file, 1),
        "single_shot_rows_per_s": round(per_shot, 1),
        "batched_rows_per_s": round(batched, 1),
        "query_p99_ms": round(p99, 3),
        "query_p50_ms": round(p50, 3),
        "query_max_ms": round(worst, 3),
        "file_fsync_ms": round(disk_ms, 3),
        "file_create_us": round(new_file_us, 1),
        "durable_sample": args.sample,
        "single_sample": single_n,
        "group": args.group,
        "workers": args.workers,
        "build_s": round(build_s, 1),
        "db_mb": round(db_mb, 1),
        "goals": {"query_p99_ms": 20, "insert_rows_per_s": 5000},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
