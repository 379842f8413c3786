"""How ``partrig serve`` runs uvicorn: one worker, a request-receipt deadline, enough files.

Why not ``uvicorn.run`` with its defaults: uvicorn has no header-read timeout, so a client that
sends a request one byte a minute (slowloris) holds its connection, and its file descriptor,
forever; 1,100 of them under systemd's default of 1,024 open files left no descriptor for the
e-stop.  Three limits fix that without a global concurrency cap (which would refuse the
e-stop once slow clients filled it):

* **Request-receipt deadline** (``web.header_timeout_s``): :class:`DeadlineH11Protocol`, a
  subclass of uvicorn's h11 protocol, closes a connection whose request line and headers have
  not all arrived within the deadline, counted from the connection (or, on a kept-alive
  connection, from the next request's first byte).  A request that arrived in time is never
  cut, however long its answer streams (the preview, server-sent events).  We subclass rather
  than wrap: the protocol is the one place that sees the bytes before a request exists.
* **Keep-alive** (``web.keep_alive_s``): an idle kept-alive connection is closed after this.
* **Open files**: the soft ``RLIMIT_NOFILE`` is raised to the hard limit at start
  (:func:`raise_open_file_limit`); the systemd unit sets ``LimitNOFILE=8192``.

The interpreter's GIL switch interval is lowered to :data:`SWITCH_INTERVAL_S`, so the event
loop (where the e-stop runs) waits less behind CPU-bound threads.

The h11 protocol is chosen explicitly (not httptools) so the deadline is always in force.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("web.server")

#: How long a thread waiting for the GIL waits before asking for it (Python's default: 5 ms).
SWITCH_INTERVAL_S = 0.001

#: What a client too slow to send its headers gets before the connection closes.
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 47\r\n\r\n"
    b"the request's headers did not arrive in time.\r\n"
)


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for receiving each request's headers.

    ``header_timeout_s`` is set per server by :func:`deadline_protocol`.
    """

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self._header_deadline is None and self.conn.their_state is h11.IDLE:
            # NOTE: the first byte of the next request on a kept-alive connection.
            self._arm_header_deadline()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_deadline()  # the request line and headers are all in

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(
            self.header_timeout_s, self._header_deadline_passed
        )

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # NOTE: a response is still streaming on this connection: not ours to cut
        log.debug("closing %s: no request headers in %.0f s", self.client, self.header_timeout_s)
        try:
            self.transport.write(TIMEOUT_RESPONSE)
        finally:
            self.transport.close()


def deadline_protocol(header_timeout_s: float) -> type[DeadlineH11Protocol]:
    """A :class:`DeadlineH11Protocol` subclass with this server's deadline."""
    return type(
        "DeadlineH11Protocol",
        (DeadlineH11Protocol,),
        {"header_timeout_s": float(header_timeout_s)},
    )


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns (soft, hard) afterwards.

    Why: every connection, slow or not, costs a descriptor, and the default soft limit (1,024)
    is far below what the kernel allows this process.  Where the platform has no such limit
    (or refuses), the limits stay as they were.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return (soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, exc)
        return (soft, hard)
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def server_config(app: Any, settings: Any, host: str, port: int, **extra: Any) -> Any:
    """The uvicorn configuration ``partrig serve`` runs with (see the module docstring)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        http=deadline_protocol(settings.web.header_timeout_s),
        timeout_keep_alive=int(max(1, round(settings.web.keep_alive_s))),
        # NOTE: no limit_concurrency: a cap full of slow clients would answer the e-stop 503.
        limit_concurrency=None,
        backlog=2048,
        log_level="info",
        **extra,
    )


def run_server(app: Any, settings: Any, host: str, port: int, **extra: Any) -> None:
    """Raise the open-files limit, then serve ``app`` until Ctrl-C or SIGTERM."""
    import uvicorn

    soft, hard = raise_open_file_limit()
    log.info("open files: soft limit %s, hard limit %s", soft, hard)
    # NOTE: the event loop shares the GIL with the sorter, the run engine and the preview
    # encoder; a shorter switch interval lets it (and so the e-stop) in sooner (default 5 ms).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    uvicorn.Server(server_config(app, settings, host, port, **extra)).run()
