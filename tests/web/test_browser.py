"""Real-browser tests: Debian's chromium (Playwright) against uvicorn and the simulated rig.

They prove what the operator does: sign in, create and start a run from the page, answer the
background and part prompts, see the progress bar reach 100 %, pause and resume, latch a fault
with the emergency stop, find the new shots in the dataset grid, and run the sorter and label
a crop from its review queue.  Screenshots of each page go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from browser_helpers import screenshot_if_failed
from web_helpers import PASSWORD, make_settings

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def plan(angles: int) -> str:
    return (
        f'name = "browser {angles}"\nbackgrounds = [1]\nangles_per_rev = {angles}\n'
        'settle_s = 0.05\nparts = [{ label = "brick-2x4-red", instance = "brick-2x4-red-b" }]\n'
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    import uvicorn

    from web.app import create_app

    # NOTE: a 320x240 preview, as the sorter needs to see a screw lying on its side
    settings = make_settings(
        tmp_path_factory.mktemp("browser") / "data",
        simulator={"time_scale": 1.0},
        camera={"preview_size": [320, 240]},
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.set_default_timeout(30_000)
        pg.on("dialog", lambda d: d.accept())
        yield pg
        browser.close()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request, page):
    yield
    screenshot_if_failed(request, page)


def create_run_from_page(page, server: str, angles: int) -> None:
    page.goto(server + "/runs")
    page.fill("#plan-toml", plan(angles))
    page.click("#preview-plan")
    page.wait_for_selector("#plan-summary")
    assert f"<strong>{angles}</strong> shots" in page.inner_html("#plan-summary")
    page.click("#create-run")
    page.wait_for_url("**/runs/*")


def answer_prompts_until(page, states: set[str], timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = page.get_attribute("#run-state", "data-state") or ""
        if state in states:
            return state
        if page.is_visible("#prompt-box") and state == "awaiting_operator":
            page.click("#answer")
        page.wait_for_timeout(100)
    raise AssertionError(f"the run did not reach {states}; it is {state}")


def answer_prompts_until_progress(page, timeout_s: float = 60) -> None:
    """Answer prompts until the first shot moves the progress bar (the run is then shooting)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if int(page.get_attribute("#bar", "data-pct") or 0) > 0:
            return
        state = page.get_attribute("#run-state", "data-state") or ""
        if page.is_visible("#prompt-box") and state == "awaiting_operator":
            page.click("#answer")
        page.wait_for_timeout(100)
    raise AssertionError("the run took no shot")


def test_signing_in(page, server):
    page.goto(server + "/")
    page.wait_for_url("**/login**")
    page.screenshot(path=str(SHOTS / "login.png"))
    page.fill("#password", PASSWORD)
    page.click("#signin")
    page.wait_for_url(server + "/")
    page.wait_for_function("document.querySelector('#st-link').textContent.includes('simulated')")
    page.screenshot(path=str(SHOTS / "dashboard.png"))


def test_a_run_started_from_the_page_completes_after_answering_the_prompts(page, server):
    create_run_from_page(page, server, 4)
    page.screenshot(path=str(SHOTS / "run-created.png"))
    page.click("[data-control=start]")
    page.wait_for_selector("#prompt-box:not([hidden])")
    assert "background" in page.inner_text("#prompt-text").lower()
    page.screenshot(path=str(SHOTS / "run-prompt.png"))
    assert answer_prompts_until(page, {"completed", "failed"}) == "completed"
    page.wait_for_function("document.querySelector('#bar').dataset.pct === '100'")
    assert "shot 4 of 4" in page.inner_text("#progress-text")
    page.screenshot(path=str(SHOTS / "run-completed.png"))


def test_pausing_and_resuming_a_run(page, server):
    create_run_from_page(page, server, 36)
    page.click("[data-control=start]")
    page.wait_for_selector("#prompt-box:not([hidden])")
    answer_prompts_until_progress(page)
    page.click("[data-control=pause]")
    page.wait_for_function("document.querySelector('#run-state').dataset.state === 'paused'")
    page.screenshot(path=str(SHOTS / "run-paused.png"))
    page.click("[data-control=resume]")
    page.wait_for_function("document.querySelector('#run-state').dataset.state !== 'paused'")
    page.click("[data-control=abort]")
    page.wait_for_function("document.querySelector('#run-state').dataset.state === 'aborted'")
    page.goto(server + "/runs")
    page.wait_for_selector("#run-table tbody tr")
    page.screenshot(path=str(SHOTS / "runs.png"))


def test_the_dataset_grid_shows_the_new_shots(page, server):
    page.goto(server + "/dataset")
    page.wait_for_selector("#grid .thumb")
    assert page.locator("#grid .thumb").count() >= 4
    page.wait_for_selector("#balance rect")
    page.screenshot(path=str(SHOTS / "dataset.png"))
    page.click("#grid .thumb >> nth=0")
    page.wait_for_selector("#meta tr")
    page.screenshot(path=str(SHOTS / "shot.png"))


def test_the_sorter_fills_the_review_queue_and_one_click_labels_a_crop(page, server):
    # no model is active: the sorter starts only in "collect for review" mode, chosen on
    # purpose, and then every simulated part goes to the review bin and the queue
    page.goto(server + "/sorter")
    page.wait_for_function("document.querySelector('#sorter-state').dataset.state === 'stopped'")
    page.check("#collect-for-review")
    page.click("#sorter-start")
    # NOTE: it once timed out here: on a loaded machine the first frames rendered slowly, a
    # simulated part dropped into the sorter's "empty" reference and was never seen, and the
    # feeder waited for an empty platform for ever.  The feeder now holds its first frames
    # (classify/feeder_sim.py, RESUME_HOLD_FRAMES; tests/classify/test_presence.py).  If the
    # sorter does not run, say why rather than time out.
    page.wait_for_function(
        "['running', 'faulted'].includes(document.querySelector('#sorter-state').dataset.state)"
        " || !document.querySelector('#flash').hidden"
    )
    assert page.get_attribute("#sorter-state", "data-state") == "running", page.inner_text("main")
    try:
        page.wait_for_function(
            "Number(document.querySelector('#sorter-total').textContent) >= 2", timeout=90_000
        )
    except Exception:
        status = page.request.get(server + "/api/sorter/status").text()
        raise AssertionError(f"fewer than 2 decisions in 90 s; the sorter says {status}") from None
    assert page.is_visible("#collect-banner")
    page.click("#sorter-stop")
    page.wait_for_function("document.querySelector('#sorter-state').dataset.state === 'stopped'")
    assert "no_model" in (page.get_attribute("#sorter-reasons", "data-reasons") or "")
    page.screenshot(path=str(SHOTS / "sorter.png"))
    page.goto(server + "/review")
    page.wait_for_selector(".review-item img")
    before = page.locator(".review-item").count()
    page.screenshot(path=str(SHOTS / "review.png"))
    # NOTE: typed first, so the test needs no part from an earlier test: on a fresh rig the
    # catalogue is empty, the label is new, and the page asks to confirm it (accepted).
    first = page.locator(".review-item").first
    first.locator("[data-other]").fill("brick-2x4-red")
    first.locator("button[data-label-other]").click()
    page.wait_for_function(f"document.querySelectorAll('.review-item').length === {before - 1}")
    page.reload()
    page.click(".review-item >> nth=0 >> button[data-label='brick-2x4-red']")
    page.wait_for_function(f"document.querySelectorAll('.review-item').length === {before - 2}")
    page.reload()
    page.wait_for_function(
        "document.querySelector('#review-counts').textContent.includes('2 labelled')"
    )
    page.goto(server + "/models")
    page.wait_for_function("document.querySelector('#active-model').textContent === 'none active'")
    page.screenshot(path=str(SHOTS / "models.png"))


def test_the_emergency_stop_latches_a_fault_the_dashboard_shows(page, server):
    page.goto(server + "/")
    page.click("#estop")
    page.wait_for_selector("#fault-box:not([hidden])")
    assert "emergency stop" in page.inner_text("#fault-reason")
    page.screenshot(path=str(SHOTS / "estop.png"))
    page.check("#zero-confirmed")
    page.click("#clear-fault")
    page.wait_for_selector("#fault-box", state="hidden")
