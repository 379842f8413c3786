"""SimFirmware: our firmware (or stock Marlin 2.1) simulated in Python behind a real pty.

Why a real pty: the host code under test must be exactly the code that runs on the Pi, so it
opens a serial device through pyserial as it would open ``/dev/ttyACM0``.  A thread serves the
master side; the host opens the slave (or the stable symlink ``link_path``).

What it reproduces (see ../../docs/protocol.md and the brief's protocol facts):

* the line protocol: ``N<n> ... *<cs>``, ``M110``, checksum / line-number errors followed by
  ``Resend: <k+1>`` and ``ok`` with the receive buffer flushed, silent drop of a repeated line,
  ADVANCED_OK ``ok N<n> P<planner free> B<command slots free>``, ``busy:`` keepalives during
  blocking commands (interval from ``M113``), ``echo:Unknown command``;
* the emergency parser: ``M112``, ``M410``, ``M108`` act as soon as the line arrives;
* boot: after a reset the board prints ``start`` and a banner; bytes sent while it boots are
  lost; position and the line counter start from zero;
* the two dialects: ``partrig`` (our C firmware) and ``marlin`` (Marlin 2.1: ``M42`` refuses
  protected pins unless ``I1``, the fan is ``M106``/``M107`` on D9, no ``G28`` without an
  endstop), the latter as one of the builds in :mod:`rig.sim.marlin_build` (``marlin``: the
  shipped config.ini; ``marlin-stock``: Marlin's defaults; ``[simulator.marlin]`` overrides);
* faults: corrupted lines either way, lost ``ok``, seeded so a failure can be replayed;
  ``reset()``, ``unplug()``/``replug()``, halt on ``M112``.

Motion is timed by :class:`~rig.sim.axis.SimAxis` (the trapezoid model) on a
:class:`~rig.sim.clock.SimClock`.  ``actual_angle_deg()`` is the physical angle the simulated
camera sees, mid-move too; ``light_level()`` is the light pin's duty in 0..1.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from pathlib import Path

from rig.config import SimConfig
from rig.sim.axis import SimAxis
from rig.sim.clock import SimClock
from rig.sim.gcode_exec import CommandExecutor, Dialect
from rig.sim.marlin_build import resolve

BUFSIZE = 4  # command slots, as stock Marlin on AVR
BOOT_S = 0.3  # simulated seconds from reset to "start"
EMERGENCY = ("M112", "M410", "M108")


class Aborted(Exception):
    """A blocking command was cut short by a reset, halt or shutdown."""


class SimFirmware:
    """A Marlin-dialect board on a pty.  ``start()`` it, point pyserial at ``port``."""

    def __init__(
        self,
        sim_config: SimConfig | None = None,
        clock: SimClock | None = None,
        *,
        dialect: str = "partrig",
        link_path: str | Path | None = None,
        steps_per_degree: float | None = None,
        light_pin: str = "D9",
        endstop: bool = False,
    ) -> None:
        if dialect not in ("partrig", "marlin", "marlin-stock"):
            raise ValueError(
                f"dialect must be 'partrig', 'marlin' or 'marlin-stock' (got {dialect!r})"
            )
        self.config = sim_config or SimConfig()
        self.clock = clock or SimClock(self.config.time_scale)
        self.dialect: Dialect = "partrig" if dialect == "partrig" else "marlin"
        #: The build options this board was compiled with (the profile plus overrides).
        self.build = resolve(dialect, self.config.marlin if dialect != "partrig" else None)
        self.link_path = Path(link_path) if link_path is not None else None
        self.axis = SimAxis(self.clock)
        self.exec = CommandExecutor(
            self,
            self.dialect,
            steps_per_degree=steps_per_degree,
            light_pin=light_pin,
            endstop=endstop,
            build=self.build,
        )
        self._rng = random.Random(self.config.seed)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_name = ""
        self._partial = bytearray()
        self._lines: deque[str] = deque()
        self._queue: deque[tuple[int | None, str]] = deque()
        self._gen = 0
        self._booting = True
        self.halted = False
        self.last_n = 0
        self.keepalive_s = 2.0
        self.resets = 0
        self.stats = {"lines": 0, "errors": 0, "dropped_ok": 0, "corrupt_in": 0, "corrupt_out": 0}

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """What the host opens: the stable symlink if there is one, else the pty slave."""
        return str(self.link_path) if self.link_path is not None else self._slave_name

    def start(self) -> SimFirmware:
        if self._thread is not None:
            return self
        self._open_pty()
        self._thread = threading.Thread(target=self._serve, name="sim-firmware", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the server thread, close the pty, remove the symlink.  Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_pty()
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()

    def __enter__(self) -> SimFirmware:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        # NOTE: the line discipline lives on the slave; raw mode there so bytes pass
        # untouched (no echo, no CR/LF mapping) before pyserial configures it again.
        tty.setraw(slave)
        os.set_blocking(master, False)
        with self._lock:
            self._master, self._slave = master, slave
            self._slave_name = os.ttyname(slave)
        if self.link_path is not None:
            tmp = self.link_path.with_name(self.link_path.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(self._slave_name, tmp)
            os.replace(tmp, self.link_path)  # atomic re-point: the path never dangles halfway

    def _close_pty(self) -> None:
        with self._lock:
            fds = (self._master, self._slave)
            self._master = self._slave = None
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # --- fault knobs -------------------------------------------------------------------------

    def reset(self) -> None:
        """A DTR reset: the motor stops where it is, position and line counter are lost."""
        with self._lock:
            self.axis.stop()
            self.axis.set_count(0)
            self.axis.enabled = False
            self.exec.power_on()
            self._gen += 1
            self._booting = True
            self.halted = False
            self.last_n = 0
            self.resets += 1
            self._lines.clear()
            self._queue.clear()
            self._partial.clear()

    def unplug(self) -> None:
        """Pull the USB cable: the port vanishes.  The board keeps power and keeps moving."""
        self._close_pty()
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()
        with self._lock:
            self._lines.clear()
            self._partial.clear()

    def replug(self, *, reset: bool = False) -> None:
        """Plug the cable back in: a new pty, the symlink points at it again."""
        if self._master is None:
            self._open_pty()
        if reset:
            self.reset()

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Wait (wall seconds) until the board has booted and printed its banner."""
        end = time.monotonic() + timeout
        while self._booting and time.monotonic() < end:
            time.sleep(0.002)
        return not self._booting

    @property
    def plugged(self) -> bool:
        return self._master is not None

    # --- what the simulated world reads -----------------------------------------------------

    def actual_angle_deg(self) -> float:
        """The turntable's true angle now, 0..360, from the pulses really made."""
        return (self.axis.steps_done() / self.exec.physical_steps_per_degree) % 360.0

    @property
    def steps_done(self) -> int:
        """Signed pulses made since power-up (what the harness counts on the step pin)."""
        return self.axis.steps_done()

    def light_level(self) -> float:
        return self.exec.light_level()

    # --- output ------------------------------------------------------------------------------

    def write_line(self, text: str, *, corruptible: bool = True) -> None:
        """Send one reply line to the host (lost if unplugged)."""
        if corruptible and self._chance(self.config.corrupt_to_host):
            text = self._corrupt(text)
            self.stats["corrupt_out"] += 1
        data = (text + "\n").encode("ascii", "replace")
        fd = self._master
        if fd is None:
            return
        while data:
            try:
                n = os.write(fd, data)
                data = data[n:]
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                return

    def send_ok(self, n: int | None) -> None:
        if self._chance(self.config.drop_ok):
            self.stats["dropped_ok"] += 1
            return
        if not self.build.advanced_ok:
            self.write_line("ok")  # NOTE: without ADVANCED_OK Marlin's ok says nothing more
            return
        head = f"ok N{n}" if n is not None else "ok"
        self.write_line(f"{head} P{self.axis.free_slots()} B{BUFSIZE - len(self._queue)}")

    def _chance(self, p: float) -> bool:
        return p > 0 and self._rng.random() < p

    def _corrupt(self, text: str) -> str:
        if not text:
            return text
        i = self._rng.randrange(len(text))
        new = chr(self._rng.randrange(33, 127))
        while new == text[i]:
            new = chr(self._rng.randrange(33, 127))
        return text[:i] + new + text[i + 1 :]

    # --- input -------------------------------------------------------------------------------

    def _pump(self, timeout: float) -> None:
        """Read what the host sent (waiting up to ``timeout`` wall seconds) into lines."""
        fd = self._master
        if fd is None:
            time.sleep(min(timeout, 0.01))
            return
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            data = os.read(fd, 4096) if ready else b""
        except (OSError, ValueError):
            # NOTE: EIO while no slave is open, EBADF right after an unplug: no data.
            time.sleep(min(timeout, 0.01))
            return
        if not data:
            return
        with self._lock:
            if self._booting or self.halted:
                return  # nobody listens: bytes sent during boot or after a kill are lost
            self._partial += data
            while True:
                cut = [i for i in (self._partial.find(b"\n"), self._partial.find(b"\r")) if i >= 0]
                if not cut:
                    break
                i = min(cut)
                raw = self._partial[:i].decode("ascii", "replace").strip()
                del self._partial[: i + 1]
                if not raw:
                    continue
                if self._chance(self.config.corrupt_to_firmware):
                    raw = self._corrupt(raw)
                    self.stats["corrupt_in"] += 1
                if self.build.emergency_parser:
                    self._emergency(raw)
                if not self.halted:
                    self._lines.append(raw)

    def _emergency(self, raw: str) -> None:
        """Marlin's EMERGENCY_PARSER: act on M112/M410/M108 the moment they arrive.

        Without it Marlin acts on an *unnumbered* one when its main loop reads the line
        (``_accept``), which a blocking command such as ``M400`` delays until it ends.
        """
        body = raw.split("*", 1)[0].strip()
        if body.startswith("N"):
            parts = body.split(None, 1)
            body = parts[1] if len(parts) > 1 else ""
        word = body.split(None, 1)[0].upper() if body else ""
        if word == "M112":
            self.kill()
        elif word == "M410":
            self.exec.quick_stop()

    def kill(self) -> None:
        """``kill()``: stop the motor, report, and ignore everything until a reset."""
        with self._lock:
            if self.halted:
                return
            self.axis.stop()
            self.axis.enabled = False
            # NOTE: our firmware's kill switches every MOSFET output off (firmware/src/idle.c);
            # Marlin's switches its heaters (D8, D10) off and leaves the fan pin (D9) as it was.
            for pin in (8, 10) if self.dialect.startswith("marlin") else (8, 9, 10):
                self.exec.pins.pop(pin, None)
            self.halted = True
            self._lines.clear()
            self._queue.clear()
            self._partial.clear()
        self.write_line("Error:Printer halted. kill() called!", corruptible=False)

    # --- line validation (Marlin's get_serial_commands) --------------------------------------

    def _line_error(self, message: str) -> None:
        self.stats["errors"] += 1
        self.write_line(f"Error:{message}, Last Line: {self.last_n}", corruptible=False)
        # NOTE: like Marlin, flush everything already received: the lines behind a bad one
        # must be sent again, which is what makes hosts see repeated Resend requests.
        self._lines.clear()
        self._partial.clear()
        self.write_line(f"Resend: {self.last_n + 1}", corruptible=False)
        self.send_ok(None)

    def _accept(self, raw: str) -> None:
        """Validate one received line and put its command in the queue (or reply an error)."""
        if not raw.startswith("N"):
            if "*" in raw and self.dialect == "marlin":
                # NOTE: Marlin 2.1 checks a checksum only on a numbered line: "M114*121"
                # runs as M114, whatever the number after the "*".
                raw = raw.split("*", 1)[0]
            elif "*" in raw:
                # NOTE: a checksum without a line number means the N itself was corrupted on
                # the wire; running the rest as an unnumbered command would execute garbage.
                self._line_error("No Line Number with checksum")
                return
            if not self.build.emergency_parser:
                self._emergency(raw)  # "process critical commands early" (queue.cpp)
                if self.halted:
                    return
            self._queue.append((None, raw.strip()))
            return
        star = raw.rfind("*")
        body = raw[:star] if star >= 0 else raw
        parts = body.split(None, 1)
        command = parts[1].strip() if len(parts) > 1 else ""
        is_m110 = command.upper().startswith("M110")
        try:
            n = int(parts[0][1:])
            if is_m110 and "N" in command.upper()[4:]:
                n = int(command.upper().split("N", 1)[1].split()[0])
        except (ValueError, IndexError):
            self._line_error("Line Number is not Last Line Number+1")
            return
        if not is_m110:
            if n == self.last_n:
                return  # NOTE: a repeat of the last accepted line is dropped without a reply
            if n != self.last_n + 1:
                self._line_error("Line Number is not Last Line Number+1")
                return
        if star < 0:
            self._line_error("No Checksum with line number")
            return
        cs = 0
        for ch in raw[:star].encode("ascii", "replace"):
            cs ^= ch
        try:
            ok = int(raw[star + 1 :].strip()) == cs
        except ValueError:
            ok = False
        if not ok:
            self._line_error("checksum mismatch")
            return
        self.last_n = n
        self._queue.append((n, command))

    # --- the serving loop --------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self._booting:
                self._boot()
                continue
            self._pump(0.0 if self._queue or self._lines else 0.02)
            with self._lock:
                while self._lines and len(self._queue) < BUFSIZE:
                    self._accept(self._lines.popleft())
                item = self._queue.popleft() if self._queue and not self.halted else None
                gen = self._gen
            if item is None:
                continue
            n, command = item
            self.stats["lines"] += 1
            try:
                replied = self.exec.execute(command, gen)
            except Aborted:
                continue
            if self._gen == gen and not self.halted and not replied:
                self.send_ok(n)

    def _boot(self) -> None:
        gen = self._gen
        if self.clock.virtual:
            self.clock.sleep(BOOT_S)
        else:
            self._pump_for(BOOT_S)
        with self._lock:
            if gen != self._gen:
                return
            self._pump_discard()
            self._booting = False
        self.write_line("start", corruptible=False)
        for line in self.exec.banner():
            self.write_line(line, corruptible=False)

    def _pump_for(self, sim_seconds: float) -> None:
        end = time.monotonic() + self.clock.wall_seconds(sim_seconds)
        while not self._stop.is_set() and time.monotonic() < end:
            self._pump(min(0.02, max(0.0, end - time.monotonic())))

    def _pump_discard(self) -> None:
        fd = self._master
        if fd is None:
            return
        with contextlib.suppress(OSError):
            while select.select([fd], [], [], 0)[0]:
                if not os.read(fd, 4096):
                    break

    def wait_until(self, target: Callable[[], float], gen: int) -> None:
        """Block a command until clock time ``target()``, sending ``busy:`` keepalives.

        Raises :class:`Aborted` when a reset, kill or shutdown cuts it short.  ``target`` is
        re-read each round so an ``M410`` arriving meanwhile ends an ``M400`` at once.
        """
        interval = self.keepalive_s
        next_busy = self.clock.now() + interval
        while True:
            if self._stop.is_set() or self._gen != gen or self.halted:
                raise Aborted
            now, until = self.clock.now(), target()
            if now >= until:
                return
            if interval > 0 and now >= next_busy:
                self.write_line("echo:busy: processing", corruptible=False)
                next_busy += interval
            step_to = min(until, next_busy) if interval > 0 else until
            if self.clock.virtual:
                self.clock.sleep_until(step_to)
                self._pump(0.0)
            else:
                self._pump(min(0.02, max(0.0, self.clock.wall_seconds(step_to - now))))


__all__ = ["Dialect", "SimFirmware"]
