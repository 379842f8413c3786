"""What the browser tests share: Debian's chromium, a real uvicorn server on the simulated rig,
a signed-in page, and a screenshot of the page whenever a test fails.

Failure screenshots go to test-artifacts/failures/<test>.png, so a red run on CI shows what the
operator would have seen.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_helpers import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SHOTS = ARTIFACTS / "screenshots"
FAILURES = ARTIFACTS / "failures"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def need_chromium() -> None:
    pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")


@contextlib.contextmanager
def running_server(settings: Any) -> Iterator[tuple[str, Any]]:
    """``(base_url, app)`` of a real uvicorn server in a thread, stopped on exit."""
    import uvicorn

    from web.app import create_app

    app = create_app(settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        srv.should_exit = True
        thread.join(15)


def sign_in(page: Any, server: str, path: str = "/") -> None:
    page.goto(server + path)
    page.wait_for_url("**/login**")
    page.fill("#password", PASSWORD)
    page.click("#signin")
    page.wait_for_url(server + path)


def call_api(page: Any, method: str, url: str, body: Any = None) -> Any:
    """An API call with the page's session and CSRF token (as the page's own JS makes it)."""
    token = page.get_attribute('meta[name="csrf-token"]', "content")
    headers = {"X-CSRF-Token": token or "", "Content-Type": "application/json"}
    response = page.request.fetch(
        url, method=method, headers=headers, data=None if body is None else json.dumps(body)
    )
    return response


def screenshot_if_failed(request: Any, page: Any) -> None:
    """After a test: a full-page screenshot under test-artifacts/failures/ if it failed."""
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        FAILURES.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=str(FAILURES / f"{request.node.name}.png"), full_page=True)
