"""The states of a capture run and the transitions between them.

Why a table: the web app, the CLI and the engine thread all move a run between states, and an
invalid request (pausing a completed run, answering a prompt nobody asked) must be refused the
same way everywhere: :class:`~rig.errors.RunStateError`, which the web app answers with 409.
The table is the single place that says what is allowed.
"""

from __future__ import annotations

from enum import StrEnum

from rig.errors import RunStateError


class RunState(StrEnum):
    """A run's state; the string values are what the store and the API hold."""

    PENDING = "pending"
    RUNNING = "running"
    AWAITING_OPERATOR = "awaiting_operator"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


S = RunState

#: Every allowed transition.  ``failed`` and ``interrupted`` can go back to ``running``: that is
#: resuming, which continues with the first missing shot.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    S.PENDING: frozenset({S.RUNNING, S.ABORTED, S.FAILED}),
    S.RUNNING: frozenset(
        {S.AWAITING_OPERATOR, S.PAUSED, S.COMPLETED, S.ABORTED, S.FAILED, S.INTERRUPTED}
    ),
    S.AWAITING_OPERATOR: frozenset({S.RUNNING, S.ABORTED, S.FAILED, S.INTERRUPTED}),
    # NOTE: a pause asked for during the last shot lets the run complete: nothing is left to pause.
    S.PAUSED: frozenset({S.RUNNING, S.COMPLETED, S.ABORTED, S.FAILED, S.INTERRUPTED}),
    S.INTERRUPTED: frozenset({S.RUNNING, S.ABORTED, S.FAILED}),
    S.FAILED: frozenset({S.RUNNING, S.ABORTED}),
    S.COMPLETED: frozenset(),
    S.ABORTED: frozenset(),
}

#: States in which an engine thread is (or should be) alive: a process that dies leaves runs in
#: these, and start-up marks them interrupted.
LIVE_STATES = frozenset({S.RUNNING, S.AWAITING_OPERATOR, S.PAUSED})

#: States from which :meth:`CaptureRun.start` may (re)start the engine.
STARTABLE_STATES = frozenset({S.PENDING, S.INTERRUPTED, S.FAILED})

#: States a run never leaves.
FINAL_STATES = frozenset({S.COMPLETED, S.ABORTED})


def parse_state(value: str | RunState) -> RunState:
    """The :class:`RunState` for a stored string, with a clear error for an unknown one."""
    try:
        return RunState(value)
    except ValueError:
        allowed = ", ".join(s.value for s in RunState)
        raise RunStateError(f"unknown run state {value!r}; expected one of {allowed}") from None


def check_transition(run_id: int | str, current: RunState, new: RunState, verb: str) -> None:
    """Raise :class:`RunStateError` unless ``current -> new`` is allowed.

    ``verb`` is what the caller asked ("pause", "answer the prompt of") so the message reads
    naturally on the operator's page.
    """
    if new not in TRANSITIONS[current]:
        raise RunStateError(
            f"cannot {verb} run {run_id}: it is {current.value}"
            + (" and finished" if current in FINAL_STATES else "")
        )


class Aborted(Exception):
    """Raised inside the engine thread when the operator aborted (or interrupted) the run."""
