"""Pull a snapshot from a rig over HTTP: parallel, resumable, verified and incremental.

Why it works this way (see docs/datasets.md, "Pulling a snapshot"):

- **Verified.** Every byte goes to ``<name>.part``; the file is renamed to its real name only
  after its sha256 matches the manifest and it is fsynced, so a name on disk always means a
  complete, correct file.  A mismatch deletes the ``.part`` and fetches again, up to
  ``retries`` times, then :class:`~rig.errors.ChecksumMismatch` names the file.
- **Resumable.** A ``.part`` left by a killed pull is kept: its bytes are hashed and only the
  rest is requested (``Range: bytes=N-`` with ``If-Range`` on the sha256 ETag, so a changed file
  on the rig restarts from zero instead of splicing two versions).
- **Incremental.** Files are content-addressed (:mod:`capture.pull.objects`): a newer snapshot
  downloads only the files that no earlier pull into the same destination has verified.

Layout: ``<dest>/<snapshot id>/<manifest path>`` plus ``<dest>/<snapshot id>/manifest.json``,
which is written last, so its presence means the pull completed.  Importable for training
scripts::

    from capture.pull.client import pull
    result = pull("http://rig.local:8000", "snap-0003", "datasets", key=KEY, fmt="folder")
    train_dir = result.root / "folder" / "train"
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from capture.pull.objects import (
    PART_SUFFIX,
    NewNames,
    ObjectStore,
    disk_error,
    finish_part,
    hash_state,
    is_verified,
    make_dirs,
    safe_relpath,
)
from capture.pull.transport import BUFFER_BYTES, FileStreams, TransferFailed, read_into
from capture.pull.writebehind import WriteBehind
from capture.units import human_bytes
from rig.errors import AccessDenied, ChecksumMismatch, DiskFull, NotFound, PullError

FORMATS = ("webdataset", "folder", "coco", "csv")
#: Files every pull takes along, whatever the format: the split report is small and explains
#: the data.
ALWAYS = ("report",)
MAX_WAITS_429 = 60
#: Bytes per write(2) into a ``.part`` file.  NOTE: measured on the 2-core build VM, writing
#: 1 GB to a new file in 1 MiB writes cost 1.5-2.4 s of system CPU, in 64 KiB writes 0.3-0.4 s
#: (16 KiB: 0.5 s): large writes make the kernel take large page-cache blocks, which a VM
#: may have handed back to its host.  Receiving and hashing stay in 1 MiB steps.
WRITE_BYTES = 64 * 1024
SNAPSHOT_ID = re.compile(r"^snap-\d{4,9}$")


@dataclass
class PullResult:
    """What a pull did; ``root`` is the snapshot's folder under the destination."""

    snapshot_id: str
    root: Path
    files: int = 0
    bytes_total: int = 0
    fetched_files: int = 0
    bytes_fetched: int = 0
    reused_files: int = 0
    skipped_files: int = 0
    checksum_retries: int = 0
    seconds: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class _Job:
    """One distinct content (sha256) of the selection and every path that holds it."""

    sha256: str
    size: int
    paths: list[PurePosixPath]


class _Cancelled(Exception):
    """Another download failed: stop this one between chunks."""


def select_files(manifest: dict[str, Any], fmt: str) -> list[_Job]:
    """The manifest's files for ``fmt`` (plus the report), grouped by content, biggest first."""
    if fmt not in FORMATS:
        raise PullError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    have = manifest.get("formats") or sorted({f.get("format") for f in manifest.get("files", [])})
    if fmt not in have:
        raise NotFound(
            f"snapshot {manifest.get('id')} was not written in the {fmt} format (it has "
            f"{', '.join(map(str, have))}): pull one of those or make a snapshot with {fmt}"
        )
    jobs: dict[str, _Job] = {}
    try:
        for entry in manifest["files"]:
            if entry["format"] != fmt and entry["format"] not in ALWAYS:
                continue
            rel = safe_relpath(str(entry["path"]))
            sha, size = str(entry["sha256"]).lower(), int(entry["size"])
            job = jobs.setdefault(sha, _Job(sha, size, []))
            job.paths.append(rel)
    except (KeyError, TypeError, ValueError) as exc:
        raise PullError(f"the rig sent a manifest without a valid files list ({exc})") from None
    return sorted(jobs.values(), key=lambda j: (-j.size, str(j.paths[0])))


def free_bytes(path: Path) -> int:
    """Free space where ``path`` lives (a function so tests can pretend a disk is full)."""
    return shutil.disk_usage(path).free


class _Puller:
    """One pull: the HTTP session, the destination, the counters and the progress bar."""

    def __init__(
        self,
        base: str,
        snapshot_id: str,
        dest: Path,
        key: str | None,
        *,
        workers: int,
        retries: int,
        timeout_s: float,
    ) -> None:
        self.base = base.rstrip("/")
        self.snapshot_id = snapshot_id
        self.dest = dest
        self.root = dest / snapshot_id
        self.workers = max(1, workers)
        self.retries = retries
        self.objects = ObjectStore(dest)
        self.names = NewNames()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.result = PullResult(snapshot_id, self.root)
        headers = {"X-Api-Key": key} if key else {}
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=timeout_s)
        self.files = FileStreams(self.base, headers, timeout_s)
        self.bar: Any = None
        self.task: Any = None

    # --- HTTP ---------------------------------------------------------------------------------

    def api(self, path: str) -> str:
        return f"/api/snapshots/{self.snapshot_id}{path}"

    def refuse(self, status: int, body: bytes, what: str) -> Exception:
        """The typed error for a refused request, with the server's own reason."""
        try:
            detail = str(json.loads(body)["detail"])
        except (ValueError, KeyError, TypeError):
            detail = body[:200].decode("utf-8", "replace") or f"HTTP {status}"
        where = f"{self.base} ({what})"
        if status == 401:
            return AccessDenied(
                f"the rig at {where} refused the key (401: {detail}): pass a trainer key with "
                "--key or $PARTRIG_KEY; an operator makes one with "
                "`partrig auth new-key --role trainer`"
            )
        if status == 403:
            return AccessDenied(
                f"the rig at {where} refused the key (403: {detail}): it needs the trainer role"
            )
        if status == 404:
            return NotFound(
                f"the rig at {self.base} has no {what} (404: {detail}); list its snapshots "
                "with GET /api/snapshots"
            )
        return PullError(f"the rig at {where} answered {status}: {detail}")

    def get_manifest(self) -> bytes:
        try:
            r = self.http.get(self.api(""))
        except httpx.HTTPError as exc:
            raise PullError(
                f"cannot reach {self.base}: {exc}; check the address and that `partrig serve` "
                "is running there"
            ) from None
        if r.status_code != 200:
            raise self.refuse(r.status_code, r.content, f"snapshot {self.snapshot_id}")
        return r.content

    # --- one file -------------------------------------------------------------------------------

    def fetch(self, job: _Job) -> None:
        """Download one content to its first path (resuming a ``.part``), then link the rest."""
        final = self.root / job.paths[0]
        part = final.with_name(final.name + PART_SUFFIX)
        url = self.api(f"/files/{job.paths[0]}")
        digest, have = hash_state(part) if part.exists() else (hashlib.sha256(), 0)
        mismatches = transient = waits = 0
        while True:
            if have > job.size:
                part.unlink()
                digest, have = hashlib.sha256(), 0
            if have == job.size:
                if digest.hexdigest() == job.sha256:
                    if not part.exists():
                        _create_empty(part)  # NOTE: a zero-byte file: nothing to download
                    finish_part(part, final, self.names)
                    break
                part.unlink(missing_ok=True)
                digest, have = hashlib.sha256(), 0
                mismatches += 1
                with self.lock:
                    self.result.checksum_retries += 1
                    self.grow_bar(job.size)
                if mismatches > self.retries:
                    raise ChecksumMismatch(
                        f"{job.paths[0]} of {self.snapshot_id} failed its sha256 check "
                        f"{mismatches} times: the rig's copy may be damaged (run `partrig "
                        "dataset check` there) or the network corrupts data"
                    )
                continue
            try:
                outcome = self.stream_into(url, job, part, digest, have)
            except TransferFailed as exc:
                before = have
                digest, have = hash_state(part) if part.exists() else (hashlib.sha256(), 0)
                # NOTE: only failures in a row without progress count: a flaky link that keeps
                # delivering bytes still finishes the file.
                transient = 1 if have > before else transient + 1
                if transient > self.retries:
                    raise PullError(
                        f"downloading {job.paths[0]} failed {transient} times in a row ({exc}); "
                        "run the same command again to resume"
                    ) from None
                time.sleep(min(0.2 * 2**transient, 5.0))
                continue
            if isinstance(outcome, float):
                waits += 1
                if waits > MAX_WAITS_429:
                    raise PullError(f"the rig kept rate-limiting {job.paths[0]}; try later")
                time.sleep(outcome)
                continue
            digest, have = outcome
        self.objects.add(final, job.sha256)
        for rel in job.paths[1:]:
            self.place_copy(final, self.root / rel, job)
        with self.lock:
            self.result.fetched_files += len(job.paths)

    def stream_into(
        self, url: str, job: _Job, part: Path, digest: Any, have: int
    ) -> tuple[Any, int] | float:
        """One GET into ``part``; returns the new hash state, or seconds to wait after a 429."""
        headers = {"Range": f"bytes={have}-", "If-Range": f'"{job.sha256}"'} if have else {}
        with self.files.get(url, headers) as r:
            if r.status == 429:
                r.read()
                return min(float(r.getheader("retry-after") or 1), 60.0)
            if r.status == 416:
                r.read()
                part.unlink(missing_ok=True)
                return hashlib.sha256(), 0
            if r.status >= 500:
                r.read()
                raise TransferFailed(f"the rig answered {r.status}")
            if r.status not in (200, 206):
                raise self.refuse(r.status, r.read(), f"file {job.paths[0]}")
            start = 0
            if r.status == 206:
                start = int((r.getheader("content-range") or "bytes 0-").split()[1].split("-")[0])
            if start != have:  # a full answer (or an odd range): start over from byte 0
                digest, have = hashlib.sha256(), 0
            buffer = memoryview(bytearray(BUFFER_BYTES))
            try:
                f = open(part, "ab" if have else "wb")  # noqa: SIM115 (closed below)
            except OSError as exc:
                raise disk_error(exc, part.parent, job.size - have) from None
            with f:
                behind = WriteBehind(f.fileno(), have)
                while n := read_into(r, buffer):
                    if self.stop.is_set():
                        raise _Cancelled
                    chunk = buffer[:n]
                    try:
                        for at in range(0, n, WRITE_BYTES):
                            f.write(chunk[at : at + WRITE_BYTES])
                    except OSError as exc:
                        raise disk_error(exc, part.parent, job.size - have) from None
                    digest.update(chunk)
                    have += n
                    behind.wrote(have)
                    with self.lock:
                        self.result.bytes_fetched += n
                    if self.bar is not None:
                        self.bar.advance(self.task, n)
        return digest, have

    def place_copy(self, source: Path, final: Path, job: _Job) -> None:
        """Another path with the same content: a hard link, else a copy."""
        if is_verified(final, job.sha256, job.size):
            return
        make_dirs(final.parent)
        final.unlink(missing_ok=True)
        try:
            final.hardlink_to(source)
        except OSError:
            part = final.with_name(final.name + PART_SUFFIX)
            try:
                shutil.copyfile(source, part)
            except OSError as exc:
                raise disk_error(exc, final.parent, job.size) from None
            finish_part(part, final, self.names)
        else:
            self.names.add(final.parent)

    # --- what is already here ---------------------------------------------------------------------

    def place_locally(self, job: _Job) -> str | None:
        """Whether the content is here: "skipped" (all its paths verified), "reused" (linked
        from a verified copy or the object store) or None (it must be downloaded)."""
        for rel in job.paths:
            make_dirs((self.root / rel).parent)
        present = [rel for rel in job.paths if is_verified(self.root / rel, job.sha256, job.size)]
        if present:
            source = self.root / present[0]
            self.objects.add(source, job.sha256)
            for rel in job.paths:
                if rel not in present:
                    self.place_copy(source, self.root / rel, job)
            return "skipped" if len(present) == len(job.paths) else "reused"
        first = self.root / job.paths[0]
        if self.objects.reuse(job.sha256, job.size, first, self.names):
            for rel in job.paths[1:]:
                self.place_copy(first, self.root / rel, job)
            return "reused"
        return None

    def part_bytes(self, job: _Job) -> int:
        part = self.root / job.paths[0]
        part = part.with_name(part.name + PART_SUFFIX)
        return min(part.stat().st_size, job.size) if part.exists() else 0

    def grow_bar(self, n: int) -> None:
        if self.bar is not None:
            total = self.bar.tasks[0].total or 0
            self.bar.update(self.task, total=total + n)


def pull(
    url: str,
    snapshot_id: str,
    dest: str | Path,
    *,
    key: str | None,
    fmt: str = "webdataset",
    workers: int = 8,
    progress: bool = True,
    retries: int = 3,
    timeout_s: float = 60.0,
) -> PullResult:
    """Mirror one format of snapshot ``snapshot_id`` from the rig at ``url`` into ``dest``.

    Raises :class:`~rig.errors.AccessDenied` (401/403), :class:`~rig.errors.NotFound` (no such
    snapshot or format), :class:`~rig.errors.DiskFull` (with the space still needed),
    :class:`~rig.errors.ChecksumMismatch` (after ``retries`` re-fetches) or
    :class:`~rig.errors.PullError`.  Running it again after any failure resumes.
    """
    started = time.monotonic()
    dest = Path(dest)
    make_dirs(dest)
    if not SNAPSHOT_ID.match(snapshot_id):
        raise PullError(f"{snapshot_id!r} is not a snapshot id: they look like snap-0003")
    p = _Puller(url, snapshot_id, dest, key, workers=workers, retries=retries, timeout_s=timeout_s)
    with p.http, contextlib.closing(p.files):
        raw = p.get_manifest()
        try:
            manifest = json.loads(raw)
        except ValueError:
            raise PullError(f"the rig at {url} sent a manifest that is not JSON") from None
        if not isinstance(manifest, dict) or manifest.get("id") != snapshot_id:
            raise PullError(f"the rig at {url} answered {snapshot_id} with another manifest")
        jobs = select_files(manifest, fmt)
        result = p.result
        result.manifest = manifest
        result.files = sum(len(j.paths) for j in jobs)
        result.bytes_total = sum(j.size * len(j.paths) for j in jobs)
        with ThreadPoolExecutor(p.workers) as pool:
            placed = list(zip(jobs, pool.map(p.place_locally, jobs), strict=True))
        result.skipped_files = sum(len(j.paths) for j, how in placed if how == "skipped")
        result.reused_files = sum(len(j.paths) for j, how in placed if how == "reused")
        todo = [j for j, how in placed if how is None]
        needed = sum(j.size - p.part_bytes(j) for j in todo)
        free = free_bytes(dest)
        if needed > free:
            raise DiskFull(
                f"pulling {snapshot_id} ({fmt}) needs {human_bytes(needed)} more in {dest} but "
                f"only {human_bytes(free)} is free: free space or choose another --dest"
            )
        with _progress_bar(progress, f"{snapshot_id} {fmt}", needed) as (bar, task):
            p.bar, p.task = bar, task
            _run_all(p, todo)
        # NOTE: every new name made durable before the manifest says the pull is complete.
        p.names.sync()
        _write_manifest(p.root, raw)
    result.seconds = time.monotonic() - started
    return result


def _run_all(p: _Puller, todo: list[_Job]) -> None:
    """Fetch every job on ``p.workers`` threads; the first failure stops the others."""
    with ThreadPoolExecutor(p.workers, thread_name_prefix="pull") as pool:
        futures = [pool.submit(p.fetch, job) for job in todo]
        try:
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:  # NOTE: Ctrl-C: stop every download between two chunks
            p.stop.set()
            for f in futures:
                f.cancel()
            raise
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            p.stop.set()
            for f in pending:
                f.cancel()
            wait(pending)
            raise failed.exception()  # type: ignore[misc]


@contextlib.contextmanager
def _progress_bar(enabled: bool, label: str, total: int) -> Iterator[tuple[Any, Any]]:
    if not enabled:
        yield None, None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        yield bar, bar.add_task(label, total=total)


def _create_empty(part: Path) -> None:
    """Create the ``.part`` of a zero-byte file (an empty class folder's ``.keep``).

    Why: the loop above renames a ``.part`` once its bytes match the manifest; for an empty
    file that is true before any byte arrives, so no GET ever creates it.
    """
    try:
        part.open("wb").close()
    except OSError as exc:
        raise disk_error(exc, part.parent, 0) from None


def _write_manifest(root: Path, raw: bytes) -> None:
    """The manifest, byte for byte as the rig has it, written last: the pull is complete."""
    make_dirs(root)
    part = root / ("manifest.json" + PART_SUFFIX)
    try:
        part.write_bytes(raw)
    except OSError as exc:
        raise disk_error(exc, root, len(raw)) from None
    finish_part(part, root / "manifest.json")
