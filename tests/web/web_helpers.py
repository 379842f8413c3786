"""Helpers for the web tests: settings with credentials, a recording fake rig, a real store.

The fake rig records what the routes asked of it, so the rig router's own logic (refusals,
latching, mapping of errors) is proven fast; tests/web/test_runs.py and the browser tests use
the real simulated rig.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from rig.config import Settings, apply_sim, parse_settings
from rig.errors import MotionError

OPERATOR_KEY = "op-key-0123456789"
VIEWER_KEY = "view-key-0123456789"
TRAINER_KEY = "train-key-0123456789"
PASSWORD = "correct horse battery"

OP = {"X-Api-Key": OPERATOR_KEY}
VIEW = {"X-Api-Key": VIEWER_KEY}
TRAIN = {"X-Api-Key": TRAINER_KEY}


@functools.cache
def password_hash() -> str:
    from web.security import hash_password

    return hash_password(PASSWORD)


def make_settings(data: Path, **extra: Any) -> Settings:
    raw: dict[str, Any] = {
        "camera": {"driver": "sim", "still_size": [320, 240], "preview_size": [160, 120]},
        "simulator": {"time_scale": 0},
        "data": {"dir": str(data)},
        "web": {"preview_fps": 30},
        "auth": {
            "operator_password_hash": password_hash(),
            "session_secret": "s" * 32,
            "operator_keys": [OPERATOR_KEY],
            "viewer_keys": [VIEWER_KEY],
            "trainer_keys": [TRAINER_KEY],
        },
    }
    for section, values in extra.items():
        raw.setdefault(section, {}).update(values)
    return apply_sim(parse_settings(raw))


class FakeCamera:
    def __init__(self) -> None:
        self.previews = 0

    def preview(self) -> np.ndarray:
        self.previews += 1
        img = np.zeros((120, 160, 3), np.uint8)
        img[:, :, 0] = self.previews % 255
        return img


class FakeTurntable:
    def __init__(self) -> None:
        self.angle = 0.0
        self.fault: str | None = None
        self.calls: list[tuple[str, Any]] = []

    def rotate_by(self, deg: float) -> None:
        self.calls.append(("rotate_by", deg))
        self.angle = (self.angle + deg) % 360

    def wait(self) -> float:
        return self.angle

    def set_zero(self) -> None:
        self.calls.append(("set_zero", None))
        self.angle = 0.0
        self.fault = None

    def mark_untrusted(self, why: str) -> None:
        self.calls.append(("mark_untrusted", why))
        self.fault = f"turntable position lost: {why}"


class FakeLink:
    """Records the G-code terminal's lines; answers like a board that knows every command."""

    path = "/dev/fake"

    def __init__(self) -> None:
        from rig.config import SerialConfig

        self.sent: list[str] = []
        self.state = "ready"
        self.config = SerialConfig(port=self.path)
        self.firmware: Any = None
        self.reset_hook: Any = None

    def send(self, line: str, timeout: float | None = None) -> list[str]:
        self.sent.append(line)
        return ["X:0.00 Count X:0"] if line.upper().startswith("M114") else []

    def close(self) -> None:
        self.state = "closed"

    def open(self) -> Any:
        self.state = "ready"
        return None


class FakeLights:
    def __init__(self) -> None:
        self.level = 0.0

    def set(self, level: float) -> None:
        self.level = level


class FakeRig:
    """Records what the web app asked; behaves like rig.rig.Rig for the rig router."""

    def __init__(self) -> None:
        self.turntable = FakeTurntable()
        self.link = FakeLink()
        self.lights = FakeLights()
        self.camera = FakeCamera()
        self.world = None
        self._fault: str | None = None
        self.estops = 0
        from rig.config import Settings

        self.settings = Settings()

    @property
    def fault(self) -> str | None:
        return self._fault

    def status(self) -> dict[str, Any]:
        return {
            "simulated": True,
            "port": "/dev/fake",
            "link": "ready",
            "firmware": {"name": "fake", "version": "1", "dialect": "partrig"},
            "resets": 0,
            "angle_deg": self.turntable.angle,
            "lights": self.lights.level,
            "camera": "sim",
            "fault": self._fault,
        }

    def safe_stop(self, reason: str) -> None:
        self._fault = self._fault or reason

    def emergency_stop(self) -> None:
        self.estops += 1
        self._fault = self._fault or "emergency stop pressed"

    def clear_fault(self, *, zero_confirmed: bool = False) -> None:
        if not zero_confirmed:
            self._fault = None
            raise MotionError("the position is unknown: turn it to the zero mark and confirm zero")
        self._fault = None
        self.turntable.set_zero()


def sign_in(client: TestClient) -> str:
    """Sign in with the operator password; returns the session's CSRF token."""
    r = client.post("/api/auth/login", json={"password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["csrf_token"]


def jpeg(w: int = 64, h: int = 48, value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def png_mask(w: int = 64, h: int = 48) -> bytes:
    buf = io.BytesIO()
    m = np.zeros((h, w), np.uint8)
    m[10:30, 20:40] = 255
    Image.fromarray(m).convert("1").save(buf, "PNG")
    return buf.getvalue()


def add_shots(store: Any, labels: list[str], backgrounds: list[int], per: int = 2) -> list[int]:
    """Store real shots (image + mask files, then rows) under one run; returns their ids."""
    from capture.store import ShotRecord

    run_id = store.create_run("fixture", "name = 'fixture'", "{}", len(labels) * per)
    ids, index = [], 0
    for label in labels:
        for bg in backgrounds:
            store.upsert_background(bg, f"sheet {bg}")
            for _ in range(per):
                mask = store.write_file(f"masks/{run_id}/{index:06d}.png", png_mask())
                record = ShotRecord(
                    label=label,
                    instance_id=f"{label}-a",
                    path="",
                    sha256="0" * 64,
                    size=0,
                    run_id=run_id,
                    shot_index=index,
                    background_id=bg,
                    pose="up",
                    angle_cmd=float(index * 10),
                    mask_path=mask.path,
                )
                ids.append(
                    store.save_shots([(f"images/{run_id}/{index:06d}.jpg", jpeg(), record)])[0]
                )
                index += 1
    return ids
