"""Publish a snapshot to S3-compatible object storage, content-addressed, manifest last.

Usage::

    result = publish_snapshot(data_dir, "snap-0003", "s3://parts/team-a", rig_id="rig-2",
                              settings=TransferSettings.from_config(cfg.storage))
    result.url        # s3://parts/team-a/rig-2/snap-0003
    result.uploaded_bytes, result.reused_bytes

The layout under ``s3://bucket/prefix``::

    objects/sha256/ab/ab12...ef          every file, named by its sha256 (shared by all rigs
                                         and all snapshots under the prefix)
    <rig.id>/snap-NNNN/manifest.json     the snapshot's manifest plus a "published" block

Why content addressing: a snapshot's files are immutable and already hashed by its manifest,
so naming an object by its sha256 makes "is it there already?" a listing or a HEAD, makes a
new version upload only the files that changed (an unchanged WebDataset shard has the same
bytes, hence the same name, as in the version before), and lets several rigs share one bucket
with no two writers ever racing on a key with different bytes.

Why the manifest last: a reader starts from the manifest, and the manifest is written only
after every object it names is in the bucket, so a reader never sees half a snapshot; a
crashed publish leaves only unreferenced objects, which the next run finds and skips (resume).
A published manifest is never overwritten: ids are immutable, and the manifest is created
with a conditional PUT (``If-None-Match: *``), so of two publishers racing for one id only the
first wins.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capture.publish.objstore import ObjectExists, ObjectStore, S3Location, TransferSettings
from capture.snapshots.build import load_manifest, snapshot_dir, software_version
from capture.store.records import utc_now
from rig.errors import ChecksumMismatch, ConfigError, QueryError, StoreError

OBJECTS = "objects/sha256"
MANIFEST = "manifest.json"
_SHA_CHARS = frozenset("0123456789abcdef")


def object_key(objects_prefix: str, sha256: str) -> str:
    """``<objects_prefix>/ab/ab12...``: two hex digits of fan-out keep listings short."""
    if len(sha256) != 64 or not set(sha256) <= _SHA_CHARS:
        raise StoreError(f"{sha256!r} is not a sha256 hex digest; the manifest is corrupt")
    return f"{objects_prefix}/{sha256[:2]}/{sha256}"


def snapshot_location(root: S3Location, rig_id: str, snapshot_id: str) -> S3Location:
    """``<prefix>/<rig.id>/snap-NNNN``: rig ids namespace snapshot ids in a shared bucket."""
    return root.child(rig_id, snapshot_id)


@dataclass
class PublishResult:
    url: str
    files: int
    objects: int
    uploaded_objects: int
    uploaded_bytes: int
    reused_objects: int
    reused_bytes: int
    total_bytes: int
    seconds: float
    already_published: bool = False


def sha256_of(path: Path, chunk: int = 4 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def publish_snapshot(
    data_dir: Path,
    snapshot_id: str,
    url: str,
    *,
    rig_id: str,
    settings: TransferSettings,
    store: ObjectStore | None = None,
) -> PublishResult:
    """Upload ``snapshot_id`` of ``data_dir`` under ``url``; resumable and idempotent.

    Raises ConfigError for a bad URL, QueryError when a *different* snapshot is already
    published under the same rig id and snapshot id, ChecksumMismatch when a local file no
    longer matches the manifest (nothing of it is uploaded), and the storage errors of
    :func:`capture.publish.objstore.storage_error`.
    """
    started = time.monotonic()
    root = S3Location.parse(url)
    folder = snapshot_dir(Path(data_dir), snapshot_id)
    manifest = load_manifest(Path(data_dir), snapshot_id)
    store = store or ObjectStore.connect(root.bucket, settings)
    target = snapshot_location(root, rig_id, snapshot_id)
    objects_prefix = root.key(OBJECTS)
    published = dict(manifest)
    published["published"] = {
        "rig_id": rig_id,
        "snapshot_id": snapshot_id,
        "objects_prefix": objects_prefix,
        "published_at": utc_now(),
        "software_version": software_version(),
    }
    body = _manifest_bytes(published)
    files = list(manifest.get("files", []))
    unique: dict[str, dict[str, Any]] = {}
    for entry in files:
        unique.setdefault(str(entry["sha256"]), entry)
    total = sum(int(e["size"]) for e in files)

    existing = _existing_manifest(store, target.key(MANIFEST))
    if existing is not None:
        if _same_snapshot(existing, published):
            return PublishResult(
                target.url(), len(files), len(unique), 0, 0, len(unique), total, total,
                time.monotonic() - started, already_published=True,
            )  # fmt: skip
        raise _clash(target, snapshot_id)

    # NOTE: the key is the sha256 and only verified bytes are ever sent under it, so a listed
    # object of the right size is the file; without a listing (a huge prefix) HEAD tells.
    listed = store.list_sizes(objects_prefix, max_pages=max(1, len(unique) // 100))

    def one(entry: dict[str, Any]) -> tuple[bool, int]:
        sha, size = str(entry["sha256"]), int(entry["size"])
        key = object_key(objects_prefix, sha)
        if listed is not None:
            if listed.get(key) == size:
                return False, size
        else:
            there = store.head(key)
            if there is not None and there["size"] == size and there["sha256"] == sha:
                return False, size
        send_verified(
            store, folder / entry["path"], key, sha, size, settings.part_size, snapshot_id
        )
        return True, size

    uploaded = reused = uploaded_bytes = reused_bytes = 0
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        for sent, size in pool.map(one, unique.values()):
            if sent:
                uploaded, uploaded_bytes = uploaded + 1, uploaded_bytes + size
            else:
                reused, reused_bytes = reused + 1, reused_bytes + size
    # NOTE: last, and only after every object above succeeded (pool.map re-raises): readers
    # start from this key, so it must never name an object that is not there yet.
    try:
        store.put_bytes(
            target.key(MANIFEST),
            body,
            sha256=hashlib.sha256(body).hexdigest(),
            content_type="application/json",
            if_absent=True,
        )
    except ObjectExists:
        # NOTE: another publisher won the race for this id; fine if it published the same.
        existing = _existing_manifest(store, target.key(MANIFEST))
        if existing is None or not _same_snapshot(existing, published):
            raise _clash(target, snapshot_id) from None
    return PublishResult(
        target.url(), len(files), len(unique), uploaded, uploaded_bytes, reused, reused_bytes,
        total, time.monotonic() - started,
    )  # fmt: skip


def send_verified(
    store: ObjectStore, path: Path, key: str, sha: str, size: int, part_size: int, sid: str
) -> None:
    """Upload one file after checking its sha256: read once when it fits in one part."""

    def refuse() -> ChecksumMismatch:
        # NOTE: a file damaged on the rig's disk must never be published under the name of
        # the content it no longer has.
        return ChecksumMismatch(
            f"{path} no longer matches the sha256 in {sid}'s manifest; run "
            "`partrig dataset check` and create a new snapshot"
        )

    if size < part_size:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise refuse()
        store.put_bytes(key, data, sha256=sha, content_type="application/octet-stream")
        return
    if sha256_of(path) != sha:
        raise refuse()
    store.upload_file(path, key, sha256=sha)


def _clash(target: S3Location, snapshot_id: str) -> QueryError:
    return QueryError(
        f"{target.url()} already holds a different {snapshot_id} (published ids are "
        "immutable): set a distinct rig.id for this rig or data folder"
    )


def _manifest_bytes(published: dict[str, Any]) -> bytes:
    return json.dumps(published, indent=1, sort_keys=True).encode()


def _existing_manifest(store: ObjectStore, key: str) -> dict[str, Any] | None:
    if store.head(key) is None:
        return None
    return parse_manifest(store.get_bytes(key, MAX_MANIFEST_BYTES), key)


def _same_snapshot(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def files(m: dict[str, Any]) -> list[tuple[str, str]]:
        return sorted((str(f["path"]), str(f["sha256"])) for f in m.get("files", []))

    return a.get("id") == b.get("id") and files(a) == files(b)


#: A manifest lists every file of a snapshot; 256 MiB holds well over a million entries.
MAX_MANIFEST_BYTES = 256 * 1024 * 1024


def parse_manifest(raw: bytes, where: str) -> dict[str, Any]:
    """A published manifest, its shape checked: classes, files with safe paths and digests."""
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise StoreError(f"{where} is not JSON ({exc}); publish the snapshot again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise StoreError(f"{where} is not a partrig snapshot manifest (no files list)")
    for entry in manifest["files"]:
        path = str(entry.get("path", ""))
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise StoreError(f"{where} lists an unsafe path {path!r}; refusing it")
        object_key("x", str(entry.get("sha256", "")))
        if not isinstance(entry.get("size"), int) or entry["size"] < 0:
            raise StoreError(f"{where}: {path} has no valid size")
    block = manifest.get("published")
    if not isinstance(block, dict) or not isinstance(block.get("objects_prefix"), str):
        raise StoreError(f"{where} has no 'published' block; it was not written by publish")
    return manifest


def default_url(storage: Any, url: str | None) -> str:
    """The URL given, else ``storage.url``; ConfigError when neither names a bucket."""
    chosen = url or getattr(storage, "url", "")
    if not chosen:
        raise ConfigError(
            "no destination: give s3://bucket/prefix or set storage.url in partrig.toml"
        )
    return chosen
