"""The Sorter page shows the configured sorting rules (read-only), and a start whose rules the
hardware cannot carry out is refused with the rule named."""

from __future__ import annotations

from fastapi.testclient import TestClient
from web_helpers import OP, VIEW, FakeRig, make_settings, sign_in

from capture.store import DatasetStore
from web.app import create_app

RULES = [
    {"name": "M4x10", "bin": 3, "when": {"category": "screw", "shaft_length_mm": [9.0, 11.0]}},
    {"bin": 1, "when": {"colour": "red"}},
]


def _client(tmp_path, rules, **actuator):
    settings = make_settings(tmp_path, sorter={"rules": rules}, actuator=actuator)
    store = DatasetStore.open(settings.data.dir)
    return TestClient(create_app(settings, rig=FakeRig(), store=store)), store


def test_status_and_page_carry_the_rules_table(tmp_path) -> None:
    client, store = _client(tmp_path, RULES)
    try:
        with client:
            rules = client.get("/api/sorter/status", headers=VIEW).json()["rules"]
            assert rules["measuring"] is True and rules["problem"] is None
            assert [(r["title"], r["when"], r["bin"], r["fired"]) for r in rules["table"]] == [
                ("M4x10", "category screw, shaft_length_mm 9-11", 3, 0),
                ("rule 2", "colour red", 1, 0),
            ]
            sign_in(client)
            page = client.get("/sorter").text
            assert 'id="rules-card"' in page and "/static/sorter_rules.js" in page
            script = client.get("/static/sorter_rules.js")
            assert script.status_code == 200 and "showRules" in script.text
    finally:
        store.close()


def test_a_rule_into_the_review_bin_refuses_the_start(tmp_path) -> None:
    client, store = _client(tmp_path, [{"bin": 2, "when": {"colour": "red"}}], review_bin=2)
    try:
        with client:
            r = client.post("/api/sorter/start", headers=OP, json={"collect_for_review": True})
            assert r.status_code == 422, r.text
            assert "bin 2 is the review bin" in r.text
            status = client.get("/api/sorter/status", headers=VIEW).json()
            assert status["state"] == "stopped"
            assert "review bin" in status["rules"]["problem"]
    finally:
        store.close()
