"""The Sorter page's rules card in a real browser: the configured rules as a read-only table, and
a rule the actuator cannot carry out shown as a banner naming it."""

from __future__ import annotations

import pytest
from browser_helpers import ARGS, CHROMIUM, need_chromium, running_server, screenshot_if_failed
from browser_helpers import sign_in as browser_sign_in
from web_helpers import make_settings

RULES = [
    {"name": "M4x10", "bin": 3, "when": {"category": "screw", "shaft_length_mm": [9.0, 11.0]}},
    {"bin": 2, "when": {"colour": ["red", "orange"]}},
]


@pytest.fixture
def page(request, tmp_path):
    need_chromium()
    from playwright.sync_api import sync_playwright

    # NOTE: rule 2's bin is the review bin: the page must say so (the sorter would refuse).
    settings = make_settings(tmp_path / "data", sorter={"rules": RULES}, actuator={"review_bin": 2})
    with running_server(settings) as (url, _app), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.set_default_timeout(30_000)
        browser_sign_in(pg, url, "/sorter")
        yield pg
        screenshot_if_failed(request, pg)
        browser.close()


def test_the_rules_card_lists_the_rules_and_names_a_problem(page) -> None:
    page.wait_for_selector("#rules-card:not([hidden])")
    page.wait_for_function("document.querySelectorAll('#rules-table tbody tr').length === 2")
    rows = page.locator("#rules-table tbody tr")
    assert rows.nth(0).inner_text().split("\t") == [
        "1", "M4x10", "category screw, shaft_length_mm 9-11", "3", "0",
    ]  # fmt: skip
    assert rows.nth(1).get_attribute("data-rule") == "rule 2"
    assert "colour red or orange" in rows.nth(1).inner_text()
    problem = page.locator("#rules-problem")
    assert problem.is_visible() and "bin 2 is the review bin" in problem.inner_text()
    assert "No part sorted by the rules yet" in page.locator("#rules-recent").inner_text()
