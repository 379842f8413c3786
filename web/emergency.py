"""The emergency stop as a privileged path: M112 first, from the event loop, then the rest.

Why two halves: the e-stop must reach the board ahead of every queue, lock and thread pool
(contracts.md, "Safety").  :meth:`EmergencyStop.press` runs on the server's event loop and
does only what cannot block: the rig's latch and ``M112`` written out of band to the serial
descriptor, the sorter told to halt, the actuator gate closed.  Everything that may wait (a
lock another thread holds, a valve pulse in progress, the database) runs afterwards on the
e-stop's own thread (:class:`FollowUpThread`), never in the shared pool that sign-in's argon2
and the sync routes use, so a flood of those cannot delay it either:

1. the link's fault is latched, and the lights recorded off (the halted board switched its
   outputs off);
2. the actuator waits out a pulse in progress and rests every output;
3. the fault is latched in the store (it survives a restart);
4. every live run (running, paused or waiting for the operator) ends ``interrupted`` with the
   reason "emergency stop": only an explicit Resume, after the fault is cleared and zero is
   re-established, continues it;
5. the sorter's loop is joined and its decision log committed.

The answer waits for the follow-up (at most :data:`FOLLOW_UP_WAIT_S`) so the page can say what
is safe; the ``M112`` never waits for anything.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from rig.errors import StoreError

log = logging.getLogger("web.estop")

REASON = "emergency stop"
#: How long the answer waits for the follow-up before saying it is still under way.
FOLLOW_UP_WAIT_S = 20.0
#: How long the follow-up waits for a run's engine or the sorter's loop to end.
JOIN_TIMEOUT_S = 15.0


class FollowUpThread:
    """One daemon thread that runs the e-stops' follow-ups in order (a double press queues)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="estop-follow-up", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``job`` on the thread; the returned future (of the calling loop) gets its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def run() -> None:
            try:
                result, error = job(), None
            except BaseException as exc:  # NOTE: reported to the waiting route, never lost
                result, error = None, exc
            loop.call_soon_threadsafe(_settle, future, result, error)

        self._jobs.put(run)
        return future

    def close(self) -> None:
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class EmergencyStop:
    """The e-stop of one app: see the module docstring.  Kept on ``app.state.estop``."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.follow_ups = FollowUpThread()
        #: Monotonic time of the last press and what its follow-up found (for the status page).
        self.last_pressed: float | None = None
        self.last_result: dict[str, Any] | None = None

    def press(self) -> tuple[bool, str | None]:
        """The part on the event loop: latch, ``M112`` out of band, sorter and actuator told.

        Returns (M112 written, a warning for the operator).  Never blocks, never raises.
        """
        self.last_pressed = time.monotonic()
        state = self.state
        written, warning = False, None
        rig = getattr(state, "rig", None)
        if rig is None:
            warning = "the rig is not open, so no stop command could be sent; switch it off"
        else:
            try:
                written = rig.emergency_stop() is not False
            except Exception as exc:  # NOTE: a dead link cannot move the motor either
                warning = f"the stop command could not be written ({exc}); switch the rig off"
            if not written and warning is None:
                warning = "the stop command could not be written; switch the rig off"
        sorter = getattr(state, "sorter", None)
        halt = getattr(sorter, "halt", None)
        if halt is not None:
            halt()
        gate = getattr(getattr(state, "sorting", None), "actuator", None)
        inhibit = getattr(gate, "inhibit", None)
        if inhibit is not None:
            inhibit(REASON)
        if warning:
            log.error("emergency stop: %s", warning)
        return written, warning

    def follow_up(self, who: str) -> dict[str, Any]:
        """The part that may wait (runs on the follow-up thread); returns what is now safe."""
        state = self.state
        t0 = time.monotonic()
        done: dict[str, Any] = {}
        rig = getattr(state, "rig", None)
        finish = getattr(rig, "finish_emergency_stop", None)
        if finish is not None:
            finish()
        lights = getattr(rig, "lights", None)
        done["lights"] = getattr(lights, "level", None)
        gate = getattr(getattr(state, "sorting", None), "actuator", None)
        wait_idle = getattr(gate, "wait_idle", None)
        done["actuator_safe"] = bool(wait_idle(JOIN_TIMEOUT_S)) if wait_idle else gate is None
        store = getattr(state, "store", None)
        try:
            if store is None:
                raise StoreError("no dataset store is open")
            store.latch_fault(f"emergency stop pressed by {who}")
            done["fault_latched"] = True
        except Exception as exc:
            log.error("emergency stop: the fault could not be recorded in the store: %s", exc)
            done["fault_latched"] = False
        runs = getattr(state, "runs", None)
        done["runs_interrupted"] = runs.interrupt_live(REASON, JOIN_TIMEOUT_S) if runs else []
        live = runs.live_run() if runs is not None else None
        # NOTE: a run whose move the e-stop cut short has usually ended by itself already
        # (interrupted, see capture/runs/engine.py), so it is not in runs_interrupted.
        done["live_run"] = None if live is None else live.run_id
        sorter = getattr(state, "sorter", None)
        if sorter is not None:
            try:
                sorter.stop(JOIN_TIMEOUT_S)
            except Exception as exc:
                log.error("emergency stop: stopping the sorter failed: %s", exc)
        done["sorter"] = getattr(sorter, "state", None) if sorter is not None else "absent"
        done["follow_up_ms"] = round((time.monotonic() - t0) * 1000.0, 1)
        log.warning(
            "emergency stop by %s: sorter %s, runs interrupted %s, lights %s, actuator %s",
            who,
            done["sorter"],
            done["runs_interrupted"] or "none",
            done["lights"],
            "at rest" if done["actuator_safe"] else "NOT confirmed at rest",
        )
        self.last_result = done
        return done

    def release(self) -> None:
        """The fault was cleared: the actuator may fire again (the sorter stays stopped)."""
        gate = getattr(getattr(self.state, "sorting", None), "actuator", None)
        release = getattr(gate, "release", None)
        if release is not None:
            release()

    def close(self) -> None:
        self.follow_ups.close()


def emergency_stop_of(state: Any) -> EmergencyStop:
    """The app's :class:`EmergencyStop`, made on first use (on the event loop: no race)."""
    estop = getattr(state, "estop", None)
    if estop is None:
        estop = EmergencyStop(state)
        state.estop = estop
    return estop
