"""Real-browser test of sizes and attributes on the pages: the shot page shows the size in mm and
whether the marker was found, edits an attribute and undoes it; the dataset page edits the
catalogue and filters by attribute and length; the labelling station edits the shown shot's
attributes and its own undo (z) takes the edit back.
"""

from __future__ import annotations

import pytest
from browser_helpers import ARGS, CHROMIUM, need_chromium, running_server, screenshot_if_failed
from browser_helpers import sign_in as sign_in_page
from web_helpers import add_shots, make_settings

from capture.store.catalogue import Catalogue
from capture.store.measure_schema import measurement_row, record_measurement

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    need_chromium()
    settings = make_settings(tmp_path_factory.mktemp("catalogue") / "data")
    with running_server(settings) as (url, app):
        yield url, app


@pytest.fixture
def page(request, served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        pg = ctx.new_page()
        pg.set_default_timeout(30_000)
        pg.on("dialog", lambda d: d.accept())
        sign_in_page(pg, served[0])
        yield pg
        screenshot_if_failed(request, pg)
        browser.close()


def test_sizes_and_attributes_on_the_shot_dataset_and_label_pages(page, served):
    url, app = served
    store = app.state.store
    a, b, c = add_shots(store, ["nut"], [1], per=3)
    Catalogue(store).set_part("nut", {"category": "nut", "finish": "zinc"})
    with store.transaction() as conn:
        sizes = {"length_mm": 10.04, "width_mm": 6.9, "area_mm2": 41.3, "mm_per_px": 0.1612,
                 "calibrated": True}  # fmt: skip
        record_measurement(conn, measurement_row(a, "measured", sizes, "2026-12-03T10:00:00"))
        record_measurement(conn, measurement_row(b, "marker_missing", None, "2026-12-03T10:00:00"))

    page.goto(f"{url}/dataset/shots/{a}")
    sizes_box = page.locator("#sizes")
    page.wait_for_function("document.querySelector('#sizes').textContent.includes('10.04 mm')")
    assert "marker found" in sizes_box.inner_text() and "0.1612 mm/px" in sizes_box.inner_text()
    finish = page.locator('#attributes input[data-attr="finish"]')
    assert finish.input_value() == "zinc"
    finish.fill("black")
    finish.press("Tab")
    attrs_text = "document.querySelector('#attributes').textContent"
    page.wait_for_function(f"{attrs_text}.includes('this shot')")
    page.wait_for_function("document.querySelector('#edits').textContent.includes('set_attribute')")
    assert Catalogue(store).shot_attributes(a)["overrides"] == {"finish": "black"}
    page.click("#attributes .attr-undo")
    page.wait_for_function(f"!{attrs_text}.includes('this shot')")
    assert Catalogue(store).shot_attributes(a)["overrides"] == {}

    page.goto(f"{url}/dataset/shots/{b}")
    page.wait_for_function("document.querySelector('#sizes').textContent.includes('NOT found')")

    page.goto(f"{url}/dataset")
    page.click("#catalogue-box summary")
    attrs = page.locator('#catalogue tr[data-label="nut"] .cat-attrs')
    attrs.wait_for()
    attrs.fill("category=nut; finish=zinc; thread=M4")
    page.click('#catalogue tr[data-label="nut"] .cat-save')
    flash = "document.querySelector('#flash-text')?.textContent"
    page.wait_for_function(f"{flash}.includes('Saved nut')")
    assert Catalogue(store).attributes_for_label("nut")["thread"] == "M4"
    page.wait_for_function("document.querySelector('select[name=attr_name]').options.length > 2")
    page.select_option("select[name=attr_name]", "thread")
    page.fill("input[name=attr_value]", "M4")
    page.fill("input[name=min_length_mm]", "9.5")
    page.click("#filters button[type=submit]")
    grid = "[...document.querySelectorAll('#grid a')]"
    page.wait_for_function(
        f"{grid}.map(x => x.href).join().includes('/shots/{a}') && {grid}.length === 1"
    )

    # the station: the queued shot's attribute edit is one action of the same undo stack
    store.enqueue_shots([(c, [("nut", 0.6)], None)])
    page.goto(f"{url}/label")
    page.wait_for_selector("#station[data-ready='1']")
    page.click("#label-attrs summary")
    box = page.locator('#attr-box input[data-attr="finish"]')
    box.wait_for()
    box.fill("brass")
    box.press("Tab")
    page.wait_for_function("document.querySelector('#attr-box').textContent.includes('this shot')")
    assert Catalogue(store).shot_attributes(c)["overrides"] == {"finish": "brass"}
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("z")
    page.wait_for_function("!document.querySelector('#attr-box').textContent.includes('this shot')")
    assert Catalogue(store).shot_attributes(c)["overrides"] == {}
