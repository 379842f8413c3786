"""Progress events of a capture run, with sequence numbers, for the web page and the CLI.

Why sequence numbers and a replay buffer: the web app pushes these over server-sent events, and a
page that reconnects sends ``Last-Event-ID``; :meth:`RunEvents.since` gives it exactly the events
it missed.  Callbacks run on the engine's threads, so a slow or failing listener must never stall
or break the run: exceptions from listeners are logged and swallowed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("capture.runs.run")


@dataclass(frozen=True)
class RunEvent:
    """One thing that happened to a run.

    ``kind`` is ``state`` (the run changed state; ``data`` has ``state``, ``prompt``,
    ``action``, ``reason``), ``shot`` (a shot was captured: ``n``, ``total``, ``label``,
    ``instance``, ``pose``, ``background``, ``angle``, ``light``), ``stored`` (a shot's file and
    row are durable: ``index``, ``shot_id``) or ``info`` (a message: ``text``).  Every event
    also carries ``done``, ``total``, ``elapsed_s`` and ``eta_s``.
    """

    seq: int
    run_id: int
    kind: str
    t: float
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Listener = Callable[[RunEvent], None]


class RunEvents:
    """Publishes a run's events to subscribers and keeps the last ``keep`` for replay."""

    def __init__(self, run_id: int, keep: int = 1000) -> None:
        self.run_id = run_id
        self._lock = threading.Lock()
        self._seq = 0
        self._recent: deque[RunEvent] = deque(maxlen=keep)
        self._listeners: list[Listener] = []

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` for every later event; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def since(self, seq: int) -> list[RunEvent]:
        """The kept events with a sequence number above ``seq`` (0 gives all that are kept)."""
        with self._lock:
            return [e for e in self._recent if e.seq > seq]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def publish(self, kind: str, data: dict[str, Any]) -> RunEvent:
        with self._lock:
            self._seq += 1
            event = RunEvent(self._seq, self.run_id, kind, time.time(), dict(data))
            self._recent.append(event)
            listeners = list(self._listeners)
        for callback in listeners:
            try:
                callback(event)
            except Exception:
                # NOTE: a broken page or progress bar must not fail a capture run.
                log.exception("run %s: event listener failed", self.run_id)
        return event
