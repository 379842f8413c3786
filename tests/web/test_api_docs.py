"""docs/api.md is generated from the OpenAPI schema and must stay in step with it."""

from __future__ import annotations

from pathlib import Path

from rig.config import Settings
from web.api_docs import render
from web.app import create_app

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_docs_api_md_matches_the_openapi_schema():
    assert DOC.read_text(encoding="utf-8") == render(create_app(Settings()).openapi()), (
        "docs/api.md is stale: run `python -m web.api_docs > docs/api.md`"
    )
