"""Shared by the link tests: the scripted pty peer and a serial configuration for tests."""

from __future__ import annotations

from typing import Any

from peer import Peer

from rig.config import SerialConfig

__all__ = ["Peer", "fast_config"]


def fast_config(path: str, **overrides: Any) -> SerialConfig:
    """Timeouts short enough that lost oks and silences cost tenths of a second in tests."""
    values: dict[str, Any] = dict(
        port=path,
        command_timeout_s=0.5,
        long_command_timeout_s=1.0,
        busy_timeout_s=0.4,
        missing_ok_after_resend_s=0.1,
        reconnect_interval_s=0.05,
        handshake_timeout_s=3.0,
    )
    values.update(overrides)
    return SerialConfig(**values)
