"""The machine's health and the one-glance overview every page's header strip shows.

Why a separate, cheap route: each page polls it every two seconds, so it reads only memory,
``/proc``, ``/sys`` and one ``statvfs``; the Raspberry Pi's throttling flags come from
``vcgencmd`` (a subprocess), which is asked at most every :data:`THROTTLE_CACHE_S` seconds.
A reading the machine does not offer (no thermal zone, no ``vcgencmd`` off the Pi) is ``None``
and the page leaves it out, rather than guessing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from web.deps import SettingsDep, StoreDep, ViewerAuth

router = APIRouter(prefix="/api", tags=["health"])

THERMAL = Path("/sys/class/thermal")
MEMINFO = Path("/proc/meminfo")
THROTTLE_CACHE_S = 10.0
#: vcgencmd's ``get_throttled`` bits (the Pi's firmware documentation), now and since boot.
THROTTLE_BITS = {
    0: "under-voltage",
    1: "ARM frequency capped",
    2: "throttled",
    3: "soft temperature limit",
}
#: Below this much free space on the data folder's disk the strip shows a warning.
LOW_DISK_BYTES = 2 * 1024**3


def cpu_temperature_c(thermal: Path = THERMAL) -> float | None:
    """The hottest thermal zone in °C, or None where the kernel exposes none (containers)."""
    temps = []
    for zone in sorted(thermal.glob("thermal_zone*")):
        try:
            temps.append(int((zone / "temp").read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return round(max(temps), 1) if temps else None


def memory(meminfo: Path = MEMINFO) -> dict[str, int] | None:
    """Total and available memory in bytes from ``/proc/meminfo`` (None off Linux)."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    kb = {}
    for line in lines:
        name, _, rest = line.partition(":")
        if name in ("MemTotal", "MemAvailable") and rest.split():
            kb[name] = int(rest.split()[0]) * 1024
    if "MemTotal" not in kb:
        return None
    return {"total_bytes": kb["MemTotal"], "available_bytes": kb.get("MemAvailable", 0)}


def parse_throttled(text: str) -> dict[str, Any] | None:
    """``throttled=0x50005`` → the flags set now and since boot, in words."""
    _, _, value = text.strip().partition("=")
    try:
        bits = int(value, 16)
    except ValueError:
        return None
    now = [word for bit, word in THROTTLE_BITS.items() if bits & (1 << bit)]
    since = [word for bit, word in THROTTLE_BITS.items() if bits & (1 << (bit + 16))]
    return {"raw": value, "now": now, "since_boot": since}


class ThrottleReader:
    """``vcgencmd get_throttled``, cached; None where vcgencmd is not installed."""

    def __init__(self, command: str = "vcgencmd") -> None:
        self.command = command
        self._lock = threading.Lock()
        self._at = -THROTTLE_CACHE_S
        self._value: dict[str, Any] | None = None

    def read(self) -> dict[str, Any] | None:
        with self._lock:
            if time.monotonic() - self._at < THROTTLE_CACHE_S:
                return self._value
            self._at = time.monotonic()
            path = shutil.which(self.command)
            self._value = None
            if path is not None:
                try:
                    out = subprocess.run(
                        [path, "get_throttled"], capture_output=True, text=True, timeout=2
                    )
                    self._value = parse_throttled(out.stdout) if out.returncode == 0 else None
                except (OSError, subprocess.TimeoutExpired):
                    self._value = None
            return self._value


THROTTLE = ThrottleReader()


def machine_health(data_dir: Path) -> dict[str, Any]:
    """Disk free under the data folder, CPU temperature, throttling, memory and load."""
    try:
        usage = shutil.disk_usage(data_dir)
        disk: dict[str, Any] | None = {
            "free_bytes": usage.free,
            "total_bytes": usage.total,
            "low": usage.free < LOW_DISK_BYTES,
        }
    except OSError:
        disk = None
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "disk": disk,
        "cpu_temp_c": cpu_temperature_c(),
        "throttled": THROTTLE.read(),
        "memory": memory(),
        "load_1m": None if load is None else round(load, 2),
        "cpus": os.cpu_count(),
    }


@router.get("/health/machine")
def health_of_machine(settings: SettingsDep, who: ViewerAuth) -> dict[str, Any]:
    """Disk free (data folder), CPU temperature and throttling where the machine reports them,
    memory and load."""
    return machine_health(Path(settings.data.dir))


def _live_run(request: Request) -> dict[str, Any] | None:
    runs = getattr(request.app.state, "runs", None)
    live = runs.live_run() if runs is not None else None
    if live is None:
        return None
    snap = live.snapshot()
    return {
        "id": live.run_id,
        "state": snap.get("state"),
        "prompt": snap.get("prompt"),
        "done": snap.get("done"),
        "total": snap.get("total"),
    }


def _sorter(request: Request, store: Any) -> dict[str, Any]:
    sorter = getattr(request.app.state, "sorter", None)
    active = store.active_model() if store is not None else None
    if sorter is None:
        return {"state": "absent", "model_id": None, "active_model": active and active["id"]}
    s = sorter.status()
    return {
        "state": s.get("state"),
        "model_id": s.get("model_id"),
        "collect_for_review": s.get("collect_for_review"),
        "active_model": active["id"] if active else None,
    }


@router.get("/overview")
def overview(
    request: Request, settings: SettingsDep, store: StoreDep, who: ViewerAuth
) -> dict[str, Any]:
    """What every page's header strip shows: the live run (and its prompt), the sorter, the
    latched fault, and the machine's health."""
    rig = getattr(request.app.state, "rig", None)
    fault = getattr(rig, "fault", None) if rig is not None else None
    if fault is None and store is not None:
        row = store.active_fault()
        fault = None if not row else str(row.get("reason") or row)
    return {
        "run": _live_run(request),
        "sorter": _sorter(request, store),
        "fault": fault,
        "rig_open": rig is not None,
        "health": machine_health(Path(settings.data.dir)),
    }
