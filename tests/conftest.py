"""Fixtures shared by every test area.  Area fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# NOTE: PARTRIG_SHARED_DATA points a clone elsewhere (e.g. a CI checkout) at the same photos.
SHARED_DATA = Path(os.environ.get("PARTRIG_SHARED_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture
def shared_data() -> Path:
    """The real Pi photos in ../shared/data; tests using it skip cleanly when it is absent."""
    if not (SHARED_DATA / "lego-belt-3class").is_dir():
        pytest.skip(f"{SHARED_DATA}/lego-belt-3class is not present (set PARTRIG_SHARED_DATA)")
    return SHARED_DATA / "lego-belt-3class"
