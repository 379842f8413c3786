"""Real-browser tests (Debian's chromium via Playwright) of the sorter's feeder view and of the
serial port control on the terminal page.  A failing test leaves a screenshot in
test-artifacts/failures/.
"""

from __future__ import annotations

import os
import time

import pytest
from browser_helpers import (
    ARGS,
    CHROMIUM,
    SHOTS,
    call_api,
    need_chromium,
    running_server,
    screenshot_if_failed,
    sign_in,
)
from web_helpers import make_settings

pytestmark = pytest.mark.browser

#: True once the <img> has decoded at least one frame.
LOADED = (
    "(sel) => { const i = document.querySelector(sel);"
    " return !!i && !i.hidden && i.naturalWidth > 0; }"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    need_chromium()
    settings = make_settings(
        tmp_path_factory.mktemp("feeder") / "data",
        simulator={"time_scale": 1.0},
        camera={"preview_size": [320, 240]},
        serial={"handshake_timeout_s": 1.0},
    )
    with running_server(settings) as (url, app):
        yield url, app


@pytest.fixture(scope="module")
def context(served):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        pg = ctx.new_page()
        sign_in(pg, served[0])
        pg.close()
        yield ctx
        browser.close()


@pytest.fixture
def page(request, context):
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.on("dialog", lambda d: d.accept())
    yield pg
    screenshot_if_failed(request, pg)
    pg.close()


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_the_sorter_page_shows_the_feeder_its_last_parts_and_stops_encoding_when_left(page, served):
    server, app = served
    page.goto(server + "/sorter")
    page.wait_for_function("document.querySelector('#sorter-state').dataset.state === 'stopped'")
    assert page.is_visible("#feeder-none")
    page.check("#collect-for-review")
    page.click("#sorter-start")
    page.wait_for_function("document.querySelector('#sorter-state').dataset.state === 'running'")
    try:
        page.wait_for_function(LOADED, arg="#feeder-view")
        page.wait_for_selector("#feeder-recent li[data-number] img", timeout=90_000)
        page.wait_for_function(LOADED, arg="#feeder-recent li[data-number] img")
        hub = app.state.feeder_preview
        assert hub.viewers >= 1 and hub.encoded >= 1
        assert page.inner_text("#feeder-part") in {
            "part in view",
            "part sorted, leaving",
            "platform empty",
        }
        assert "bin " in page.inner_text("#feeder-bins")
        assert "→ bin" in page.inner_text("#feeder-recent li[data-number] >> nth=0")
        page.screenshot(path=str(SHOTS / "sorter-feeder.png"))
    finally:
        assert call_api(page, "POST", server + "/api/sorter/stop").ok
    page.wait_for_function("document.querySelector('#feeder-part').textContent === 'not sorting'")
    page.goto(server + "/")
    wait_until(lambda: hub.viewers == 0 and not hub.running, 10, "the feeder encoder kept going")


def test_the_terminal_page_changes_the_port_and_a_dead_port_latches_a_fault(page, served):
    server, app = served
    sim_port = str(app.state.rig.firmware_sim.port)
    page.goto(server + "/terminal")
    page.wait_for_function("document.querySelector('#port-link').dataset.link === 'ready'")
    options = page.eval_on_selector_all("#port-choice option", "os => os.map(o => o.value)")
    assert sim_port in options and page.input_value("#port-choice") == sim_port
    # refused while the sorter runs, with the reason on screen
    assert call_api(page, "POST", server + "/api/sorter/start", {"collect_for_review": True}).ok
    try:
        page.click("#port-disconnect")
        page.wait_for_selector("#flash:not([hidden])")
        assert "sorter is running" in page.inner_text("#flash-text")
    finally:
        assert call_api(page, "POST", server + "/api/sorter/stop").ok
    assert app.state.rig.link.state == "ready"
    # a port with no board behind it: the link is closed and the fault latched, in words
    master, slave = os.openpty()
    try:
        dead = os.ttyname(slave)
        page.fill("#port-other", dead)
        page.click("#port-connect")
        page.wait_for_function("document.querySelector('#port-link').dataset.link === 'closed'")
        page.wait_for_selector("#port-fault:not([hidden])")
    finally:
        os.close(master)
        os.close(slave)
    assert f"connecting to serial port {dead}" in page.inner_text("#flash-text")
    assert dead in page.inner_text("#port-fault")
    page.screenshot(path=str(SHOTS / "terminal-port-fault.png"))
    # back to the simulated board: the start-up checks pass, then clear the fault
    page.fill("#port-other", "")
    page.select_option("#port-choice", sim_port)
    page.click("#port-connect")
    page.wait_for_function("document.querySelector('#port-link').dataset.link === 'ready'")
    page.screenshot(path=str(SHOTS / "terminal-port.png"))
    page.goto(server + "/")
    page.wait_for_selector("#fault-box:not([hidden])")
    page.check("#zero-confirmed")
    page.click("#clear-fault")
    page.wait_for_selector("#fault-box", state="hidden")
    kinds = [i["kind"] for i in app.state.store.list_incidents(limit=20)]
    assert "serial_port" in kinds and "serial_port_fault" in kinds
