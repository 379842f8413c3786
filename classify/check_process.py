"""Run :mod:`classify.model_check` in a child process and turn whatever happens into a verdict.

Why a fresh interpreter (``python -m classify.model_check``) and not a fork: the server that
calls this holds the serial port, the camera, GPIO, threads and locks.  A forked child would
inherit all of them mid-state; a new interpreter inherits no file descriptor but its three
pipes (``close_fds``), none of the server's environment secrets (see :func:`child_env`), and
nothing the server has loaded.  It runs in its own session, so a timeout kills the whole group.

Limits: the child limits itself to ``models.check_cpu_s`` of CPU (``RLIMIT_CPU``) and
``models.check_memory_mb`` of address space beyond its imports (``RLIMIT_AS``), and writes no
core file; this side kills it after ``models.check_timeout_s`` of wall clock.  Any way the
child can end (a signal, a non-zero exit, a garbled answer, the deadline) is a failed check
with the reason, so a model is never left ``uploaded`` and never half-validated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rig.config import Settings

log = logging.getLogger("classify.check_process")

#: The folder holding the ``classify`` package: the child's working directory, so ``-m`` finds
#: this very code whether or not the project is installed.
CODE_ROOT = Path(__file__).resolve().parent.parent
#: Environment variables the child keeps; everything else (API keys, tokens) stays here.
CHILD_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
#: The answer is a few KB; anything larger is not an answer.
MAX_ANSWER_BYTES = 4 * 2**20
SIGNAL_HINTS = {
    signal.SIGXCPU: "it used up models.check_cpu_s of CPU time",
    signal.SIGKILL: "it was killed, most likely for memory",
    signal.SIGABRT: "the runtime aborted, often because the memory limit refused an allocation",
    signal.SIGSEGV: "the runtime crashed on the model file",
    signal.SIGBUS: "the runtime crashed on the model file",
}


@dataclass(frozen=True)
class CheckLimits:
    """What one validation child may use."""

    memory_mb: int = 1024
    cpu_s: int = 300
    timeout_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> CheckLimits:
        m = settings.models
        return cls(int(m.check_memory_mb), int(m.check_cpu_s), float(m.check_timeout_s))


def child_env() -> dict[str, str]:
    """The child's environment: enough to run Python, nothing secret, quiet runtimes."""
    env = {k: os.environ[k] for k in CHILD_ENV_KEYS if k in os.environ}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    return env


def run_check(job: dict[str, Any], limits: CheckLimits) -> dict[str, Any]:
    """Validate in a child; always returns a result with ``passed``, ``reason`` and ``checks``.

    ``result["child"]`` says how the child went: ``wall_s``, ``exit`` and, when it answered,
    its peak RSS and CPU time.
    """
    request = json.dumps({"job": job, "limits": asdict(limits)}).encode()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "classify.model_check"],
        cwd=CODE_ROOT,
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        close_fds=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(request, timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return crashed(
            f"validation timed out after {limits.timeout_s:g} s (models.check_timeout_s)",
            proc.returncode,
            time.monotonic() - started,
        )
    wall = time.monotonic() - started
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode)
        hint = SIGNAL_HINTS.get(sig, "the child was stopped by a signal")
        log.warning("model validation child died of %s; stderr: %s", sig.name, _tail(err))
        return crashed(f"validation crashed: signal {-proc.returncode} ({sig.name}): {hint}",
                       proc.returncode, wall)  # fmt: skip
    answer = _parse(out)
    if proc.returncode != 0 or answer is None:
        log.warning("model validation child exited %s; stderr: %s", proc.returncode, _tail(err))
        return crashed(
            f"validation failed: the checker exited {proc.returncode} ({_tail(err)})",
            proc.returncode,
            wall,
        )
    answer["child"] = {**answer.get("child", {}), "wall_s": round(wall, 3), "exit": 0}
    return answer


def crashed(reason: str, exit_code: int | None, wall_s: float) -> dict[str, Any]:
    """The result of a child that gave no verdict: one failed ``isolated`` check."""
    return {
        "checks": [{"check": "isolated", "ok": False, "detail": reason}],
        "passed": False,
        "reason": reason,
        "child": {"wall_s": round(wall_s, 3), "exit": exit_code},
    }


def _parse(out: bytes) -> dict[str, Any] | None:
    if not out or len(out) > MAX_ANSWER_BYTES:
        return None
    try:
        answer = json.loads(out)
    except (ValueError, UnicodeDecodeError):
        return None
    ok = isinstance(answer, dict) and isinstance(answer.get("checks"), list)
    return answer if ok and isinstance(answer.get("passed"), bool) else None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(err: bytes | None, limit: int = 300) -> str:
    """The last line of the child's stderr, shortened: enough to say what went wrong."""
    lines = [ln for ln in (err or b"").decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][-limit:] if lines else "no message"
