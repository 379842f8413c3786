"""Benchmark the dataset store: the capture writer's durable insert path, and deep-page queries.

What is measured (contracts.md, "Benchmark definitions", ``store``):

- ``insert_ratio``: shots per second through ``Shots.save_shots``, the function the capture
  writer (``capture.runs.pipeline.ShotWriter``) calls for each batch of shots it has encoded,
  divided by a bare loop over the same work.  Each shot is three files of fixed sizes (JPEG
  2 KB, mask 1 KB, thumbnail 1 KB) in the writer's own folders (``images/<run>/``,
  ``masks/<run>/``, ``thumbs/<run>/``) and one row.  The product path writes each file to a
  temporary name, makes the batch durable (one ``syncfs``, or an fsync per file where syncfs
  cannot be relied on), renames, fsyncs each folder and only then commits the batch's rows in
  one transaction (``synchronous=FULL``).  The bare loop creates the same files under their
  final names in the same batches, syncs them with one ``syncfs`` per batch, and inserts the
  rows with one ``executemany`` per batch into a copy of the same schema (WAL,
  ``synchronous=FULL``).  Both are counted after the commit.  The two alternate, ``--repeats``
  times each, on an ext4 file system this script creates (``mkfs.ext4``) and loop-mounts, so
  the figure does not depend on the host's file system; it needs root and is skipped with a
  message otherwise.  Reported: the median ratio, every run's ratio, and the load average.
- ``query_p99_ms``: random DEEP pages of 100 rows filtered by label and background, newest
  first, each starting at a random keyset cursor anywhere in the filtered set, on a store of
  ``--rows`` rows (built with bulk inserts, not through the durable path).

Usage: ``sudo python bench/store.py [--rows 1000000] [--shots 1000] [--batch 1] [--repeats 5]``.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from capture.store import DatasetStore, ShotFiles, ShotRecord
from capture.store.files import REAL_FS
from capture.store.records import encode_cursor
from capture.store.shots import _INSERT_SQL, _shot_values

LABELS = [f"{3000 + i}" for i in range(40)]
BACKGROUNDS = list(range(1, 11))
START = datetime(2025, 1, 1, tzinfo=UTC)
#: The contract's fixed file sizes per shot: JPEG, mask, thumbnail.
SIZES = {"image": 2000, "mask": 1000, "thumb": 1000}
GOAL_RATIO = 0.8


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
        size=SIZES["image"],
        width=4056,
        height=3040,
        format="jpeg",
        bbox_x=10,
        bbox_y=20,
        bbox_w=300,
        bbox_h=200,
        captured_at=at,
        source="capture",
    )


def _paths(run_id: int, index: int) -> tuple[str, str, str]:
    """The writer's own names (capture.runs.pipeline.shot_paths)."""
    stem = f"{run_id}/{index:06d}"
    return f"images/{stem}.jpg", f"masks/{stem}.png", f"thumbs/{stem}.jpg"


# --- the loop-mounted ext4 ---------------------------------------------------------------------


@contextmanager
def loop_ext4(where: Path, size_mb: int) -> Iterator[Path]:
    """A fresh ext4 of ``size_mb`` in an image file under ``where``, mounted; removed after."""
    work = Path(tempfile.mkdtemp(prefix="partrig-bench-ext4-", dir=where))
    image, mount = work / "fs.img", work / "mnt"
    mount.mkdir()
    mounted = False
    try:
        with open(image, "wb") as f:
            f.truncate(size_mb << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
        mounted = True
        yield mount
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def why_no_loop_mount() -> str | None:
    """Why this process cannot loop-mount an ext4, or None when it can."""
    if os.geteuid() != 0:
        return "insert_ratio needs root to loop-mount an ext4 (run it with sudo)"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"insert_ratio needs {tool} (apt install e2fsprogs mount)"
    return None


# --- the two insert loops ----------------------------------------------------------------------


class ProductLoop:
    """The capture writer's path: a ``store.shot_batches()`` stream, ``batch`` shots per add.

    As the writer does when frames are queued, each batch's folder sync is the next batch's
    data sync; the segment ends with ``flush`` (the writer's idle step), so every shot is
    committed when the time is taken.  ``flush_each`` flushes every batch at once instead,
    as the writer does when it keeps up with the rig (one more sync per batch).
    """

    def __init__(
        self, store: DatasetStore, run_id: int, batch: int, seed: int, *, flush_each: bool
    ) -> None:
        self.store, self.run_id, self.batch = store, run_id, batch
        self.flush_each = flush_each
        self.rng = random.Random(seed)
        self.blobs = {k: os.urandom(n) for k, n in SIZES.items()}
        self.next = 0

    def segment(self, shots: int) -> float:
        """Store ``shots`` more shots; the seconds it took, counted after the last commit."""
        run_id, blobs = self.run_id, self.blobs
        first, self.next = self.next, self.next + shots
        batches = self.store.shot_batches()
        stored = 0
        t0 = time.perf_counter()
        for start in range(first, self.next, self.batch):
            items = []
            for i in range(start, min(self.next, start + self.batch)):
                image, mask, thumb = _paths(run_id, i)
                record = _record(run_id, i, START + timedelta(milliseconds=i), self.rng, "")
                items.append(
                    ShotFiles(
                        record,
                        (image, blobs["image"]),
                        mask=(mask, blobs["mask"]),
                        thumb=(thumb, blobs["thumb"]),
                    )
                )
            stored += len(batches.add(items))
            if self.flush_each:
                stored += len(batches.flush())
        stored += len(batches.flush())
        elapsed = time.perf_counter() - t0
        assert stored == shots, f"{stored} of {shots} shots committed"
        return elapsed


def _syncfs() -> Callable[[int], int]:
    syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    syncfs.argtypes = [ctypes.c_int]
    return syncfs


class BareLoop:
    """The bare equivalent: files under their final names, one syncfs, one executemany."""

    def __init__(
        self, data: Path, conn: sqlite3.Connection, run_id: int, batch: int, seed: int
    ) -> None:
        self.data, self.conn, self.run_id, self.batch = data, conn, run_id, batch
        self.rng = random.Random(seed)
        self.blobs = {k: os.urandom(n) for k, n in SIZES.items()}
        self.next = 0
        for folder in ("images", "masks", "thumbs"):
            (data / folder / str(run_id)).mkdir(parents=True, exist_ok=True)
        self.syncfs = _syncfs()

    def segment(self, shots: int) -> float:
        data, conn, run_id = self.data, self.conn, self.run_id
        first, self.next = self.next, self.next + shots
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        anchor = os.open(data, os.O_RDONLY)
        try:
            t0 = time.perf_counter()
            for start in range(first, self.next, self.batch):
                rows = []
                for i in range(start, min(self.next, start + self.batch)):
                    names = _paths(run_id, i)
                    for name, blob in zip(names, self.blobs.values(), strict=True):
                        fd = os.open(data / name, flags, 0o644)
                        os.write(fd, blob)
                        os.close(fd)
                    at = START + timedelta(milliseconds=i)
                    rows.append(_shot_values(_record(run_id, i, at, self.rng, names[0])))
                if self.syncfs(anchor) != 0:
                    raise OSError(ctypes.get_errno(), "syncfs failed")
                conn.execute("BEGIN")
                conn.executemany(_INSERT_SQL, rows)
                conn.execute("COMMIT")
            return time.perf_counter() - t0
        finally:
            os.close(anchor)


def _bare_db(data: Path) -> sqlite3.Connection:
    """A store's schema and catalogue, opened bare: WAL, synchronous=FULL, no foreign keys."""
    with DatasetStore.open(data) as store, store.transaction() as conn:
        for label in LABELS:
            conn.execute("INSERT OR IGNORE INTO parts(label) VALUES (?)", (label,))
            for k in range(4):
                conn.execute(
                    "INSERT OR IGNORE INTO part_instances(instance_id, label, created_at)"
                    " VALUES (?, ?, '')",
                    (f"{label}-{k}", label),
                )
        for bg in BACKGROUNDS:
            conn.execute("INSERT OR IGNORE INTO backgrounds(sheet_id, name) VALUES (?, ?)",
                         (bg, f"bg{bg}"))  # fmt: skip
    conn = sqlite3.connect(data / "partrig.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def insert_ratio(
    mount: Path, shots: int, batch: int, repeats: int, segment: int, *, flush_each: bool
) -> dict[str, object]:
    """``repeats`` runs; in each, the two loops alternate every ``segment`` shots.

    Why so finely: the machine is shared, and its load swings within seconds; alternating
    short segments (the first of each pair taking turns) puts both loops under the same load,
    and a run's ratio is the bare loop's total time over the product path's.
    """
    product_dir, bare_dir = mount / "product", mount / "bare"
    runs: list[dict[str, float]] = []
    with DatasetStore.open(product_dir) as store:
        conn = _bare_db(bare_dir)
        try:
            for rep in range(repeats):
                run_p = store.create_run(f"p{rep}", "", "{}", shots)
                product = ProductLoop(store, run_p, batch, rep, flush_each=flush_each)
                run_b = conn.execute(
                    "INSERT INTO runs(name, plan_toml, plan_json, shots_total, created_at)"
                    " VALUES ('bare', '', '{}', ?, '') RETURNING id",
                    (shots,),
                ).fetchone()[0]
                bare = BareLoop(bare_dir, conn, int(run_b), batch, rep)
                t_product = t_bare = 0.0
                for n, first in enumerate(range(0, shots, segment)):
                    size = min(segment, shots - first)
                    if n % 2 == 0:
                        t_product += product.segment(size)
                        t_bare += bare.segment(size)
                    else:
                        t_bare += bare.segment(size)
                        t_product += product.segment(size)
                runs.append({"product": shots / t_product, "bare": shots / t_bare})
                runs[-1]["ratio"] = runs[-1]["product"] / runs[-1]["bare"]
                print(
                    f"  insert {rep + 1}/{repeats}: product {runs[-1]['product']:.0f}/s"
                    f" bare {runs[-1]['bare']:.0f}/s ratio {runs[-1]['ratio']:.3f}",
                    file=sys.stderr,
                    flush=True,
                )
            assert store.scalar("SELECT COUNT(*) FROM shots") == shots * repeats
            assert store.check(verify_checksums=False).ok, "the product path left a problem"
        finally:
            conn.close()
    return {
        "insert_ratio": round(statistics.median(r["ratio"] for r in runs), 3),
        "insert_shots_per_s": round(statistics.median(r["product"] for r in runs), 1),
        "bare_shots_per_s": round(statistics.median(r["bare"] for r in runs), 1),
        "insert_ratios": [round(r["ratio"], 3) for r in runs],
    }


# --- queries -----------------------------------------------------------------------------------


def bulk_rows(store: DatasetStore, rows: int, rng: random.Random, batch: int = 50_000) -> float:
    """Rows per second of batched row inserts (no files): how the big store is built."""
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
                        "INSERT OR IGNORE INTO backgrounds(sheet_id, name) VALUES (?, ?)",
                        (bg, f"bg{bg}"),
                    )
            conn.executemany(_INSERT_SQL, values)
        done += len(values)
        print(f"  bulk {done}/{rows}", file=sys.stderr, flush=True)
    return rows / (time.perf_counter() - t0)


def deep_page_p99(
    store: DatasetStore, queries: int, rng: random.Random
) -> tuple[float, float, float]:
    """p50/p99/max ms of one 100-row page, label + background filter, from random deep cursors.

    Each cursor is taken at a random existing shot (anywhere in the store), so the page starts
    deep inside the filtered set, as a browser paging far back would.
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
        page = store.shots.query_shots(label=label, background=bg, limit=100, cursor=cursor)
        times.append((time.perf_counter() - t0) * 1000)
        full_pages += len(page.items) == 100
    times.sort()
    print(f"  {full_pages}/{queries} pages were full", file=sys.stderr)
    return times[len(times) // 2], times[int(len(times) * 0.99) - 1], times[-1]


def query_figures(rows: int, queries: int, where: Path | None) -> dict[str, object]:
    rng = random.Random(42)
    tmp = tempfile.mkdtemp(prefix="partrig-bench-store-", dir=where)
    try:
        with DatasetStore.open(Path(tmp)) as store:
            t0 = time.perf_counter()
            batched = bulk_rows(store, rows, rng)
            build_s = time.perf_counter() - t0
            store.db.execute("ANALYZE")
            count = store.scalar("SELECT COUNT(*) FROM shots")
            p50, p99, worst = deep_page_p99(store, queries, rng)
            db_mb = sum(p.stat().st_size for p in store.db_files()) / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "rows": count,
        "query_p99_ms": round(p99, 3),
        "query_p50_ms": round(p50, 3),
        "query_max_ms": round(worst, 3),
        "batched_rows_per_s": round(batched, 1),
        "build_s": round(build_s, 1),
        "db_mb": round(db_mb, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows for the query figures")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--shots", type=int, default=400, help="shots per loop and run")
    ap.add_argument(
        "--batch", type=int, default=1, help="shots per save_shots call (the writer's batch)"
    )
    ap.add_argument("--repeats", type=int, default=5, help="runs; the median ratio is reported")
    ap.add_argument("--segment", type=int, default=20, help="shots per alternating segment")
    ap.add_argument("--image-mb", type=int, default=1024, help="size of the loop-mounted ext4")
    ap.add_argument(
        "--image-dir", type=Path, default=None, help="where the ext4 image file lives (a temp dir)"
    )
    ap.add_argument("--skip-queries", action="store_true", help="only the insert figures")
    ap.add_argument(
        "--flush-each",
        action="store_true",
        help="also measure every batch flushed at once (flushed_insert_ratio)",
    )
    args = ap.parse_args()
    result: dict[str, object] = {"bench": "store", "load_avg_before": os.getloadavg()[0]}
    why_not = why_no_loop_mount()
    if why_not is not None:
        print(f"SKIPPED insert_ratio: {why_not}", file=sys.stderr)
        result.update(insert_ratio=None, insert_skipped=why_not)
    else:
        where = args.image_dir or Path(tempfile.gettempdir())
        with loop_ext4(where, args.image_mb) as mount:
            result.update(
                insert_ratio(
                    mount, args.shots, args.batch, args.repeats, args.segment, flush_each=False
                )
            )
        if args.flush_each:
            with loop_ext4(where, args.image_mb) as mount:
                each = insert_ratio(
                    mount, args.shots, args.batch, args.repeats, args.segment, flush_each=True
                )
            result.update({f"flushed_{k}": v for k, v in each.items()})
        sync = "syncfs per batch" if REAL_FS.can_sync_filesystem() else "fsync per file"
        result.update(
            insert_batch_shots=args.batch,
            insert_shots=args.shots,
            insert_repeats=args.repeats,
            insert_sync=sync,
            insert_fs=f"ext4 in a loop-mounted image under {where}",
        )
    if not args.skip_queries:
        result.update(query_figures(args.rows, args.queries, args.image_dir))
    result["load_avg_after"] = os.getloadavg()[0]
    result["goals"] = {"insert_ratio": GOAL_RATIO, "query_p99_ms": 20}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
