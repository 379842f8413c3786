"""Who owns the rig: an exclusive lock on the data folder, held for as long as a process drives
the hardware or writes the store.

Why a lock and not a port probe: contracts.md says one process owns the serial port, the camera
and GPIO.  Asking "does something answer on the configured port?" misses a server started with
``--port``, ``--data`` or another configuration, and says nothing about a ``partrig capture
--local`` in another terminal.  The lock cannot miss either: ``partrig serve`` (and any command
that opens the rig or writes the store by itself) holds ``fcntl.flock(LOCK_EX)`` on
``<data.dir>/partrig.lock`` and writes who it is into the file (pid, command, the URL of its
API).  The kernel drops the lock when the process dies, however it dies, so a stale file left
behind by a crash never blocks anyone: only the lock says whether someone holds it, the JSON
only says who.

Readers (:func:`current_owner`) test the lock with a non-blocking shared lock, held for
microseconds; :meth:`DataFolderLock.acquire` therefore retries for :data:`ACQUIRE_WAIT_S`
before it concludes the folder is really taken.

Example::

    with DataFolderLock(settings.data.dir, "serve", url="http://127.0.0.1:8000"):
        ...  # recovery, temp-file cleanup, the rig: only the holder does these
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rig.errors import RigBusy, RigError

LOCK_NAME = "partrig.lock"
#: How long acquire() retries: a reader's probe holds the shared lock for microseconds.
ACQUIRE_WAIT_S = 1.0
#: How long a reader waits for a holder that has the lock but has not yet written who it is.
READ_WAIT_S = 0.5
HEALTH_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class Owner:
    """The process that holds a data folder (as written into its lock file)."""

    pid: int
    command: str
    url: str | None
    data_dir: str
    since: str

    @property
    def is_server(self) -> bool:
        """A ``partrig serve`` whose API other commands can use instead of the hardware."""
        return self.command == "serve" and bool(self.url)

    def describe(self) -> str:
        """E.g. ``partrig serve (pid 1234, http://127.0.0.1:8000)``."""
        who = f"partrig {self.command}" if self.command else "another partrig process"
        bits = [f"pid {self.pid}" if self.pid > 0 else "pid unknown"]
        if self.url:
            bits.append(self.url)
        return f"{who} ({', '.join(bits)})"


def client_url(host: str, port: int) -> str:
    """The URL a process on this machine uses to reach a server bound to ``host:port``."""
    if host in ("0.0.0.0", "::", "", "[::]"):
        host = "127.0.0.1"  # NOTE: a wildcard bind is reachable on loopback.
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def lock_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / LOCK_NAME


class DataFolderLock:
    """The exclusive lock on one data folder; a context manager, :meth:`close` is idempotent."""

    def __init__(self, data_dir: Path | str, command: str, *, url: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.command = command
        self.url = url
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait_s: float = ACQUIRE_WAIT_S) -> DataFolderLock:
        """Take the lock, or raise RigBusy naming the holder; returns self."""
        if self._fd is not None:
            return self
        fd = self._open()
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    owner = current_owner(self.data_dir) or _unknown_owner(self.data_dir)
                    raise RigBusy(
                        f"{owner.describe()} already owns the data folder {self.data_dir}: "
                        f"stop it first, or give `partrig {self.command}` another data folder",
                        owner,
                    ) from None
                time.sleep(0.02)
        # NOTE: truncate only once the lock is ours: the file holds the previous owner's name
        # until then, and a reader of a held lock must never see it half written for long.
        me = Owner(os.getpid(), self.command, self.url, str(self.data_dir.resolve()), _now())
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(asdict(me)).encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise RigError(f"cannot write the lock file {lock_path(self.data_dir)}: {exc}") from exc
        self._fd = fd
        return self

    def _open(self) -> int:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            return os.open(lock_path(self.data_dir), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RigError(
                f"cannot create the lock file {lock_path(self.data_dir)} ({exc.strerror}): "
                "check that data.dir exists and this user may write to it"
            ) from exc

    def close(self) -> None:
        """Release the lock (the file stays; a released lock is what says nobody holds it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __del__(self) -> None:
        # NOTE: a holder dropped without close() (a start-up that failed half way) must not
        # keep the folder locked for as long as this process lives.
        self.close()

    def __enter__(self) -> DataFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.close()


def current_owner(data_dir: Path | str) -> Owner | None:
    """The process holding ``data_dir``'s lock, or None when nobody holds it."""
    try:
        fd = os.open(lock_path(data_dir), os.O_RDONLY)
    except OSError:
        return None  # NOTE: no lock file (or none we may read): no server ever used this folder.
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fd, data_dir)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_owner(fd: int, data_dir: Path | str) -> Owner:
    deadline = time.monotonic() + READ_WAIT_S
    while True:
        try:
            raw = json.loads(os.pread(fd, 4096, 0) or b"null")
            return Owner(
                pid=int(raw["pid"]),
                command=str(raw.get("command") or ""),
                url=str(raw["url"]) if raw.get("url") else None,
                data_dir=str(raw.get("data_dir") or data_dir),
                since=str(raw.get("since") or ""),
            )
        except (ValueError, TypeError, KeyError, OSError):
            if time.monotonic() >= deadline:
                return _unknown_owner(data_dir)
            time.sleep(0.02)


def _unknown_owner(data_dir: Path | str) -> Owner:
    return Owner(0, "", None, str(data_dir), "")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def hardware_owner(
    data_dir: Path | str, host: str, port: int, *, probe_port: bool = True
) -> Owner | None:
    """Who owns the rig: the data folder's lock holder, else a server answering on the
    configured address (one started on another data folder still owns the serial port).

    ``probe_port=False`` for a simulated rig: it shares no hardware with another process, so
    only the data folder can be contended.
    """
    owner = current_owner(data_dir)
    if owner is not None or not probe_port:
        return owner
    import httpx

    url = client_url(host, port)
    try:
        reply = httpx.get(url + "/api/health", timeout=HEALTH_TIMEOUT_S)
        body: Any = reply.json() if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if isinstance(body, dict) and body.get("service") == "partrig":
        return Owner(0, "serve", url, str(data_dir), "")
    return None


def refuse(owner: Owner, doing: str, instead: str) -> RigBusy:
    """The error for a command that may not run beside ``owner`` (to raise)."""
    return RigBusy(
        f"{owner.describe()} owns the rig and the data folder {owner.data_dir}, so {doing} "
        f"cannot run here: {instead}",
        owner,
    )
