"""Fixtures for the attack suite: every test here talks to a real uvicorn server on loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# NOTE: importlib import mode does not put test folders on sys.path; live_server.py is shared.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_server import LiveServer, start_server


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """``partrig serve --sim`` with operator, trainer and viewer keys and a known password."""
    server = start_server(tmp_path / "srv")
    try:
        yield server
    finally:
        server.stop()
