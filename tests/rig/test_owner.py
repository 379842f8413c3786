"""The data folder's lock: one owner at a time, named to everyone else, gone when it dies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rig.errors import RigBusy, RigError
from rig.owner import DataFolderLock, client_url, current_owner, hardware_owner, lock_path


def test_the_holder_is_named_to_a_second_taker_until_it_lets_go(tmp_path: Path) -> None:
    with DataFolderLock(tmp_path, "serve", url="http://127.0.0.1:8123") as lock:
        assert lock.held
        owner = current_owner(tmp_path)
        assert owner is not None and owner.pid == os.getpid() and owner.is_server
        assert owner.describe() == f"partrig serve (pid {os.getpid()}, http://127.0.0.1:8123)"
        with pytest.raises(RigBusy, match=r"partrig serve \(pid \d+, http://127.0.0.1:8123\)"):
            DataFolderLock(tmp_path, "serve").acquire(wait_s=0.1)
    assert current_owner(tmp_path) is None
    with DataFolderLock(tmp_path, "capture"):
        owner = current_owner(tmp_path)
        assert owner is not None and owner.command == "capture" and not owner.is_server


def test_a_stale_lock_file_from_a_dead_owner_blocks_nobody(tmp_path: Path) -> None:
    stale = {"pid": 999999, "command": "serve", "url": "http://x", "data_dir": "", "since": ""}
    lock_path(tmp_path).write_text(json.dumps(stale))
    assert current_owner(tmp_path) is None
    with DataFolderLock(tmp_path, "serve", url="http://127.0.0.1:1"):
        assert current_owner(tmp_path).pid == os.getpid()  # type: ignore[union-attr]


def test_a_killed_owner_releases_the_folder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from rig.owner import DataFolderLock; "
            f"lock = DataFolderLock({str(tmp_path)!r}, 'serve', url='http://x:9').acquire(); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        owner = current_owner(tmp_path)
        assert owner is not None and owner.pid == holder.pid
        with pytest.raises(RigBusy, match=f"pid {holder.pid}"):
            DataFolderLock(tmp_path, "serve").acquire(wait_s=0.1)
    finally:
        holder.kill()
        holder.wait(10)
    assert current_owner(tmp_path) is None
    DataFolderLock(tmp_path, "serve").acquire(wait_s=0.1).close()


def test_readers_probing_the_lock_never_make_a_taker_fail(tmp_path: Path) -> None:
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            current_owner(tmp_path)

    lock_path(tmp_path).touch()
    readers = [threading.Thread(target=probe, daemon=True) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for _ in range(20):
            DataFolderLock(tmp_path, "serve").acquire().close()
    finally:
        stop.set()
        for t in readers:
            t.join(5)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"ok": True, "service": "partrig"}).encode()
        self.send_response(200 if self.path == "/api/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_on_another_data_folder_still_owns_the_rig_through_its_port(
    tmp_path: Path,
) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        owner = hardware_owner(tmp_path, "127.0.0.1", port)
        assert owner is not None and owner.is_server and owner.url == client_url("0.0.0.0", port)
        # a simulated rig shares no hardware: only its data folder's lock counts
        assert hardware_owner(tmp_path, "127.0.0.1", port, probe_port=False) is None
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert hardware_owner(tmp_path, "127.0.0.1", port) is None


def test_the_lock_names_the_url_a_local_client_can_reach() -> None:
    assert client_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert client_url("::1", 8000) == "http://[::1]:8000"
    assert client_url("rig.local", 80) == "http://rig.local:80"


def test_an_unwritable_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    target = Path("/proc/partrig-data") if os.geteuid() == 0 else tmp_path / "ro" / "data"
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o500)
    with pytest.raises(RigError, match="cannot create the lock file") as info:
        DataFolderLock(target, "serve").acquire()
    assert not isinstance(info.value, RigBusy)


def test_a_holder_dropped_without_close_lets_go(tmp_path: Path) -> None:
    import gc

    DataFolderLock(tmp_path, "serve").acquire()
    gc.collect()
    assert current_owner(tmp_path) is None
