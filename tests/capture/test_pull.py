"""The pull client against a real partrig server on loopback (uvicorn in a thread).

A tap around the app records every request (path, Range, status, body bytes) and can slow the
body down or flip one byte of one answer, so the tests see exactly what crossed the wire.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))

from snapshot_fixture import folder_files, sample_files, write_snapshot
from web_helpers import TRAIN, TRAINER_KEY, VIEWER_KEY, FakeRig, make_settings

from capture.pull import client as pull_module
from capture.pull.client import pull, select_files
from capture.pull.objects import disk_error, safe_relpath
from rig.errors import AccessDenied, ChecksumMismatch, DiskFull, NotFound, PullError
from web.app import create_app

REPO = Path(__file__).resolve().parents[2]
SNAP = "snap-0001"
SHARD = "webdataset/train-000000.tar"
FILES = f"/api/snapshots/{SNAP}/files/"


class Tap:
    """ASGI wrapper: records requests, optionally slows bodies or corrupts one answer."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[dict[str, Any]] = []
        self.corrupt_once: set[str] = set()
        self.abort_once: set[str] = set()
        self.delay_s = 0.0
        self.store: Any = None
        self.settings: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        rec = {"path": scope["path"], "range": headers.get(b"range"), "status": 0, "bytes": 0}
        self.requests.append(rec)
        flip = scope["path"] in self.corrupt_once
        self.corrupt_once.discard(scope["path"])
        abort = scope["path"] in self.abort_once
        self.abort_once.discard(scope["path"])

        async def tapped(message: dict[str, Any]) -> None:
            nonlocal flip
            if message["type"] == "http.response.start":
                rec["status"] = message["status"]
            elif message["type"] == "http.response.body" and message.get("body"):
                body = message["body"]
                if flip and len(body) > 600:
                    body = body[:600] + bytes([body[600] ^ 0x01]) + body[601:]
                    message, flip = dict(message, body=body), False
                if abort and rec["bytes"]:
                    raise ConnectionAbortedError("the tap cut this transfer")
                rec["bytes"] += len(body)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
            await send(message)

        await self.app(scope, receive, tapped)

    def fetched(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].startswith(FILES)]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "rig-data"


@pytest.fixture
def server(data: Path) -> Iterator[tuple[str, Tap]]:
    import uvicorn

    from capture.store import DatasetStore

    settings = make_settings(data, auth={"rate_limit_per_min": 100000})
    store = DatasetStore.open(data)
    tap = Tap(create_app(settings, rig=FakeRig(), store=store))
    tap.store, tap.settings = store, settings
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(tap, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", tap
    finally:
        srv.should_exit = True
        thread.join(10)
        store.close()


def snapshot(data: Path, snapshot_id: str = SNAP, **kw: Any) -> dict[str, Any]:
    return write_snapshot(data, snapshot_id, kw.pop("files", None) or sample_files(**kw))


def assert_verified(root: Path, manifest: dict[str, Any], fmt: str) -> None:
    chosen = [f for f in manifest["files"] if f["format"] in (fmt, "report")]
    for f in chosen:
        assert hashlib.sha256((root / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert not list(root.rglob("*.part"))
    assert (root / "manifest.json").is_file()


def test_pull_mirrors_one_format_verified(server: Any, data: Path, tmp_path: Path) -> None:
    url, _tap = server
    manifest = snapshot(data)
    result = pull(url, SNAP, tmp_path / "dest", key=TRAINER_KEY, fmt="webdataset", progress=False)
    assert_verified(result.root, manifest, "webdataset")
    wanted = [f for f in manifest["files"] if f["format"] in ("webdataset", "report")]
    assert result.files == result.fetched_files == len(wanted)
    assert result.bytes_fetched == result.bytes_total == sum(f["size"] for f in wanted)
    assert not (result.root / "folder").exists()
    assert (result.root / "manifest.json").read_bytes() == (
        data / "snapshots" / SNAP / "manifest.json"
    ).read_bytes()
    again = pull(url, SNAP, tmp_path / "dest", key=TRAINER_KEY, progress=False)
    assert again.skipped_files == len(wanted) and again.bytes_fetched == 0


def test_a_file_changed_locally_is_fetched_again(server: Any, data: Path, tmp_path: Path) -> None:
    url, tap = server
    manifest = snapshot(data)
    dest = tmp_path / "dest"
    pull(url, SNAP, dest, key=TRAINER_KEY, progress=False)
    shard = dest / SNAP / SHARD
    raw = bytearray(shard.read_bytes())
    raw[100] ^= 0xFF
    shard.unlink()  # NOTE: a new inode, so the object store's hard link keeps the good bytes
    shard.write_bytes(bytes(raw))
    tap.requests.clear()
    result = pull(url, SNAP, dest, key=TRAINER_KEY, progress=False)
    assert result.bytes_fetched == 0 and result.reused_files == 1
    assert_verified(dest / SNAP, manifest, "webdataset")


def test_resume_after_a_killed_pull_fetches_only_the_rest(
    server: Any, data: Path, tmp_path: Path
) -> None:
    url, tap = server
    manifest = snapshot(data, shards=2, shots_per_shard=4, payload=1_000_000)
    dest = tmp_path / "dest"
    tap.delay_s = 0.1
    code = (
        "import sys; from capture.pull.client import pull; "
        "pull(sys.argv[1], sys.argv[2], sys.argv[3], key=sys.argv[4], workers=2, progress=False)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, url, SNAP, str(dest), TRAINER_KEY], cwd=REPO
    )
    deadline = time.monotonic() + 60
    parts: list[Path] = []
    while child.poll() is None and time.monotonic() < deadline:
        parts = [p for p in (dest / SNAP).rglob("*.part") if p.stat().st_size > 1_000_000]
        if parts:
            break
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert parts, "the pull finished before it could be killed"
    root = dest / SNAP
    sizes = {f["path"]: f["size"] for f in manifest["files"]}
    kept = {
        str(p.relative_to(root))[: -len(".part")]: p.stat().st_size for p in root.rglob("*.part")
    }
    whole = [rel for rel in sizes if (root / rel).is_file()]
    partial = {rel: n for rel, n in kept.items() if 0 < n < sizes[rel]}
    assert partial, "no file was caught mid-transfer"
    tap.delay_s = 0.0
    tap.requests.clear()
    result = pull(url, SNAP, dest, key=TRAINER_KEY, progress=False)
    assert_verified(result.root, manifest, "webdataset")
    on_disk = sum(kept.values()) + sum(sizes[rel] for rel in whole)
    assert result.bytes_fetched == result.bytes_total - on_disk
    assert result.bytes_fetched == sum(r["bytes"] for r in tap.fetched())
    resumed = {r["path"][len(FILES) :]: r for r in tap.fetched() if r["range"]}
    for rel, n in partial.items():
        assert resumed[rel]["range"] == f"bytes={n}-".encode()
        assert resumed[rel]["status"] == 206 and resumed[rel]["bytes"] == sizes[rel] - n
    assert not any(r["path"][len(FILES) :] in whole for r in tap.fetched())


def test_a_transfer_cut_mid_file_resumes_within_the_same_pull(
    server: Any, data: Path, tmp_path: Path
) -> None:
    url, tap = server
    manifest = snapshot(data, shards=1, shots_per_shard=3, payload=1_000_000)
    tap.abort_once.add(FILES + SHARD)
    result = pull(url, SNAP, tmp_path / "dest", key=TRAINER_KEY, progress=False)
    assert_verified(result.root, manifest, "webdataset")
    first, second = [r for r in tap.fetched() if r["path"] == FILES + SHARD]
    assert first["range"] is None and 0 < first["bytes"] < entry_size(manifest, SHARD)
    assert second["range"] == f"bytes={first['bytes']}-".encode() and second["status"] == 206
    assert result.bytes_fetched == result.bytes_total


def entry_size(manifest: dict[str, Any], path: str) -> int:
    return next(f["size"] for f in manifest["files"] if f["path"] == path)


def test_a_corrupted_byte_is_detected_and_fetched_again(
    server: Any, data: Path, tmp_path: Path
) -> None:
    url, tap = server
    manifest = snapshot(data)
    tap.corrupt_once.add(FILES + SHARD)
    result = pull(url, SNAP, tmp_path / "dest", key=TRAINER_KEY, progress=False)
    assert result.checksum_retries == 1
    assert_verified(result.root, manifest, "webdataset")
    gets = [r for r in tap.fetched() if r["path"] == FILES + SHARD]
    assert [r["status"] for r in gets] == [200, 200]


def test_a_file_damaged_on_the_rig_fails_after_the_retries(
    server: Any, data: Path, tmp_path: Path
) -> None:
    url, tap = server
    snapshot(data)
    shard = data / "snapshots" / SNAP / SHARD
    raw = bytearray(shard.read_bytes())
    raw[700] ^= 0x01
    shard.write_bytes(bytes(raw))
    with pytest.raises(ChecksumMismatch, match=r"train-000000\.tar.*3 times"):
        pull(url, SNAP, tmp_path / "dest", key=TRAINER_KEY, retries=2, progress=False)
    assert len([r for r in tap.fetched() if r["path"] == FILES + SHARD]) == 3
    assert not (tmp_path / "dest" / SNAP / SHARD).exists()
    assert not (tmp_path / "dest" / SNAP / "manifest.json").exists()


def test_a_newer_snapshot_downloads_only_new_files(server: Any, data: Path, tmp_path: Path) -> None:
    url, _tap = server
    old = write_snapshot(data, SNAP, folder_files(range(1, 101)))
    new = write_snapshot(data, "snap-0002", folder_files(range(1, 102)))
    dest = tmp_path / "dest"
    first = pull(url, SNAP, dest, key=TRAINER_KEY, fmt="folder", progress=False)
    assert first.fetched_files == 103  # 100 images, metadata.jsonl, report.json/.md
    second = pull(url, "snap-0002", dest, key=TRAINER_KEY, fmt="folder", progress=False)
    known = {f["sha256"] for f in old["files"]}
    new_files = [f for f in new["files"] if f["format"] in ("folder", "report")]
    fresh = [f for f in new_files if f["sha256"] not in known]
    assert {f["path"] for f in fresh} >= {
        "folder/train/001-plate-1x2-blue/s00000101.jpg",
        "folder/train/metadata.jsonl",
    }
    assert second.bytes_fetched == sum(f["size"] for f in fresh)
    assert second.fetched_files == len(fresh)
    assert second.reused_files == len(new_files) - len(fresh)
    assert_verified(second.root, new, "folder")
    same = "folder/train/001-plate-1x2-blue/s00000001.jpg"
    assert os.path.samefile(dest / SNAP / same, dest / "snap-0002" / same)


def test_identical_files_are_fetched_once_and_odd_names_survive(
    server: Any, data: Path, tmp_path: Path
) -> None:
    url, tap = server
    files = folder_files(range(1, 4))
    copy = "folder/train/002-tile 1x1 rød #2/copy.jpg"
    files[copy] = files["folder/train/001-plate-1x2-blue/s00000001.jpg"]
    files["folder/train/002-tile 1x1 rød #2/s00000009.jpg"] = ("folder", b"another image")
    manifest = snapshot(data, files=files)
    result = pull(url, SNAP, tmp_path / "d", key=TRAINER_KEY, fmt="folder", progress=False)
    assert_verified(result.root, manifest, "folder")
    assert result.bytes_fetched == result.bytes_total - len(files[copy][1])
    same = [r for r in tap.fetched() if r["path"].endswith(("s00000001.jpg", "copy.jpg"))]
    assert len(same) == 1


def test_refusals_are_typed_errors(server: Any, data: Path, tmp_path: Path) -> None:
    url, _tap = server
    snapshot(data)
    with pytest.raises(AccessDenied, match="401"):
        pull(url, SNAP, tmp_path / "a", key=None, progress=False)
    with pytest.raises(AccessDenied, match="401"):
        pull(url, SNAP, tmp_path / "a", key="wrong-key", progress=False)
    with pytest.raises(AccessDenied, match=r"403.*trainer"):
        pull(url, SNAP, tmp_path / "a", key=VIEWER_KEY, progress=False)
    with pytest.raises(NotFound, match="snap-0042"):
        pull(url, "snap-0042", tmp_path / "a", key=TRAINER_KEY, progress=False)
    with pytest.raises(PullError, match="cannot reach"):
        pull("http://127.0.0.1:9", SNAP, tmp_path / "a", key=TRAINER_KEY, progress=False)


def test_a_full_disk_is_refused_up_front_saying_how_much_is_needed(
    server: Any, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, tap = server
    manifest = snapshot(data)
    need = sum(f["size"] for f in manifest["files"] if f["format"] in ("webdataset", "report"))
    monkeypatch.setattr(pull_module, "free_bytes", lambda path: need - 1)
    with pytest.raises(DiskFull, match=r"needs .* KB more .* only .* free"):
        pull(url, SNAP, tmp_path / "d", key=TRAINER_KEY, progress=False)
    assert tap.fetched() == []
    full = disk_error(OSError(errno.ENOSPC, "No space left"), tmp_path, 5_000_000)
    assert isinstance(full, DiskFull) and "5.0 MB" in str(full)


def test_unsafe_manifest_paths_and_unknown_formats_are_refused() -> None:
    for bad in ("../x", "/etc/passwd", "a/../../b", "", "a//b", ".partrig/objects/x", "f.part"):
        with pytest.raises(PullError):
            safe_relpath(bad)
    manifest = {"id": SNAP, "formats": ["webdataset"], "files": []}
    with pytest.raises(NotFound, match="not written in the coco format"):
        select_files(manifest, "coco")
    with pytest.raises(PullError, match="unknown format"):
        select_files(manifest, "zip")
    with pytest.raises(PullError, match="not a snapshot id"):
        pull("http://127.0.0.1:9", "../../etc", Path("/tmp"), key=TRAINER_KEY, progress=False)


def test_the_cli_pulls_and_reports_refusals(
    server: Any, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from web.cli import app

    url, _tap = server
    manifest = snapshot(data)
    args = ["dataset", "pull", url, "--snapshot", SNAP, "--dest", str(tmp_path / "d"), "-q"]
    monkeypatch.setenv("PARTRIG_KEY", TRAINER_KEY)
    ok = CliRunner().invoke(app, [*args, "--format", "coco"])
    assert ok.exit_code == 0, ok.output
    assert f"{SNAP} (coco)" in ok.output and "downloaded 3" in ok.output
    assert_verified(tmp_path / "d" / SNAP, manifest, "coco")
    monkeypatch.delenv("PARTRIG_KEY")
    refused = CliRunner().invoke(app, [*args, "--key", VIEWER_KEY])
    assert refused.exit_code == 2 and "403" in refused.output
    missing = CliRunner().invoke(app, args)
    assert missing.exit_code == 2 and "PARTRIG_KEY" in missing.output


def test_webdataset_streams_shards_from_the_rig_with_the_key_header(
    server: Any, data: Path
) -> None:
    import httpx
    import webdataset as wds

    url, tap = server
    snapshot(data, shards=3, shots_per_shard=2)
    info = httpx.get(
        f"{url}/api/snapshots/{SNAP}/shards", params={"split": "train"}, headers=TRAIN
    ).json()
    pattern = f"pipe:curl -s -f -H 'X-Api-Key: {TRAINER_KEY}' {info['pattern']}"
    samples = list(wds.WebDataset(pattern, shardshuffle=False).to_tuple("__key__", "cls", "json"))
    assert [key for key, _, _ in samples] == [f"s{n:08d}" for n in range(1, 7)]
    assert [int(cls) for _, cls, _ in samples] == [n % 2 for n in range(1, 7)]
    assert len([r for r in tap.fetched() if r["status"] == 200]) == 3


def store_shots(store: Any, first: int, count: int) -> None:
    """Real shots (distinct JPEGs) over two labels and four instances each."""
    from web_helpers import jpeg

    from capture.store import ShotRecord

    run_id = store.create_run("pull", "name = 'pull'", "{}", count)
    store.upsert_background(1, "sheet 1")
    for n in range(first, first + count):
        label = ("brick", "plate")[n % 2]
        record = ShotRecord(
            label=label,
            instance_id=f"{label}-{n // 2 % 4}",
            path="",
            sha256="0" * 64,
            size=0,
            run_id=run_id,
            shot_index=n,
            background_id=1,
            pose="up",
            angle_cmd=float(n),
        )
        store.save_shots([(f"images/{run_id}/{n:06d}.jpg", jpeg(value=n % 250), record)])


def test_snapshots_made_by_the_rig_pull_incrementally(server: Any, tmp_path: Path) -> None:
    from capture.snapshots.build import create_snapshot
    from capture.snapshots.filter import SnapshotFilter
    from capture.snapshots.splits import SplitRules

    url, tap = server
    rules = SplitRules(train=0.5, val=0.25, test=0.25)
    store_shots(tap.store, 0, 40)
    old = create_snapshot(tap.store, tap.settings, SnapshotFilter(), rules)
    store_shots(tap.store, 40, 2)
    new = create_snapshot(tap.store, tap.settings, SnapshotFilter(), rules)
    dest = tmp_path / "dest"
    for fmt in ("webdataset", "folder"):
        result = pull(url, old["id"], dest, key=TRAINER_KEY, fmt=fmt, progress=False)
        assert_verified(result.root, old, fmt)
    second = pull(url, new["id"], dest, key=TRAINER_KEY, fmt="folder", progress=False)
    assert_verified(second.root, new, "folder")
    known = {f["sha256"] for f in old["files"]}
    fresh = [f for f in new["files"] if f["format"] in ("folder", "report")]
    fresh = [f for f in fresh if f["sha256"] not in known]
    assert second.bytes_fetched == sum(f["size"] for f in fresh)
    assert sum(f["path"].endswith(".jpg") for f in fresh) == 2


def test_a_folder_snapshot_with_an_empty_class_and_zero_byte_files_pulls_completely(
    server: Any, tmp_path: Path
) -> None:
    from web_helpers import jpeg

    from capture.snapshots.build import create_snapshot
    from capture.snapshots.filter import SnapshotFilter
    from capture.snapshots.formats.folder import KEEP_FILE
    from capture.snapshots.splits import SplitRules
    from capture.store import ShotRecord

    url, tap = server
    for first in (0, 4, 8, 12):
        store_shots(tap.store, first, 4)  # four sessions of two classes
    # NOTE: split by session, the one session of a third class lands in one split only, so
    # the other splits hold an empty class folder with a zero-byte .keep file.
    run_id = tap.store.create_run("lone", "name = 'lone'", "{}", 1)
    record = ShotRecord(
        label="tile",
        instance_id="tile-0",
        path="",
        sha256="0" * 64,
        size=0,
        run_id=run_id,
        shot_index=0,
        background_id=1,
        pose="up",
        angle_cmd=0.0,
    )
    tap.store.save_shots([(f"images/{run_id}/000000.jpg", jpeg(value=7), record)])
    rules = SplitRules(train=0.5, val=0.25, test=0.25, group_by="session", allow_empty=True)
    manifest = create_snapshot(tap.store, tap.settings, SnapshotFilter(), rules, formats=["folder"])
    empties = [f for f in manifest["files"] if f["size"] == 0 and f["format"] == "folder"]
    assert empties and all(f["path"].endswith(f"/{KEEP_FILE}") for f in empties)
    dest = tmp_path / "dest"
    result = pull(url, manifest["id"], dest, key=TRAINER_KEY, fmt="folder", progress=False)
    assert_verified(result.root, manifest, "folder")
    for f in empties:
        keep = result.root / f["path"]
        assert keep.is_file() and keep.stat().st_size == 0
    assert (result.root / "manifest.json").read_bytes() == (
        tap.store.data_dir / "snapshots" / manifest["id"] / "manifest.json"
    ).read_bytes()
    # NOTE: zero-byte files never cost a request: their content is known from the manifest.
    fetched = {r["path"] for r in tap.fetched()}
    assert not any(p.endswith(KEEP_FILE) for p in fetched)
    again = pull(url, manifest["id"], dest, key=TRAINER_KEY, fmt="folder", progress=False)
    assert again.bytes_fetched == 0 and again.skipped_files == again.files


def test_each_folder_is_fsynced_once_after_its_files_and_before_the_manifest(
    server: Any, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from capture.pull import objects

    url, _tap = server
    manifest = snapshot(data, folder_shots=24)
    root = tmp_path / "dest" / SNAP
    synced: list[tuple[Path, bool, list[str]]] = []
    real_fsync_dir = objects.fsync_dir

    def recording_fsync_dir(directory: Path) -> None:
        # NOTE: what the folder holds when it is synced: no name may still be a .part.
        names = sorted(p.name for p in directory.iterdir())
        synced.append((directory, (root / "manifest.json").exists(), names))
        real_fsync_dir(directory)

    monkeypatch.setattr(objects, "fsync_dir", recording_fsync_dir)
    result = pull(url, SNAP, tmp_path / "dest", key=TRAINER_KEY, fmt="folder", progress=False)
    assert_verified(result.root, manifest, "folder")
    folders = {(root / f["path"]).parent for f in manifest["files"] if f["format"] == "folder"}
    assert len(folders) >= 3
    # Every folder that received names is synced exactly once, before the manifest exists; the
    # snapshot's own folder once more when the manifest itself is renamed into place.
    before = [d for d, manifest_there, _ in synced if not manifest_there]
    assert sorted(before) == sorted(set(before)) and folders <= set(before)
    assert [d for d, there, _ in synced if there] == [root]
    assert not [n for _, _, names in synced[:-1] for n in names if n.endswith(".part")]
