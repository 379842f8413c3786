"""The one error hierarchy for partrig.

Every error the rig, the capture engine, the store, the classifier or the web app raises on
purpose derives from :class:`RigError`, so a caller at the top of a run can catch broadly and
fail safe while code further down catches narrowly.  Where a builtin exception means the same
thing, the class inherits it too (a :class:`ConfigError` is also a ``ValueError``, a
:class:`LinkTimeout` is also a ``TimeoutError``) so generic callers keep working.

Each message says what went wrong *and what to do about it*: these strings reach the operator's
page verbatim.
"""

from __future__ import annotations


class RigError(Exception):
    """Base of every deliberate partrig error."""


# --- configuration and input -------------------------------------------------------------


class ConfigError(RigError, ValueError):
    """The configuration file (or a value in it) is invalid; the message names the key."""


class GcodeError(RigError, ValueError):
    """A G-code command was refused before sending (injection, unknown letter, bad value)."""


class PlanError(RigError, ValueError):
    """A capture plan is invalid; the message names the field."""


# --- the serial link ------------------------------------------------------------------------


class LinkError(RigError, IOError):
    """The G-code link failed: port gone, resend loop, protocol violation."""


class LinkTimeout(LinkError, TimeoutError):
    """The firmware did not answer in time, even after being prodded."""


class PortLost(LinkError):
    """The serial port vanished while a command was in flight: it may or may not have run.

    The board kept its power, so an idempotent command (an absolute move) may be sent again
    once the link has reconnected.
    """


class FirmwareReset(LinkError):
    """The board reset (``start`` seen) while commands were in flight or a move was running.

    The position the firmware holds is lost; the host must not guess it.
    """


class FirmwareHalted(LinkError):
    """The firmware halted (``kill() called`` or similar) and needs a reset.

    This is latched: every later command raises it until the fault is cleared.
    """


class FirmwareUnsupported(LinkError):
    """The firmware answered, but it lacks something partrig needs to move safely (a stock
    Marlin build): nothing was moved.  ``options`` names the Marlin options to set."""

    def __init__(self, message: str, options: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.options = options


class FaultLatched(RigError):
    """A fault was latched earlier and has not been cleared by the operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"rig fault latched: {reason}. Clear the fault before continuing.")
        self.reason = reason


class RigBusy(RigError):
    """Another process owns the rig or its data folder (a running ``partrig serve``, or another
    command that opened the hardware); the message names it and says what to do instead."""

    def __init__(self, message: str, owner: object = None) -> None:
        super().__init__(message)
        self.owner = owner


# --- motion ---------------------------------------------------------------------------------


class MotionError(RigError):
    """The turntable is not where it was told to be, or its position is unknown."""


class PositionLost(MotionError):
    """The position is unknown (a reset during a move); home or confirm zero to recover."""


# --- camera, actuator, model ------------------------------------------------------------------


class CameraError(RigError, IOError):
    """The camera is missing, failed to capture, or timed out."""


class ActuatorError(RigError):
    """The sorting actuator failed or was configured with bad pins/timings."""


class ModelError(RigError):
    """A model failed to load, validate or run."""


# --- dataset store ------------------------------------------------------------------------------


class StoreError(RigError):
    """The dataset store cannot be used (unwritable, full disk, corrupt database)."""


class DiskFull(StoreError, OSError):
    """No space left in the data directory; nothing already stored was touched."""


class QueryError(StoreError, ValueError):
    """A dataset query was malformed (a bad page cursor, a limit out of range): a client error."""


class RunStateError(RigError):
    """A run was asked for a transition its state does not allow (answered 409 by the web app)."""


class NotFound(RigError, LookupError):
    """A run, shot, snapshot or model with that id does not exist."""


# --- dataset hand-off ---------------------------------------------------------------------------


class PullError(RigError, IOError):
    """Pulling a snapshot from a rig failed: unreachable, a bad answer, or a bad manifest."""


class AccessDenied(PullError, PermissionError):
    """The rig refused the API key (401: unknown key; 403: the key's role may not do this)."""


class ChecksumMismatch(PullError):
    """A downloaded file kept failing its sha256 check after every retry."""
