"""The capture runs this server process drives, by id.

Why a registry: a :class:`~capture.runs.run.CaptureRun` object owns its engine thread and its replay
buffer of events, so every request about a run must reach the *same* object.  Runs not yet in
memory (created before a restart) are loaded from the store on first use, in their stored state;
they are never restarted by themselves (the lifespan marks them interrupted).

One run at a time: the rig has one turntable, so starting a second run while one is live is an
invalid transition (409).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from rig.errors import RunStateError

log = logging.getLogger("web.runs")


class RunRegistry:
    """Creates, finds and stops the server's capture runs."""

    def __init__(self, store: Any, rig: Any, settings: Any) -> None:
        self.store = store
        self.rig = rig
        self.settings = settings
        self._runs: dict[int, Any] = {}
        self._lock = threading.Lock()

    def create(self, plan_toml: str, name: str | None = None) -> Any:
        """Validate the plan (PlanError names the bad field) and record a pending run."""
        from capture.runs.run import CaptureRun

        run = CaptureRun.create(self.store, self.rig, plan_toml, name=name, settings=self.settings)
        with self._lock:
            self._runs[run.run_id] = run
        return run

    def get(self, run_id: int) -> Any:
        """The run object (NotFound from the store for an unknown id)."""
        from capture.runs.run import CaptureRun

        with self._lock:
            run = self._runs.get(int(run_id))
            if run is None:
                run = CaptureRun.load(self.store, self.rig, int(run_id), settings=self.settings)
                self._runs[run.run_id] = run
            return run

    def known(self, run_id: int) -> Any | None:
        """The run object when this process has it in memory, else None (no store access)."""
        with self._lock:
            return self._runs.get(int(run_id))

    def live_run(self) -> Any | None:
        """The run whose engine thread is alive, if any."""
        with self._lock:
            for run in self._runs.values():
                if run.alive:
                    return run
        return None

    def start(self, run_id: int) -> Any:
        """Start (or restart an interrupted/failed) run; 409 while another run is live."""
        run = self.get(run_id)
        other = self.live_run()
        if other is not None and other.run_id != run.run_id:
            raise RunStateError(
                f"cannot start run {run.run_id}: run {other.run_id} is using the rig; "
                "pause-and-abort it or wait until it ends"
            )
        run.start()
        return run

    def interrupt_live(self, reason: str, timeout_s: float = 10.0) -> list[int]:
        """End every live run as ``interrupted`` (paused and prompting ones too) and wait for
        their engines to stop; returns their ids.  The e-stop calls this."""
        with self._lock:
            runs = [run for run in self._runs.values() if run.alive]
        for run in runs:
            try:
                run.interrupt(reason)
            except RunStateError as exc:  # NOTE: it ended meanwhile: nothing left to stop
                log.info("run %s: %s", run.run_id, exc)
        for run in runs:
            run.wait(timeout_s)
        return [run.run_id for run in runs]

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop live runs so they can be resumed later (they end ``interrupted``)."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            if run.alive:
                try:
                    run.interrupt("the server stopped while the run was live")
                except RunStateError as exc:
                    log.warning("run %s: %s", run.run_id, exc)
                run.wait(timeout_s)
