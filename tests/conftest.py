"""Fixtures shared by every test area.  Area fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real Pi photos in ../shared/data; tests using it skip cleanly when it is absent."""
    if not (SHARED_DATA / "lego-belt-3class").is_dir():
        pytest.skip("../shared/data/lego-belt-3class is not present")
    return SHARED_DATA / "lego-belt-3class"
