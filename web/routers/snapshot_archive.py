"""One snapshot as one ``.tar`` download, for the Snapshots page's "Download" link.

Why a tar streamed on the fly: a snapshot is a folder of many files, a browser downloads one
file, and a Pi has neither the time nor the disk to write a second copy.  The archive is built
from the manifest (only its files, the manifest itself first), each header written by
:mod:`tarfile` and each file copied in 1 MiB reads, so memory stays flat and the length is
known in advance (``Content-Length``: a download's progress bar and resume work).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from web.rate_limit import trainer_limited
from web.routers.snapshots import ManifestDep, file_path

router = APIRouter(
    prefix="/api/snapshots", tags=["snapshots"], dependencies=[Depends(trainer_limited)]
)

BLOCK = tarfile.BLOCKSIZE
CHUNK = 1024 * 1024


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _header(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def archive_members(m: Any) -> list[tuple[str, Any, int]]:
    """``(name in the archive, path on disk, size)``: manifest.json, then the manifest's files."""
    top = str(m.data["id"])
    members = [(f"{top}/manifest.json", m.folder / "manifest.json", len(m.raw))]
    for path, entry in sorted(m.files.items()):
        members.append((f"{top}/{path}", file_path(m, entry), int(entry["size"])))
    return members


def archive_length(members: list[tuple[str, Any, int]], mtime: float) -> int:
    heads = sum(len(_header(name, size, mtime)) for name, _, size in members)
    return heads + sum(_padded(size) for _, _, size in members) + 2 * BLOCK


def archive_stream(members: list[tuple[str, Any, int]], mtime: float) -> Iterator[bytes]:
    """The tar's bytes; a file whose size changed under us ends the stream short (the client
    sees a truncated download, never a silently different file)."""
    for name, where, size in members:
        yield _header(name, size, mtime)
        sent = 0
        with open(where, "rb") as f:
            while sent < size:
                chunk = f.read(min(CHUNK, size - sent))
                if not chunk:
                    return
                sent += len(chunk)
                yield chunk
        if _padded(size) > size:
            yield b"\0" * (_padded(size) - size)
    yield b"\0" * (2 * BLOCK)


@router.get(
    "/{snapshot_id}/archive.tar",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-tar": {}}}},
)
def snapshot_archive(m: ManifestDep) -> StreamingResponse:
    """The whole snapshot (its manifest and every file it lists) as one tar file."""
    members = archive_members(m)
    mtime = (m.folder / "manifest.json").stat().st_mtime
    name = f"{m.data['id']}.tar"
    return StreamingResponse(
        archive_stream(members, mtime),
        media_type="application/x-tar",
        headers={
            "Content-Length": str(archive_length(members, mtime)),
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "private",
        },
    )
