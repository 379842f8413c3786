"""The G-code terminal: one line at a time to the board, with the link's own log beside it.

Why so guarded (contracts.md, #7): a raw line bypasses everything the host keeps true about the
board.  So the terminal is operator-only, refused while a capture run or the sorter is active
(either may be mid-move or mid-fire), and every line sent is recorded in the store (an incident
of kind ``gcode_terminal``, acknowledged at once: an audit record, not an alarm).  A line that
changes what the board believes about the axis (``G92``, ``M92``, ``M206``, ``M500``,
``M502``) or moves it behind the turntable's back (``G0``/``G1``/``G28``) gives the position up
(:meth:`rig.turntable.Turntable.mark_untrusted`): nothing moves again until the table is homed
or zero is confirmed, the same recovery as after a reset mid-move.

``M112`` is refused here: the EMERGENCY STOP button sends it out of band *and* stops the sorter,
the run and the lights.  ``M110`` is refused because the link numbers lines itself.

Reconnecting (and changing the port) lives in :mod:`web.routers.port`, with the start-up checks.
"""

from __future__ import annotations

import collections
import itertools
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from rig.errors import GcodeError, RigError, RunStateError
from rig.gcode import MAX_COMMAND_CHARS, validate
from web.deps import OperatorAuth, RigDep, StoreDep
from web.sorting import CAMERA_CLAIM

if TYPE_CHECKING:
    from rig.link_types import Link
    from rig.rig_types import Rig

router = APIRouter(prefix="/api/terminal", tags=["terminal"])

#: Commands after which the host can no longer believe the board's position.
UNTRUSTING = frozenset({"G92", "M92", "M206", "M500", "M502", "G0", "G1", "G28"})
#: Refused outright, with what to do instead.
REFUSED = {
    "M112": "press EMERGENCY STOP instead: it also stops the sorter, any run and the lights",
    "M110": "the link numbers its lines itself; M110 would break that numbering",
}
LOG_LINES = 500
AUDIT_KIND = "gcode_terminal"
REPLY_TIMEOUT_S = 30.0
_WORD = re.compile(r"^\s*([GMgm])0*(\d+)")


class TerminalLog:
    """The terminal's scrollback: sent lines, replies, refusals and the link's log records."""

    def __init__(self, size: int = LOG_LINES) -> None:
        self._lines: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, kind: str, text: str) -> None:
        with self._lock:
            self._lines.append(
                {"seq": next(self._seq), "at": time.time(), "kind": kind, "text": text}
            )

    def since(self, seq: int) -> list[dict[str, Any]]:
        with self._lock:
            return [line for line in self._lines if line["seq"] > seq]


class _LinkRecords(logging.Handler):
    """Copies the link's log records (``rig.link``, ``rig.turntable``) into the scrollback."""

    def __init__(self, log: TerminalLog) -> None:
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log.add("link", f"{record.levelname.lower()}: {record.getMessage()}")
        except Exception:  # NOTE: logging must never raise into the link's threads
            self.handleError(record)


LOG = TerminalLog()
_HANDLER = _LinkRecords(LOG)
for _name in ("rig.link", "rig.turntable"):
    logging.getLogger(_name).addHandler(_HANDLER)


class LineBody(BaseModel):
    line: str = Field(
        min_length=1, max_length=MAX_COMMAND_CHARS, description="one G-code command, e.g. M114"
    )


def command_word(line: str) -> str | None:
    """``"g1 x10"`` → ``"G1"``; ``"M092"`` → ``"M92"``; None for anything else."""
    hit = _WORD.match(line)
    return f"{hit[1].upper()}{int(hit[2])}" if hit else None


def require_idle(request: Request, what: str = "using the terminal") -> None:
    """409 while a capture run or the sorter is active (they own the board and the camera)."""
    runs = getattr(request.app.state, "runs", None)
    live = runs.live_run() if runs is not None else None
    if live is not None:
        raise RunStateError(
            f"run {live.run_id} is using the rig: let it finish or abort it before {what}"
        )
    sorter = getattr(request.app.state, "sorter", None)
    state = sorter.status().get("state") if sorter is not None else None
    if state not in (None, "stopped", "faulted"):
        raise RunStateError(f"the sorter is running: stop it before {what}")


def _link(rig: Rig) -> Link:
    link: Link | None = getattr(rig, "link", None)
    if link is None or getattr(rig, "turntable", None) is None:
        raise HTTPException(503, "this rig has no serial link to the board")
    return link


def _audit(store: Any, who: str, text: str) -> None:
    incident = store.add_incident(AUDIT_KIND, f"{who}: {text}")
    store.acknowledge_incident(incident, who)


@router.get("/log")
def terminal_log(
    who: OperatorAuth, after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0
) -> dict[str, Any]:
    """The scrollback after ``after``: sent lines, replies, refusals, the link's log."""
    lines = LOG.since(after)
    return {"lines": lines, "last": lines[-1]["seq"] if lines else after}


@router.post("/send")
def send_line(
    request: Request, body: LineBody, rig: RigDep, store: StoreDep, who: OperatorAuth
) -> dict[str, Any]:
    """Send one line and wait for its ``ok``; 409 while a run or the sorter is active.

    Audited in the store.  G92/M92/M206/M500/M502 (and G0/G1/G28) mark the position untrusted.
    """
    link = _link(rig)
    try:
        line = validate(body.line)
    except GcodeError as exc:
        LOG.add("refused", f"{body.line!r}: {exc}")
        raise
    word = command_word(line)
    if word in REFUSED:
        LOG.add("refused", f"{line}: {REFUSED[word]}")
        raise GcodeError(f"{word} is not sent from the terminal: {REFUSED[word]}")
    with CAMERA_CLAIM:
        try:
            require_idle(request)
        except RunStateError as exc:
            LOG.add("refused", f"{line}: {exc}")
            raise
    LOG.add("sent", line)
    untrusted = None
    try:
        reply = link.send(line, timeout=REPLY_TIMEOUT_S)
    except RigError as exc:
        LOG.add("error", str(exc))
        _audit(store, who.name, f"{line} → error: {exc}")
        raise
    finally:
        if word in UNTRUSTING:
            untrusted = f"{line} was sent from the G-code terminal"
            rig.turntable.mark_untrusted(untrusted)
    for text in reply:
        LOG.add("reply", text)
    LOG.add("reply", "ok")
    _audit(store, who.name, f"{line} → {' | '.join(reply) or 'ok'}")
    return {"line": line, "reply": reply, "position_untrusted": untrusted is not None}
