"""The trainer's API: list snapshots, read manifests and reports, stream their files.

Why files are looked up, never joined: ``/files/{path}`` serves a file only when ``path`` is
exactly a ``path`` in the snapshot's manifest (a dict lookup).  Anything else (``..``,
``%2e%2e``, an absolute path, the database next door) is simply not a key of that dict and
answers 404, so no request can reach a file outside the snapshot.  The manifest's own paths are
still checked to resolve inside the snapshot folder, in case it was damaged on disk.

Snapshots are immutable, so each file's sha256 is its ETag, answers carry
``Cache-Control: private, max-age=31536000, immutable``, and ``Range``/``If-Range`` (from
Starlette's FileResponse) let ``curl -C -``, ``wget -c`` and the pull client resume.

Every route needs a trainer (or operator) key and is rate-limited per key (web/rate_limit.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, Response

from capture.snapshots.build import list_snapshots, snapshot_dir
from rig.errors import NotFound, StoreError
from web.deps import SettingsDep, StoreDep
from web.rate_limit import trainer_limited

SnapshotId = Annotated[str, Path(pattern=r"^snap-\d{4,9}$", description="e.g. snap-0003")]
IMMUTABLE = "private, max-age=31536000, immutable"
MEDIA_TYPES = {
    ".tar": "application/x-tar",
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".csv": "text/csv",
    ".md": "text/markdown",
}

router = APIRouter(
    prefix="/api/snapshots", tags=["snapshots"], dependencies=[Depends(trainer_limited)]
)


class SnapshotFile(FileResponse):
    # NOTE: 1 MiB reads instead of Starlette's 64 KiB: a fraction of the thread hops per byte,
    # which is most of the server's cost on multi-gigabyte shards.
    chunk_size = 1024 * 1024


class Manifest:
    """A parsed manifest with its raw bytes, its ETag and a path -> file entry index."""

    def __init__(self, folder: FilePath, raw: bytes) -> None:
        self.folder = folder
        self.raw = raw
        self.etag = f'"{hashlib.sha256(raw).hexdigest()}"'
        try:
            self.data: dict[str, Any] = json.loads(raw)
            self.files: dict[str, dict[str, Any]] = {str(f["path"]): f for f in self.data["files"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"{folder / 'manifest.json'} is damaged ({exc}): make a new snapshot"
            ) from None


@functools.lru_cache(maxsize=16)
def _read_manifest(folder: FilePath, mtime_ns: int, size: int) -> Manifest:
    # NOTE: keyed by mtime and size too, so a snapshot id reused after a wipe is re-read.
    return Manifest(folder, (folder / "manifest.json").read_bytes())


def manifest_of(settings: SettingsDep, snapshot_id: SnapshotId) -> Manifest:
    """The snapshot's manifest, cached: a pull asks for thousands of files of one snapshot."""
    folder = FilePath(snapshot_dir(FilePath(settings.data.dir), snapshot_id))
    try:
        st = os.stat(folder / "manifest.json")
    except FileNotFoundError:
        raise NotFound(
            f"there is no snapshot {snapshot_id}: list them with GET /api/snapshots"
        ) from None
    return _read_manifest(folder, st.st_mtime_ns, st.st_size)


ManifestDep = Annotated[Manifest, Depends(manifest_of)]


def not_modified(request: Request, etag: str) -> bool:
    sent = request.headers.get("if-none-match")
    if not sent:
        return False
    tags = {t.strip().removeprefix("W/") for t in sent.split(",")}
    return "*" in tags or etag in tags


@router.get("")
def snapshots(store: StoreDep) -> dict[str, Any]:
    """Every snapshot, oldest first (id, creation time, split rules, shots, bytes)."""
    return {"items": list_snapshots(store)}


@router.get("/{snapshot_id}", response_class=Response)
def manifest(request: Request, m: ManifestDep) -> Response:
    """The snapshot's manifest.json, byte for byte: classes, split rules, counts, every file
    with its sha256 and size."""
    headers = {"ETag": m.etag, "Cache-Control": IMMUTABLE}
    if not_modified(request, m.etag):
        return Response(status_code=304, headers=headers)
    return Response(m.raw, media_type="application/json", headers=headers)


@router.get("/{snapshot_id}/report")
def report(m: ManifestDep) -> Any:
    """The snapshot's report: counts per class x split x background, duplicates across
    splits, class imbalance and instances per class."""
    entry = next((f for f in m.files.values() if f.get("format") == "report"), None)
    if entry is None or not str(entry["path"]).endswith(".json"):
        raise NotFound(f"snapshot {m.data.get('id')} has no report.json")
    try:
        return json.loads(file_path(m, entry).read_bytes())
    except ValueError as exc:
        raise StoreError(f"the report of {m.data.get('id')} is damaged: {exc}") from None


SHARD = re.compile(r"^webdataset/(?P<split>[a-z]+)-(?P<n>\d{6})\.tar$")


@router.get("/{snapshot_id}/shards")
def shards(
    request: Request,
    m: ManifestDep,
    split: Annotated[str, Query(pattern=r"^[a-z]{1,16}$", description="train, val or test")],
) -> dict[str, Any]:
    """The split's WebDataset shards as one brace pattern a WebDataset client expands itself
    (send the key in the X-Api-Key header with every shard request)."""
    numbers = sorted(
        int(hit["n"])
        for path in m.files
        if (hit := SHARD.match(path)) is not None and hit["split"] == split
    )
    if not numbers:
        raise NotFound(f"snapshot {m.data.get('id')} has no WebDataset shards for split {split!r}")
    if numbers != list(range(len(numbers))):
        raise StoreError(f"the {split} shards of {m.data.get('id')} are not numbered 0..n-1")
    base = str(request.url_for("snapshot_file", snapshot_id=m.data["id"], path="webdataset"))
    last = len(numbers) - 1
    return {
        "pattern": f"{base}/{split}-{{000000..{last:06d}}}.tar",
        "count": len(numbers),
        "header": "X-Api-Key",
        "urls": [f"{base}/{split}-{n:06d}.tar" for n in numbers],
    }


def file_path(m: Manifest, entry: dict[str, Any]) -> FilePath:
    """Where a manifest entry lives, refusing a damaged manifest that points outside."""
    root = m.folder.resolve()
    path = (root / str(entry["path"])).resolve()
    if not path.is_relative_to(root):
        raise StoreError(f"the manifest of {m.data.get('id')} names a file outside its folder")
    return path


@router.head("/{snapshot_id}/files/{path:path}", include_in_schema=False)
@router.get("/{snapshot_id}/files/{path:path}", name="snapshot_file")
def snapshot_file(request: Request, m: ManifestDep, settings: SettingsDep, path: str) -> Response:
    """One file of the snapshot, by its manifest path; supports HEAD, Range, If-Range and
    If-None-Match (the ETag is the file's sha256)."""
    entry = m.files.get(path)
    if entry is None:
        raise NotFound(
            f"snapshot {m.data.get('id')} has no file {path!r}: files are named exactly as in "
            "its manifest (GET /api/snapshots/{id})"
        )
    etag = f'"{entry["sha256"]}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    where = file_path(m, entry)
    try:
        st = os.stat(where)
    except FileNotFoundError:
        raise StoreError(
            f"{path} of {m.data.get('id')} is missing on the rig: the snapshot is damaged"
        ) from None
    if st.st_size != int(entry["size"]):
        raise StoreError(
            f"{path} of {m.data.get('id')} has {st.st_size} bytes, the manifest says "
            f"{entry['size']}: the snapshot is damaged on the rig"
        )
    media = MEDIA_TYPES.get(where.suffix, "application/octet-stream")
    accel = settings.web.accel_redirect
    if accel:
        # NOTE: behind nginx, partrig decides (key, rate, manifest lookup) and nginx sends the
        # bytes with sendfile, Range and Content-Length: on a Pi that keeps a core free for the
        # sorter while a trainer pulls gigabytes (docs/deployment.md, "nginx in front").
        target = f"{accel}/{m.folder.name}/{quote(str(entry['path']), safe='/')}"
        return Response(headers={**headers, "X-Accel-Redirect": target}, media_type=media)
    return SnapshotFile(where, headers=headers, media_type=media, stat_result=st)
