"""Read a published snapshot from object storage: stream it, or pull it to a folder.

Usage::

    snap = PublishedSnapshot.open("s3://parts/team-a/rig-2/snap-0003", settings)
    for entry in snap.entries("webdataset"):
        with snap.stream(entry) as body:          # verified against the manifest at EOF
            tarfile.open(fileobj=body, mode="r|")
    pull_published("s3://parts/team-a/rig-2/snap-0003", Path("pulled"), settings)

Why every byte is checked: the manifest's sha256 is the only thing that ties an object to the
snapshot.  A stream raises :class:`~rig.errors.ChecksumMismatch` when it reaches the end of an
object whose digest or length differs, so a trainer never finishes an epoch on damaged data;
a pull hashes each file before it gives the file its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capture.publish.objstore import ObjectStore, S3Location, TransferSettings
from capture.publish.publisher import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    object_key,
    parse_manifest,
    sha256_of,
)
from capture.snapshots.build import SNAPSHOT_ID_RE
from capture.store.files import fsync_dir, load_syncfs
from rig.errors import ChecksumMismatch, QueryError, StoreError

PART_SUFFIX = ".part"
RIG_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class VerifyingReader:
    """A file-like view of an object's body that hashes what it reads and checks it at EOF."""

    def __init__(self, body: Any, sha256: str, size: int, name: str) -> None:
        self._body = body
        self._hash = hashlib.sha256()
        self._expected = (sha256, size)
        self._seen = 0
        self.name = name
        self.verified = False
        self.failed = ""

    def read(self, n: int = -1) -> bytes:
        data = self._body.read() if n is None or n < 0 else self._body.read(n)
        self._hash.update(data)
        self._seen += len(data)
        if not data or (n is None or n < 0):
            self._check()
        return bytes(data)

    def _check(self) -> None:
        if self.verified:
            return
        sha, size = self._expected
        if self._seen != size or self._hash.hexdigest() != sha:
            self.failed = (
                f"{self.name}: got {self._seen} bytes with sha256 {self._hash.hexdigest()[:12]}, "
                f"the manifest says {size} bytes, {sha[:12]}; the object is damaged or replaced"
            )
            raise ChecksumMismatch(self.failed)
        self.verified = True

    def drain(self) -> None:
        """Read to the end (tar readers stop at the end-of-archive blocks) and verify."""
        while self.read(1024 * 1024):
            pass
        self._check()

    def close(self) -> None:
        self._body.close()


@dataclass
class PublishedSnapshot:
    """A snapshot's published manifest and the bucket its objects live in."""

    location: S3Location
    manifest: dict[str, Any]
    store: ObjectStore

    @classmethod
    def open(
        cls, url: str, settings: TransferSettings, store: ObjectStore | None = None
    ) -> PublishedSnapshot:
        """Open ``s3://bucket/prefix/<rig.id>/snap-NNNN``: read and check its manifest."""
        location = S3Location.parse(url)
        store = store or ObjectStore.connect(location.bucket, settings)
        key = location.key(MANIFEST)
        manifest = parse_manifest(store.get_bytes(key, MAX_MANIFEST_BYTES), url)
        return cls(location, manifest, store)

    @property
    def id(self) -> str:
        return str(self.manifest.get("id", ""))

    @property
    def rig_id(self) -> str:
        return str(self.manifest["published"].get("rig_id", ""))

    def entries(self, fmt: str | None = None) -> list[dict[str, Any]]:
        files = self.manifest["files"]
        return [f for f in files if fmt is None or f.get("format") == fmt]

    def key_of(self, entry: dict[str, Any]) -> str:
        return object_key(self.manifest["published"]["objects_prefix"], str(entry["sha256"]))

    @contextmanager
    def stream(self, entry: dict[str, Any]) -> Iterator[VerifyingReader]:
        """The object of ``entry`` as a verifying file-like reader; verified on leaving."""
        body = self.store.open_stream(self.key_of(entry))
        reader = VerifyingReader(body, str(entry["sha256"]), int(entry["size"]), entry["path"])
        try:
            try:
                yield reader
            except Exception:
                # NOTE: a replaced or damaged object usually fails the reader first (a tar
                # header); the checksum names the real cause, so it wins when it fails too.
                with contextlib.suppress(Exception):
                    reader.drain()
                if reader.failed:
                    raise ChecksumMismatch(reader.failed) from None
                raise
            reader.drain()
        finally:
            reader.close()


@dataclass
class PullResult:
    root: Path
    files: int
    fetched_files: int
    fetched_bytes: int
    present_files: int
    total_bytes: int
    seconds: float


def pull_published(
    url: str,
    dest: Path,
    settings: TransferSettings,
    *,
    fmt: str | None = None,
    store: ObjectStore | None = None,
) -> PullResult:
    """Mirror a published snapshot into ``dest/<rig.id>/<snap-id>/``; resumable.

    ``fmt`` limits the files to one format (plus the reports); the manifest is written last,
    so a folder with a ``manifest.json`` is complete.  A file already there is kept only when
    its sha256 matches.
    """
    started = time.monotonic()
    snap = PublishedSnapshot.open(url, settings, store)
    formats = snap.manifest.get("formats") or []
    if fmt is not None and fmt not in formats:
        raise QueryError(
            f"{url} has no {fmt} files; it was published with {', '.join(formats) or 'none'}"
        )
    # NOTE: both become folder names here, and the manifest is input from the bucket.
    if not RIG_ID_RE.match(snap.rig_id) or not SNAPSHOT_ID_RE.match(snap.id):
        raise StoreError(
            f"{url}: the manifest's rig id {snap.rig_id!r} or snapshot id {snap.id!r} is not "
            "valid; refusing to use it as a folder name"
        )
    root = Path(dest) / snap.rig_id / snap.id
    wanted = [e for e in snap.entries() if fmt is None or e.get("format") in (fmt, "report")]
    total = sum(int(e["size"]) for e in wanted)
    todo = [e for e in wanted if not _present(root / e["path"], e)]

    def one(entry: dict[str, Any]) -> Path:
        final = root / entry["path"]
        part = final.with_name(final.name + PART_SUFFIX)
        part.parent.mkdir(parents=True, exist_ok=True)
        size = int(entry["size"])
        if size < settings.part_size:
            # NOTE: one GET, hashed as it is written: no HEAD first and no second read.
            digest = hashlib.sha256()
            with open(part, "wb") as f:
                got = snap.store.get_to_file(snap.key_of(entry), f, digest)
            sha = digest.hexdigest()
        else:
            snap.store.download_file(snap.key_of(entry), part)
            got, sha = part.stat().st_size, sha256_of(part)
        if sha != entry["sha256"] or got != size:
            part.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{entry['path']} of {url} does not match its manifest sha256 after download; "
                "the object is damaged: publish the snapshot again"
            )
        return part

    root.mkdir(parents=True, exist_ok=True)
    # NOTE: opened before the writes: syncfs reports write-back errors since the fd was opened.
    anchor = os.open(root, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
            parts = list(pool.map(one, todo))
        # NOTE: one sync for the whole batch, then the renames: every file is durable under
        # its .part name before any final name exists, without one fsync per file.
        _make_durable(anchor, parts)
    finally:
        os.close(anchor)
    for part in parts:
        part.rename(part.with_name(part.name[: -len(PART_SUFFIX)]))
    for folder in sorted({p.parent for p in parts}):
        fsync_dir(folder)
    body = json.dumps(snap.manifest, indent=1, sort_keys=True).encode()
    tmp = root / (MANIFEST + PART_SUFFIX)
    root.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    tmp.rename(root / MANIFEST)
    fsync_dir(root)
    return PullResult(
        root,
        len(wanted),
        len(todo),
        sum(int(e["size"]) for e in todo),
        len(wanted) - len(todo),
        total,
        time.monotonic() - started,
    )


def _make_durable(anchor: int, parts: list[Path]) -> None:
    syncfs = load_syncfs()
    if not parts or (syncfs is not None and syncfs(anchor) == 0):
        return
    for part in parts:
        with open(part, "rb+") as f:
            os.fsync(f.fileno())


def _present(path: Path, entry: dict[str, Any]) -> bool:
    try:
        if path.stat().st_size != int(entry["size"]):
            return False
    except FileNotFoundError:
        return False
    return sha256_of(path) == entry["sha256"]


def remove_pulled(root: Path) -> None:
    """Delete a pulled snapshot folder (tests and benchmarks start from an empty one)."""
    shutil.rmtree(root, ignore_errors=True)
