"""A small scripted fake firmware on a real pty, for fault-injection tests of the link.

Why not the full simulator: these tests need to break the protocol in exact, repeatable ways
(corrupt line 5, lose the ok of line 7, reset in the middle of G4), which is easiest with a
peer whose every knob is a plain attribute.  It speaks Marlin's line protocol faithfully:
checksums, line numbers, Error + Resend + ok, silent drop of a repeated N, busy keepalives,
ADVANCED_OK (``ok N P B``), an emergency parser for ``M112`` and ``kill()``.

The host opens :attr:`Peer.path`, a symlink that survives :meth:`Peer.unplug`/``replug``.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

_LINE_RE = re.compile(r"^N(\d+) (.*)\*(\d+)$")


def _cs(text: str) -> int:
    cs = 0
    for b in text.encode():
        cs ^= b
    return cs


class Peer:
    """Fake Marlin over a pty.  Knobs are attributes; tests set them before or during a run."""

    def __init__(self, folder: Path, *, advanced_ok: bool = True, bufsize: int = 4) -> None:
        self.path = str(folder / "ttyPEER")
        self.advanced_ok = advanced_ok
        self.bufsize = bufsize
        self.name = "partrig-peer 1.0"
        # fault knobs
        self.corrupt: set[int] = set()  # incoming N treated as a checksum error, once each
        self.corrupt_always: set[int] = set()  # incoming N always rejected
        self.drop_ok: set[int] = set()  # N whose ok is not sent, once each
        self.flush_on_error = True  # Marlin flushes its RX buffer after a line error
        self.ok_after_resend = True
        self.reset_keeps_input = False  # True: lines received survive a reset (simavr's FIFO)
        self.busy_interval = 0.05  # None: no busy keepalives
        self.delays: dict[str, float] = {}  # command code -> seconds it blocks
        self.on_command: Callable[[Peer, str], bool] | None = None  # True: handled, no ok
        # called before each received line is handled; may stall the peer with wait_input()
        self.before_line: Callable[[Peer, str], None] | None = None
        # observation
        self.executed: list[str] = []
        self.received: list[str] = []
        self.stops_seen: list[str] = []  # unnumbered M410/M112 lines, as they arrived
        self.max_waiting = 0  # most complete lines buffered while one was being processed
        self.m112_at: float | None = None
        self.x = 0.0
        self.last_n = 0
        self.halted = False
        self.gen = 0
        self._buf = bytearray()
        self._lines: list[str] = []
        self._master: int | None = None
        self._slave: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peer", daemon=True)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Peer:
        self._plug()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.unplug()

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # NOTE: no echo, so the peer never reads back its own output
        with self._lock:
            self._master, self._slave = master, slave
        tmp = self.path + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)

    def unplug(self) -> None:
        """The USB cable is pulled: the host's reads and writes fail, the path disappears."""
        with self._lock:
            master, slave = self._master, self._slave
            self._master = self._slave = None
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
        if os.path.lexists(self.path):
            os.unlink(self.path)
        self._buf.clear()
        self._lines.clear()

    def replug(self, after: float = 0.0) -> None:
        if after:
            threading.Timer(after, self._plug).start()
        else:
            self._plug()

    def reset(self) -> None:
        """The board resets: state lost, ``start`` and a banner printed."""
        self.gen += 1  # NOTE: aborts a blocking command in progress, as a real reset does
        self.last_n = 0
        self.x = 0.0
        self.halted = False
        if not self.reset_keeps_input:
            self._buf.clear()
            self._lines.clear()
        self.write("start", "echo:partrig-peer booted")

    def kill(self) -> None:
        self.halted = True
        self.write("Error:Printer halted. kill() called!")

    def write(self, *lines: str) -> None:
        data = "".join(line + "\n" for line in lines).encode()
        with self._lock:
            fd = self._master
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(fd, data)

    # --- the receive loop ------------------------------------------------------------------

    def _fill(self, timeout: float) -> None:
        """Read what arrived into complete lines; act on M112 at once (emergency parser)."""
        with self._lock:
            fd = self._master
        if fd is None:
            time.sleep(timeout)
            return
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return
            data = os.read(fd, 4096)
        except OSError:
            time.sleep(timeout)
            return
        self._buf += data
        while (i := self._buf.find(b"\n")) >= 0:
            line = self._buf[:i].decode(errors="replace").strip()
            del self._buf[: i + 1]
            if line in ("M410", "M112"):
                self.stops_seen.append(line)  # in arrival order, before any handling
            if line == "M112":
                # NOTE: timed on arrival but published after the halt line is written, so a test
                # that waits for m112_at and then resets the peer never puts "start" first.
                arrived = time.monotonic()
                self.kill()
                self.m112_at = arrived
            elif line:
                self._lines.append(line)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._lines:
                self._fill(0.02)
                continue
            line = self._lines.pop(0)
            self.max_waiting = max(self.max_waiting, len(self._lines))
            if self.before_line is not None:
                self.before_line(self, line)
            if not self.halted:
                self._handle(line)

    def wait_input(self, until: Callable[[list[str]], bool], timeout: float) -> bool:
        """Stall (a busy or booting board): keep receiving, handle nothing, until ``until``
        holds for the lines buffered behind the current one, or ``timeout`` passes."""
        end = time.monotonic() + timeout
        while not self._stop.is_set() and time.monotonic() < end:
            if until(self._lines):
                return True
            self._fill(0.01)
        return until(self._lines)

    def _line_error(self, msg: str) -> None:
        if self.flush_on_error:
            self._lines.clear()
        self.write(f"Error:{msg}, Last Line: {self.last_n}", f"Resend: {self.last_n + 1}")
        if self.ok_after_resend:
            self.write("ok")

    def _handle(self, line: str) -> None:
        self.received.append(line)
        n = None
        if line.startswith("N"):
            m = _LINE_RE.match(line)
            if m is None:
                self._line_error("No Checksum with line number")
                return
            n, cmd, cs = int(m.group(1)), m.group(2), int(m.group(3))
            bad = n in self.corrupt or n in self.corrupt_always
            self.corrupt.discard(n)
            if bad or _cs(f"N{m.group(1)} {cmd}") != cs:
                self._line_error("checksum mismatch")
                return
            if cmd.startswith("M110"):
                self.last_n = n
                self._ok(n)
                return
            if n == self.last_n:
                return  # NOTE: Marlin drops a repeated line without a word
            if n != self.last_n + 1:
                self._line_error("Line Number is not Last Line Number+1")
                return
            self.last_n = n
        else:
            cmd = line
        self._execute(cmd, n)

    def _execute(self, cmd: str, n: int | None) -> None:
        self.executed.append(cmd)
        gen = self.gen
        if self.on_command is not None and self.on_command(self, cmd):
            return
        words = cmd.split()
        code = words[0]
        args = {w[0]: w[1:] for w in words[1:] if w}
        out: list[str] = []
        if code == "M115":
            cap = 1 if self.advanced_ok else 0
            out = [
                f"FIRMWARE_NAME:{self.name} PROTOCOL_VERSION:1.0 MACHINE_TYPE:turntable",
                f"Cap:ADVANCED_OK:{cap}",
                "Cap:EMERGENCY_PARSER:1",
            ]
        elif code == "M114":
            steps = round(self.x * 8.8889)
            out = [f"X:{self.x:.2f} Y:0.00 Z:0.00 E:0.00 Count X:{steps} Y:0 Z:0"]
        elif code in ("G92", "G1", "G0"):
            if "X" in args:
                self.x = float(args["X"])
        elif code == "M118":
            out = [cmd[5:]]
        elif code == "G4":
            self._block(float(args.get("P", "0")) / 1000 + float(args.get("S", "0")))
        elif code in ("M42", "M400", "M17", "M18", "G90", "G91", "M106", "M107", "M110"):
            pass
        else:
            out = [f'echo:Unknown command: "{cmd}"']
        if code in self.delays:
            self._block(self.delays[code])
        if self.halted or gen != self.gen:
            return
        self.write(*out)
        if n is not None and n in self.drop_ok:
            self.drop_ok.discard(n)
            return
        self._ok(n)

    def _block(self, seconds: float) -> None:
        """Run a blocking command: keep receiving (M112 still acts), send busy keepalives."""
        end = time.monotonic() + seconds
        gen = self.gen
        next_busy = time.monotonic() + (self.busy_interval or seconds + 1)
        while not self.halted and gen == self.gen and (now := time.monotonic()) < end:
            if self.busy_interval and now >= next_busy:
                self.write("echo:busy: processing")
                next_busy = now + self.busy_interval
            self._fill(min(0.01, end - now))

    def _ok(self, n: int | None) -> None:
        if self.advanced_ok and n is not None:
            free = max(0, self.bufsize - 1 - len(self._lines))
            self.write(f"ok N{n} P15 B{free}")
        else:
            self.write("ok")
