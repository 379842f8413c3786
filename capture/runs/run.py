"""``CaptureRun``: a capture run's state machine, its controls and its engine thread.

Why this shape: the web app, the CLI and tests drive a run from other threads (start, pause,
resume, abort, answer a prompt) while one engine thread moves the turntable and captures.  Every
state change goes through :meth:`CaptureRun._transition`, which checks it against
:data:`capture.runs.state.TRANSITIONS`, persists it in the store *before* anyone is told, and
publishes an event; so a process killed at any moment leaves the run in a state a restart can
resume from exactly (:func:`recover_interrupted_runs`, then :meth:`CaptureRun.start`).

Typical use::

    store = DatasetStore.open(settings.data.dir)
    rig = open_rig(settings)
    run = CaptureRun.create(store, rig, plan_toml, settings=settings)
    run.subscribe(print)
    run.start()
    ...                      # run.answer_prompt() when the event says awaiting_operator
    run.wait()
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from capture.runs.eta import ActiveClock
from capture.runs.events import Listener, RunEvent, RunEvents
from capture.runs.state import (
    FINAL_STATES,
    LIVE_STATES,
    STARTABLE_STATES,
    Aborted,
    RunState,
    check_transition,
    parse_state,
)
from rig.errors import FaultLatched, RunStateError

if TYPE_CHECKING:
    from capture.plans.schema import Plan
    from capture.runs.pipeline import PhaseHook
    from capture.runs.ports import RunStore
    from capture.runs.tools import CaptureTools
    from rig.config import Settings
    from rig.rig_types import Rig

log = logging.getLogger("capture.runs.run")

S = RunState


def _catalogue_from_plan(store: RunStore, plan: Plan) -> None:
    """The plan's part attributes merged over the catalogue's (docs/datasets.md); the rest of a
    part's catalogue entry (its name, attributes the plan does not give) stays."""
    from capture.plans.schema import plan_attributes
    from capture.store.catalogue import check_attributes

    given = plan_attributes(plan)
    if not given:
        return
    parts = {p["label"]: p for p in store.list_parts()}
    for label, attrs in given.items():
        known = parts.get(label) or {}
        merged = {**(known.get("meta") or {}), **check_attributes(attrs)}
        store.upsert_part(label, name=known.get("name") or label, meta=merged)


def _plan_json(plan: Any) -> str:
    dump = getattr(plan, "model_dump_json", None)
    return dump() if dump is not None else json.dumps(plan, default=str)


def recover_interrupted_runs(store: RunStore) -> list[int]:
    """At start-up: mark runs a dead process left running/prompting/paused as ``interrupted``.

    Never restarts them: the operator (or ``partrig capture --resume``) decides.  Returns their
    ids.
    """
    return list(store.mark_running_runs_interrupted())


class CaptureRun:
    """One capture run; see the module docstring."""

    def __init__(
        self,
        store: RunStore,
        rig: Rig,
        run_id: int,
        plan: Plan,
        *,
        state: RunState = S.PENDING,
        settings: Settings | None = None,
        sleep: Callable[[float], None] | None = None,
        phase_hook: PhaseHook | None = None,
        simulated_operator: bool | None = None,
        tools: CaptureTools | None = None,
    ) -> None:
        self.store = store
        self.rig = rig
        self.run_id = int(run_id)
        self.plan = plan
        self.settings = settings
        self.phase_hook = phase_hook
        #: capture.runs.tools.CaptureTools; None takes the real capture modules.
        self.tools = tools
        #: In simulation, answering a prompt performs its action on ``rig.world``.
        self.simulated_operator = (
            getattr(rig, "world", None) is not None
            if simulated_operator is None
            else simulated_operator
        )
        self.sleep = sleep or _rig_sleep(rig)
        #: The run's clock less operator waits and pauses: what the ETA is measured in.
        self.active = ActiveClock(_rig_now(rig))
        self.events = RunEvents(self.run_id)
        self._lock = threading.RLock()
        self._state = state
        self.prompt: str | None = None
        self.action: dict[str, Any] | None = None
        self.reason: str | None = None
        self._go = threading.Event()  # set while not paused
        self._go.set()
        self._answer = threading.Event()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        #: Where the engine goes when stopped on request: aborted, or interrupted (resumable).
        self.end_state: RunState = S.ABORTED
        self._t_started = 0.0
        self.progress: dict[str, Any] = {"done": 0, "total": 0, "elapsed_s": 0.0, "eta_s": None}

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def create(
        cls, store: RunStore, rig: Rig, plan_toml: str, *, name: str | None = None, **kw: Any
    ) -> CaptureRun:
        """Validate ``plan_toml`` (PlanError names the bad field), create the run row, pending."""
        from capture.plans.order import expand
        from capture.plans.schema import DEFAULT_MAX_SHOTS, load_plan

        # NOTE: the shot cap is checked before anything expands the plan (a 3 KB plan can ask
        # for a million shots); a resumed run (``load``) was bounded when it was created.
        cap = getattr(getattr(kw.get("settings"), "capture", None), "max_shots", None)
        plan = load_plan(plan_toml, max_shots=cap or DEFAULT_MAX_SHOTS)
        tools = kw.get("tools")
        total = len(tools.expand(plan) if tools is not None else expand(plan))
        run_id = store.create_run(name or plan.name, plan_toml, _plan_json(plan), total)
        _catalogue_from_plan(store, plan)
        return cls(store, rig, run_id, plan, state=S.PENDING, **kw)

    @classmethod
    def load(cls, store: RunStore, rig: Rig, run_id: int, **kw: Any) -> CaptureRun:
        """A run from the store (NotFound from the store for an unknown id), in its stored state."""
        from capture.plans.schema import load_plan

        row = store.get_run(run_id)
        plan = load_plan(row["plan_toml"], max_shots=None)
        run = cls(store, rig, int(row["id"]), plan, state=parse_state(row["state"]), **kw)
        run.prompt = row.get("prompt")
        run.reason = row.get("reason")
        # NOTE: what the store knows, so a page that connects after a restart is not told
        # "shot 0 of 0" for a run that finished (its first event is this snapshot).
        run.progress = {
            **run.progress,
            "done": int(row.get("shots_done") or 0),
            "total": int(row.get("shots_total") or 0),
        }
        return run

    # --- observation ---------------------------------------------------------------------------

    @property
    def state(self) -> RunState:
        with self._lock:
            return self._state

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(RunEvent)`` for each later event (from the run's threads)."""
        return self.events.subscribe(callback)

    def events_since(self, seq: int) -> list[RunEvent]:
        return self.events.since(seq)

    def snapshot(self) -> dict[str, Any]:
        """The run's state, prompt and progress, for the API and the CLI."""
        with self._lock:
            return {
                "run_id": self.run_id,
                "state": self._state.value,
                "prompt": self.prompt,
                "action": self.action,
                "reason": self.reason,
                "seq": self.events.last_seq,
                **self.progress,
            }

    # --- controls, callable from any thread ----------------------------------------------------

    def start(self) -> None:
        """Start (or resume after a crash or failure) the engine thread.

        Raises :class:`RunStateError` unless the run is pending, interrupted or failed, and
        :class:`FaultLatched` while the rig has an uncleared fault.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RunStateError(f"cannot start run {self.run_id}: it is already running")
            if self._state not in STARTABLE_STATES:
                raise RunStateError(f"cannot start run {self.run_id}: it is {self._state.value}")
            fault = _active_fault(self.store) or getattr(self.rig, "fault", None)
            if fault:
                raise FaultLatched(fault)
            self._abort.clear()
            self._answer.clear()
            self.end_state = S.ABORTED
            self._go.set()
            self._transition(S.RUNNING, "start", prompt=None, action=None, reason=None)
            self._t_started = time.monotonic()
            self._thread = threading.Thread(
                target=self._engine_main, name=f"capture-run-{self.run_id}", daemon=True
            )
            self._thread.start()

    def pause(self) -> None:
        """Pause after the shot in flight; the turntable stops at the next shot boundary."""
        with self._lock:
            check_transition(self.run_id, self._state, S.PAUSED, "pause")
            self._go.clear()
            self._transition(S.PAUSED, "pause")

    def resume(self) -> None:
        """Continue a paused run; an interrupted or failed run is restarted (see :meth:`start`)."""
        with self._lock:
            if self._state in STARTABLE_STATES and self._state is not S.PENDING:
                self.start()
                return
            check_transition(self.run_id, self._state, S.RUNNING, "resume")
            if self._state is not S.PAUSED:
                raise RunStateError(f"cannot resume run {self.run_id}: it is {self._state.value}")
            self._transition(S.RUNNING, "resume")
            self._go.set()

    def abort(self, reason: str = "aborted by the operator") -> None:
        """Stop the run for good; wakes a paused or prompting run.  Captured shots are kept."""
        with self._lock:
            check_transition(self.run_id, self._state, S.ABORTED, "abort")
            self.end_state = S.ABORTED
            self._abort.set()
            self._go.set()
            self._answer.set()
            alive = self._thread is not None and self._thread.is_alive()
            if not alive:
                self._transition(S.ABORTED, "abort", reason=reason)
            else:
                self.reason = reason

    def interrupt(self, reason: str = "interrupted at the terminal") -> None:
        """Stop a live run so it can be resumed later (Ctrl-C in the CLI): ends ``interrupted``."""
        with self._lock:
            check_transition(self.run_id, self._state, S.INTERRUPTED, "interrupt")
            self.end_state = S.INTERRUPTED
            self.reason = reason
            self._abort.set()
            self._go.set()
            self._answer.set()

    def answer_prompt(self) -> None:
        """The operator did what the prompt asked (Continue); simulation applies the action."""
        with self._lock:
            if self._state is not S.AWAITING_OPERATOR:
                raise RunStateError(
                    f"cannot answer the prompt of run {self.run_id}: it is {self._state.value}"
                    " and not waiting for the operator"
                )
            self._answer.set()

    def wait(self, timeout: float | None = None) -> RunState:
        """Block until the engine thread ends (or ``timeout``); returns the state then."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.state

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- used by the engine thread ---------------------------------------------------------------

    def _transition(self, new: RunState, verb: str, **fields: Any) -> None:
        """Check, persist, then publish a state change.  Caller holds the lock."""
        check_transition(self.run_id, self._state, new, verb)
        for key in ("prompt", "action", "reason"):
            if key in fields:
                setattr(self, key, fields[key])
        if new not in (S.AWAITING_OPERATOR,):
            self.prompt, self.action = None, None
        self.store.set_run_state(
            self.run_id, new.value, prompt=self.prompt, action=self.action, reason=self.reason
        )
        self._state = new
        if new not in LIVE_STATES:
            # NOTE: a failed, finished or interrupted run has no time left to show.
            self.progress = {**self.progress, "eta_s": None}
        self.events.publish("state", self._event_data(state=new.value))

    def _event_data(self, **data: Any) -> dict[str, Any]:
        base = {"prompt": self.prompt, "action": self.action, "reason": self.reason}
        base.update(self.progress)
        base.update(data)
        return base

    def checkpoint(self) -> None:
        """Block while paused; raise :class:`Aborted` once the run was aborted."""
        if not self._go.is_set():
            paused = self.active.now()
            while not self._go.wait(0.2):
                if self._abort.is_set():
                    break
            self.active.add_idle(self.active.now() - paused)
        if self._abort.is_set():
            raise Aborted()

    def engine_transition(self, new: RunState, **fields: Any) -> None:
        """A transition the engine asks for; waits out a pause that raced with it."""
        while True:
            self.checkpoint()
            with self._lock:
                if self._state is S.PAUSED:
                    continue
                self._transition(new, "move", **fields)
                return

    def ask_operator(self, text: str, action: dict[str, Any]) -> None:
        """Enter ``awaiting_operator`` with ``text`` and wait for :meth:`answer_prompt`.

        In simulation the structured ``action`` is then performed on ``rig.world``.
        """
        self._answer.clear()
        asked = self.active.now()
        self.engine_transition(S.AWAITING_OPERATOR, prompt=text, action=action)
        log.info("run %s: waiting for the operator: %s", self.run_id, text)
        while not self._answer.wait(0.2):
            pass
        # NOTE: the operator's time is not the rig's: the ETA leaves it out (capture/runs/eta.py).
        self.active.add_idle(self.active.now() - asked)
        if self._abort.is_set():
            raise Aborted()
        if self.simulated_operator and self.rig.world is not None:
            self.rig.world.apply(dict(action))
        with self._lock:
            self._transition(S.RUNNING, "continue", prompt=None, action=None)

    def publish(self, kind: str, **data: Any) -> None:
        self.events.publish(kind, self._event_data(**data))

    def update_progress(self, done: int, total: int, eta_s: float | None) -> None:
        """Record progress and the engine's estimate of the rig time left (capture/runs/eta.py)."""
        elapsed = time.monotonic() - self._t_started if self._t_started else 0.0
        eta = None if eta_s is None or not self.live else round(float(eta_s), 1)
        self.progress = {"done": done, "total": total, "elapsed_s": elapsed, "eta_s": eta}

    def _engine_main(self) -> None:
        from capture.runs.engine import RunEngine

        RunEngine(self).run()

    def finish(self, new: RunState, **fields: Any) -> None:
        """The engine's last transition (completed, aborted or failed)."""
        with self._lock:
            if self._state in FINAL_STATES:
                return
            self._transition(new, "finish", **fields)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


def _active_fault(store: RunStore) -> str | None:
    fault = store.active_fault()
    return str(fault.get("reason") or fault) if fault else None


def _rig_now(rig: Any) -> Callable[[], float]:
    """The simulator's clock when there is one (the moves are timed on it), else real time."""
    for owner in (rig, getattr(rig, "firmware", None), getattr(rig, "sim", None)):
        now = getattr(getattr(owner, "clock", None), "now", None)
        if callable(now):
            return now
    return time.monotonic


def _rig_sleep(rig: Any) -> Callable[[float], None]:
    """The simulator's clock when there is one (virtual time in tests), else real time."""
    for owner in (rig, getattr(rig, "firmware", None), getattr(rig, "sim", None)):
        sleep = getattr(getattr(owner, "clock", None), "sleep", None)
        if callable(sleep):
            return sleep
    return time.sleep
