"""The labelling station in a real browser (Debian's chromium via Playwright), keyboard only.

Each test presses keys as a person would and then asserts what the database holds: choosing a
suggestion relabels and undo takes it back, a discard and its undo bring the shot's files back,
a bulk accept from the grid is one undoable action, a new label needs its confirmation, and a
reload resumes at the same item.  A failing test leaves a screenshot in test-artifacts/failures/.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from browser_helpers import (
    ARGS,
    CHROMIUM,
    SHOTS,
    need_chromium,
    running_server,
    screenshot_if_failed,
    sign_in,
)
from PIL import Image
from web_helpers import make_settings

from capture.store import ShotRecord
from capture.store.sorting import DecisionRecord

pytestmark = pytest.mark.browser

LABELS = ("brick-2x4-red", "brick-2x2-red", "plate-1x2-blue")


def encoded(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt)
    return buf.getvalue()


def seed(store: Any) -> None:
    """Three review items (margins 0.1-0.3) and three shots (margins 0.8-0.9), 1024 px wide."""
    for label in LABELS:
        store.upsert_part(label)
    for i, margin in enumerate((0.1, 0.2, 0.3)):
        img = np.full((768, 1024, 3), 60 + 40 * i, np.uint8)
        store.add_decision(
            DecisionRecord(
                label=LABELS[0],
                confidence=0.5 + margin / 2,
                bin=0,
                reason="uncertain",
                top_k=[(LABELS[0], 0.5 + margin / 2), (LABELS[1], 0.5 - margin / 2)],
                crop_jpeg=encoded(img, "JPEG"),
                crop_bbox=(200, 150, 400, 300),
                review=True,
            )
        )
    run_id = store.create_run("bag", "name = 'bag'", "{}", 3)
    predictions = []
    for i, margin in enumerate((0.8, 0.85, 0.9)):
        img = np.full((768, 1024, 3), 120, np.uint8)
        img[200:400, 300:600] = (200, 30, 20)
        mask = np.zeros((768, 1024), np.uint8)
        mask[200:400, 300:600] = 255
        m = store.write_file(f"masks/{run_id}/{i:06d}.png", encoded(mask, "PNG"))
        record = ShotRecord(
            label=LABELS[2],
            instance_id=f"bag-{i}",
            path="",
            sha256="0" * 64,
            size=0,
            run_id=run_id,
            shot_index=i,
            mask_path=m.path,
            width=1024,
            height=768,
            format="jpeg",
            bbox_x=300,
            bbox_y=200,
            bbox_w=300,
            bbox_h=200,
        )
        shot_id = store.save_shots(
            [(f"images/{run_id}/{i:06d}.jpg", encoded(img, "JPEG"), record)]
        )[0]
        top = [(LABELS[2], 0.5 + margin / 2), (LABELS[0], 0.5 - margin / 2)]
        predictions.append((shot_id, top, None))
    store.enqueue_shots(predictions)


@pytest.fixture
def station(request, tmp_path):
    need_chromium()
    from playwright.sync_api import sync_playwright

    settings = make_settings(tmp_path / "data", camera={"preview_size": [320, 240]})
    with running_server(settings) as (url, app), sync_playwright() as pw:
        seed(app.state.store)
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        sign_in(page, url, "/label")
        page.wait_for_selector("#station[data-ready='1']")
        try:
            yield page, app.state.store
        finally:
            screenshot_if_failed(request, page)
            browser.close()


def shown(page: Any) -> int:
    page.wait_for_function(
        "(() => { const L = window.partrigLabel, it = L.items()[L.pos()];"
        " return it && document.querySelector('#figure').dataset.item === String(it.id); })()"
    )
    return int(page.get_attribute("#figure", "data-item"))


def press(page: Any, *keys: str) -> None:
    """Keys one by one, then wait until every answer is back (the counts are fresh)."""
    for key in keys:
        page.keyboard.press(key)
    page.wait_for_function("window.partrigLabel.idle()")


def queue_row(store: Any, qid: int) -> dict[str, Any]:
    return store.label_item(qid)


def review_state(store: Any, qid: int) -> str:
    return store.get_review_item(queue_row(store, qid)["review_item_id"])["state"]


def live_labels(store: Any) -> dict[int, str]:
    return {s["id"]: s["label"] for s in store.query_shots().items}


def test_choose_then_undo_a_relabel_and_discard_then_undo_by_keyboard(station):
    page, store = station
    first = shown(page)
    press(page, "2")  # the second suggestion
    item = queue_row(store, first)
    assert item["state"] == "accepted" and item["label"] == LABELS[1]
    assert live_labels(store)[item["shot_id"]] == LABELS[1]
    assert shown(page) != first
    press(page, "z")
    assert shown(page) == first
    assert queue_row(store, first)["state"] == "open" and review_state(store, first) == "open"
    assert item["shot_id"] not in live_labels(store)
    assert page.text_content("#label-counts").startswith("6 to label")
    press(page, "x")
    assert review_state(store, first) == "discarded"
    press(page, "z")
    assert review_state(store, first) == "open" and shown(page) == first
    # a bag shot: discard moves its files to the trash, undo brings them back
    press(page, "s", "s", "s")
    bag = shown(page)
    shot_id = queue_row(store, bag)["shot_id"]
    path = store.data_dir / store.get_shot(shot_id)["path"]
    press(page, "x")
    assert shot_id not in live_labels(store) and not path.exists()
    press(page, "Control+z")
    assert live_labels(store)[shot_id] == LABELS[2] and path.exists()
    press(page, "Control+y")
    assert shot_id not in live_labels(store)
    assert store.check().ok


def test_bulk_accept_in_the_grid_and_its_undo_by_keyboard(station):
    page, store = station
    press(page, "g")
    page.wait_for_selector("#grid-cells .cell")
    press(page, "c")  # the confident ones: the three bag shots
    assert page.text_content("#grid-selected") == "3 selected"
    press(page, "Escape", "Space", "Shift+ArrowRight")  # the two least certain review items
    assert page.text_content("#grid-selected") == "2 selected"
    press(page, "Enter")
    assert len(store.label_queue("x")["items"]) == 4  # two of six accepted
    assert store.review_counts() == {"open": 1, "labelled": 2, "discarded": 0}
    labelled = store.review_queue(state="labelled")
    assert {r["label"] for r in labelled} == {LABELS[0]}
    press(page, "z")
    assert store.review_counts() == {"open": 3, "labelled": 0, "discarded": 0}
    assert page.locator("#grid-cells .cell").count() == 6
    press(page, "Shift+z")
    assert store.review_counts()["labelled"] == 2
    assert page.text_content("#label-counts").startswith("4 to label · 2 accepted")


def test_a_new_label_needs_its_confirmation_and_a_reload_resumes_in_place(station):
    page, store = station
    first = shown(page)
    press(page, "/")
    page.keyboard.type("Hex Nut M4")
    press(page, "Enter")
    assert page.is_visible("#confirm") and queue_row(store, first)["state"] == "open"
    press(page, "Escape")
    assert page.is_hidden("#confirm") and queue_row(store, first)["state"] == "open"
    press(page, "h")  # any other letter starts a search
    assert page.input_value("#search") == "h"
    page.keyboard.type("ex nut m4")
    press(page, "Enter", "Enter")
    item = queue_row(store, first)
    assert item["state"] == "accepted" and item["label"] == "hex-nut-m4"
    assert "hex-nut-m4" in {p["label"] for p in store.list_parts()}
    press(page, "j")
    here = shown(page)
    page.wait_for_timeout(600)  # the cursor is saved after a short pause
    page.wait_for_function("window.partrigLabel.idle()")
    page.reload()
    page.wait_for_selector("#station[data-ready='1']")
    assert shown(page) == here


def test_on_a_tablet_the_station_fits_and_works_by_touch_size_buttons(station):
    page, store = station
    page.set_viewport_size({"width": 820, "height": 1180})
    first = shown(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 820
    heights = page.eval_on_selector_all(
        "#station button",
        "els => els.filter(e => e.offsetParent).map(e => e.getBoundingClientRect().height)",
    )
    assert heights and min(heights) >= 44
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "label-tablet.png"), full_page=True)
    page.click("#choices button >> nth=1")  # by mouse: the second suggestion
    page.wait_for_function("window.partrigLabel.idle()")
    assert queue_row(store, first)["label"] == LABELS[1]
    page.click("#btn-undo")
    page.wait_for_function("window.partrigLabel.idle()")
    assert queue_row(store, first)["state"] == "open"
