"""Fixtures for the web tests (helpers live in web_helpers.py, importable from the tests)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

# NOTE: importlib import mode does not put test folders on sys.path; the web tests share
# web_helpers.py, so this folder is added once here.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_helpers import FakeRig, make_settings

from rig.config import Settings
from web.app import create_app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def store(settings: Settings) -> Any:
    from capture.store import DatasetStore

    s = DatasetStore.open(settings.data.dir)
    yield s
    s.close()


@pytest.fixture
def fake_rig() -> FakeRig:
    return FakeRig()


@pytest.fixture
def client(settings: Settings, fake_rig: FakeRig, store: Any) -> TestClient:
    with TestClient(create_app(settings, rig=fake_rig, store=store)) as c:
        yield c


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    """Keep each phase's report on the test item, so a browser test's fixture can save a
    screenshot when the test itself failed (tests/web/browser_helpers.py)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
