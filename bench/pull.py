"""Benchmark: pulling a snapshot through partrig's server and client vs curl against nginx.

Prints one JSON object as its last line:
``{"bench": "pull", "bytes", "partrig_MBps", "nginx_MBps", "ratio", "incremental_bytes_ratio",
...}``

- ``partrig_MBps``: ``partrig serve`` (uvicorn, one worker, a trainer key) on loopback, pulled
  by :func:`capture.pull.client.pull` with ``--workers`` parallel downloads: every file streamed to
  ``.part``, sha256-checked, fsynced, renamed.  ``partrig_behind_nginx_MBps`` is the same pull
  through the shipped nginx site (web/nginx_conf.py, ``web.accel_redirect`` set): partrig checks
  the key, the rate and the manifest, nginx sends the bytes (docs/deployment.md).  Each side
  runs ``--repeat`` times into an empty folder, alternating (partrig, nginx, partrig behind
  nginx, nginx, ...) so that load from other processes hits all sides alike, and every figure
  is the MEDIAN of its runs, never the best; ``runs_s`` lists every run and ``loadavg_1m`` the
  machine's load average before and after.
- ``nginx_MBps``: plain nginx (``sendfile on``) serving the same shard folder, fetched by one
  curl process per file with the same parallelism, then every file fsynced, so both sides stop
  the clock when the bytes are durable.  ``nginx_nosync_MBps`` is the same without the fsyncs.
  ``nginx_verified_MBps`` adds a sha256 check of every file (what partrig's client does before
  it renames one), and ``ratio_verified`` compares against that.
- ``ratio`` = partrig / nginx; ``ratio_verified`` = partrig / nginx + sha256 (the headline,
  goal >= 0.9); ``ratio_behind_nginx`` = partrig behind nginx / nginx (goal >= 0.9), and
  ``ratio_behind_nginx_verified`` the same against nginx + sha256.
- ``incremental_bytes_ratio``: on the folder format (content-addressed), a snapshot and a newer
  one with 1 % new shots are pulled into one folder; bytes fetched for the second / its size
  (goal <= 0.02).

The synthetic snapshots (incompressible WebDataset shards of ``--size-gb``, and two folder
snapshots) follow the on-disk contract and are written once under bench/out/pull/ and reused.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from capture.pull.client import pull  # noqa: E402
from capture.store.files import sha256_file  # noqa: E402
from web.nginx_conf import ACCEL_PREFIX, site_config, standalone_config  # noqa: E402

KEY = "bench-trainer-key-0123456789"
SHARDS_ID, OLD_ID, NEW_ID = "snap-0001", "snap-0002", "snap-0003"
SHOT_BYTES = 400_000
FOLDER_SHOTS, FOLDER_SHOT_BYTES = 1000, 100_000
#: The timed sides, in the JSON's names, and what each measures.
SIDES = {
    "direct": "partrig client <- partrig serve",
    "front": "partrig client <- nginx (X-Accel-Redirect) <- partrig serve",
    "nosync": "curl <- nginx, fetched",
    "nginx": "curl <- nginx, fetched + fsynced",
    "verified": "curl <- nginx, fetched + fsynced + sha256-checked",
}


def write_manifest(folder: Path, snapshot_id: str, entries: list[dict[str, Any]], tag: str) -> None:
    report = folder / "report.json"
    report.write_text(json.dumps({"bench": tag}), encoding="utf-8")
    entries = [
        *entries,
        {
            "path": "report.json",
            "format": "report",
            "sha256": sha256_file(report),
            "size": report.stat().st_size,
        },
    ]
    manifest = {
        "id": snapshot_id,
        "created_at": "2026-11-29T00:00:00Z",
        "software_version": "bench",
        "filter": {"bench": tag},
        "rules": {
            "train": 1.0,
            "val": 0.0,
            "test": 0.0,
            "seed": 0,
            "group_by": "instance",
            "weaker": False,
        },
        "classes": [{"index": 0, "label": "noise"}],
        "counts": {"total": len(entries), "by_split": {}, "by_class_split": {}},
        "formats": sorted({e["format"] for e in entries} - {"report"}),
        "files": entries,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def is_ready(folder: Path, tag: str) -> bool:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return manifest["filter"].get("bench") == tag and all(
        (folder / e["path"]).stat().st_size == e["size"] for e in manifest["files"]
    )


def make_shards(data: Path, size_gb: float, shard_mb: int) -> None:
    """Incompressible WebDataset shards totalling ``size_gb`` (written once, then reused)."""
    folder = data / "snapshots" / SHARDS_ID
    tag = f"shards-{size_gb}-{shard_mb}"
    if is_ready(folder, tag):
        return
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "webdataset").mkdir(parents=True)
    print(f"writing {size_gb} GB of shards under {folder} (once)", file=sys.stderr)
    rng = np.random.default_rng(1)
    total, shot, n, entries = int(size_gb * 1e9), 1, 0, []
    while sum(e["size"] for e in entries) < total:
        path = folder / "webdataset" / f"train-{n:06d}.tar"
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            while (
                tar.offset < shard_mb * 1_000_000
                and tar.offset + sum(e["size"] for e in entries) < total
            ):
                key = f"s{shot:08d}"
                for name, blob in ((f"{key}.jpg", rng.bytes(SHOT_BYTES)), (f"{key}.cls", b"0")):
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime = len(blob), 0
                    tar.addfile(info, io.BytesIO(blob))
                shot += 1
        entries.append(
            {
                "path": f"webdataset/{path.name}",
                "format": "webdataset",
                "sha256": sha256_file(path),
                "size": path.stat().st_size,
            }
        )
        n += 1
    write_manifest(folder, SHARDS_ID, entries, tag)


def make_folder(data: Path, snapshot_id: str, shots: int) -> None:
    """A folder-format snapshot; a shot's image bytes depend only on its id (as in the store)."""
    folder = data / "snapshots" / snapshot_id
    tag = f"folder-{shots}"
    if is_ready(folder, tag):
        return
    shutil.rmtree(folder, ignore_errors=True)
    split = folder / "folder" / "train"
    (split / "000-noise").mkdir(parents=True)
    entries, lines = [], []
    for shot in range(1, shots + 1):
        name = f"000-noise/s{shot:08d}.jpg"
        blob = np.random.default_rng(10_000 + shot).bytes(FOLDER_SHOT_BYTES)
        (split / name).write_bytes(blob)
        entries.append(
            {
                "path": f"folder/train/{name}",
                "format": "folder",
                "sha256": hashlib.sha256(blob).hexdigest(),
                "size": len(blob),
            }
        )
        lines.append(json.dumps({"file_name": name, "label": "noise", "class": 0, "shot": shot}))
    meta = split / "metadata.jsonl"
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    entries.append(
        {
            "path": "folder/train/metadata.jsonl",
            "format": "folder",
            "sha256": sha256_file(meta),
            "size": meta.stat().st_size,
        }
    )
    write_manifest(folder, snapshot_id, entries, tag)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def start_partrig(data: Path, tmp: Path, accel: str = "") -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = tmp / f"partrig{'-accel' if accel else ''}.toml"
    config.write_text(
        f'[data]\ndir = "{data}"\n[web]\naccel_redirect = "{accel}"\n'
        f'[auth]\ntrainer_keys = ["{KEY}"]\n'
        f'rate_limit_per_min = 100000\nsession_secret = "{"b" * 32}"\n',
        encoding="utf-8",
    )
    cmd = [
        sys.executable,
        "-m",
        "web.cli",
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log = open(tmp / f"{config.stem}.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/health", proc, "partrig serve")
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def start_nginx(
    root: Path, tmp: Path, workers: int, front: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Plain nginx serving ``root`` (``front=None``), or the shipped partrig site config
    (web/nginx_conf.py) in front of the partrig server at ``front`` (host:port)."""
    port = free_port()
    name = "front" if front else "plain"
    if front:
        server = site_config(
            listen=f"127.0.0.1:{port}", upstream=front, snapshots_dir=str(root / "snapshots")
        )
    else:
        server = f"server {{ listen 127.0.0.1:{port}; root {root}; location / {{ }} }}"
    conf = tmp / f"nginx-{name}.conf"
    conf.write_text(standalone_config(server, tmp, f"nginx-{name}"), encoding="utf-8")
    proc = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(tmp), "-e", str(tmp / f"{name}-e.log")]
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/health" if front else f"{url}/manifest.json", proc, "nginx")
    return proc, url


def curl_all(
    url: str, files: list[dict[str, Any]], dest: Path, workers: int
) -> tuple[float, float, float]:
    """Fetch every file with one curl each, ``workers`` at a time.

    Returns (seconds fetched, + fsynced, + sha256-verified): the last is what a trainer who
    checks the manifest's sums (``sha256sum -c``) waits for, the guarantee partrig's client
    gives before it renames a file.
    """

    def one(entry: dict[str, Any]) -> None:
        out = dest / entry["path"]
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["curl", "-sf", "-o", str(out), f"{url}/{entry['path']}"], check=True)

    def fsync(entry: dict[str, Any]) -> None:
        fd = os.open(dest / entry["path"], os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def verify(entry: dict[str, Any]) -> None:
        assert sha256_file(dest / entry["path"]) == entry["sha256"], entry["path"]

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, files))
        fetched = time.perf_counter() - start
        list(pool.map(fsync, files))
        durable = time.perf_counter() - start
        list(pool.map(verify, files))
    verified = time.perf_counter() - start
    for entry in files:
        assert (dest / entry["path"]).stat().st_size == entry["size"], entry["path"]
    return fetched, durable, verified


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def with_children(pid: int) -> list[int]:
    """``pid`` and its direct children (nginx's workers), from /proc; ``[pid]`` elsewhere."""
    pids = [pid]
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(entry.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(entry.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (0 where /proc is missing)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class CpuMeter:
    """CPU seconds of one side of a run: this process (the client or the fsync/sha256 threads),
    the curl processes it waited for, and the servers' processes."""

    def __init__(self, servers: list[int]) -> None:
        self.servers = servers
        self.start = self._now()

    def _now(self) -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + cpu_seconds(self.servers)

    def used(self) -> float:
        return self._now() - self.start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=2.0, help="size of the shard snapshot")
    ap.add_argument("--shard-mb", type=int, default=128, help="target shard size")
    ap.add_argument("--workers", type=int, default=8, help="parallel downloads, both sides")
    ap.add_argument("--repeat", type=int, default=5, help="runs per side; the median counts")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "pull")
    args = ap.parse_args()

    data = args.out.resolve() / "data"
    make_shards(data, args.size_gb, args.shard_mb)
    make_folder(data, OLD_ID, FOLDER_SHOTS)
    make_folder(data, NEW_ID, FOLDER_SHOTS + FOLDER_SHOTS // 100)
    # NOTE: one `partrig serve` owns a data folder (rig/owner.py), so the server behind nginx
    # gets a folder of its own whose snapshots/ is the same directory.
    front_data = args.out.resolve() / "data-front"
    front_data.mkdir(exist_ok=True)
    if not (front_data / "snapshots").exists():
        (front_data / "snapshots").symlink_to(data / "snapshots", target_is_directory=True)
    shards_dir = data / "snapshots" / SHARDS_ID
    manifest = json.loads((shards_dir / "manifest.json").read_text(encoding="utf-8"))
    files = [f for f in manifest["files"] if f["format"] == "webdataset"]
    total = sum(f["size"] for f in files)

    work = args.out.resolve() / "work"
    times: dict[str, list[float]] = {k: [] for k in SIDES}
    cpu: dict[str, list[float]] = {k: [] for k in ("direct", "front", "verified")}

    def fresh() -> None:
        # NOTE: start each run with an empty folder and no dirty pages from the previous one,
        # so neither side pays for the other's write-back.
        shutil.rmtree(work, ignore_errors=True)
        os.sync()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.out) as tmp_s, contextlib.ExitStack() as procs:
        tmp = Path(tmp_s)

        def started(proc_url: tuple[subprocess.Popen[bytes], str]) -> tuple[str, list[int]]:
            procs.callback(stop, proc_url[0])
            return proc_url[1], with_children(proc_url[0].pid)

        url, direct_pids = started(start_partrig(data, tmp))
        accel_url, accel_pids = started(start_partrig(front_data, tmp, accel=ACCEL_PREFIX))
        front_url, front_pids = started(
            start_nginx(front_data, tmp, args.workers, front=accel_url.removeprefix("http://"))
        )
        nurl, nginx_pids = started(start_nginx(shards_dir, tmp, args.workers))
        servers = {"direct": direct_pids, "front": accel_pids + front_pids}
        # NOTE: runs alternate between the sides (partrig, nginx, partrig behind nginx, ...),
        # so a burst of load on this shared machine hits them alike; the median of each side
        # is reported, never the best.
        for _ in range(args.repeat):
            for target, side in ((url, "direct"), (front_url, "front")):
                fresh()
                meter = CpuMeter(servers[side])
                r = pull(target, SHARDS_ID, work, key=KEY, workers=args.workers, progress=False)
                cpu[side].append(meter.used())
                assert r.bytes_fetched == r.bytes_total >= total, r
                times[side].append(r.seconds)
                fresh()
                meter = CpuMeter(nginx_pids)
                fetched, durable, verified = curl_all(nurl, files, work, args.workers)
                cpu["verified"].append(meter.used())
                times["nosync"].append(fetched)
                times["nginx"].append(durable)
                times["verified"].append(verified)
        fresh()
        pull(url, OLD_ID, work, key=KEY, fmt="folder", workers=args.workers, progress=False)
        inc = pull(url, NEW_ID, work, key=KEY, fmt="folder", workers=args.workers, progress=False)
    shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    mbps = {side: total / median(v) / 1e6 for side, v in times.items()}
    for side, what in SIDES.items():
        print(f"{what} (s): {[round(s, 2) for s in times[side]]}", file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "pull",
                "bytes": total,
                "files": len(files),
                "workers": args.workers,
                "runs": args.repeat,
                "statistic": "median",
                "partrig_MBps": round(mbps["direct"], 1),
                "nginx_MBps": round(mbps["nginx"], 1),
                "ratio": round(mbps["direct"] / mbps["nginx"], 3),
                "partrig_behind_nginx_MBps": round(mbps["front"], 1),
                "ratio_behind_nginx": round(mbps["front"] / mbps["nginx"], 3),
                "ratio_behind_nginx_verified": round(mbps["front"] / mbps["verified"], 3),
                "nginx_nosync_MBps": round(mbps["nosync"], 1),
                "ratio_nosync": round(mbps["direct"] / mbps["nosync"], 3),
                "nginx_verified_MBps": round(mbps["verified"], 1),
                "ratio_verified": round(mbps["direct"] / mbps["verified"], 3),
                "incremental_bytes": inc.bytes_fetched,
                "incremental_bytes_ratio": round(inc.bytes_fetched / inc.bytes_total, 4),
                "runs_s": {side: [round(s, 3) for s in v] for side, v in times.items()},
                # NOTE: CPU seconds per GB of every process on a side (client or curl + fsync
                # + sha256, and the servers): on a shared 2-core machine the rate follows the
                # CPU share a side gets, this does not.
                "cpu_s_per_GB": {
                    side: round(median(v) / (total / 1e9), 2) for side, v in cpu.items()
                },
                "loadavg_1m": [round(load_before[0], 2), round(load_after[0], 2)],
            }
        )
    )


if __name__ == "__main__":
    main()
