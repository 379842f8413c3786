"""Byte counts as a person reads them, shared by the pull, publish and snapshot commands.

Why a module of its own: the pull and publish packages both print sizes, and neither may
import the other's modules for it (the packages import one way: pull -> publish).
"""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units, as disks and networks are sold)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
