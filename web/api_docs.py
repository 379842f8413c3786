"""Write docs/api.md from the app's OpenAPI schema: ``python -m web.api_docs > docs/api.md``.

Why generated: the schema is the truth about routes, parameters and roles; a hand-kept list
drifts.  tests/web/test_api_docs.py fails when docs/api.md is out of step.
"""

from __future__ import annotations

from typing import Any

from rig.config import Settings
from web.app import create_app

HEADER = """# partrig HTTP API

Generated from the OpenAPI schema by `python -m web.api_docs > docs/api.md`; the live schema is
at `/openapi.json` and an interactive page at `/docs` on a running server.

Authentication: send an API key in the `X-Api-Key` header (roles: viewer reads; operator
controls runs and the rig; trainer reads the dataset), or use the browser session cookie plus
the `X-CSRF-Token` header on every mutating request.  Errors are JSON `{"detail": "...",
"error": "ClassName"}`: 401 missing/bad credentials, 403 wrong role or CSRF token, 404 unknown
run or shot, 409 invalid transition or latched fault, 422 invalid input (the field is named),
503 rig or camera unavailable.
"""


def render(schema: dict[str, Any]) -> str:
    out = [HEADER]
    by_tag: dict[str, list[str]] = {}
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            tag = (op.get("tags") or ["other"])[0]
            params = [
                f"`{p['name']}` ({p['in']}{', required' if p.get('required') else ''})"
                for p in op.get("parameters", [])
            ]
            body: dict[str, Any] = op.get("requestBody", {}).get("content", {})
            media: dict[str, Any] = next(iter(body.values()), {})
            ref = media.get("schema", {}).get("$ref", "")
            lines = [
                f"### `{method.upper()} {path}`",
                "",
                (op.get("description") or op.get("summary") or "").strip(),
                "",
            ]
            if params:
                lines.append("Parameters: " + ", ".join(params) + ".")
            if ref:
                model = ref.rsplit("/", 1)[-1]
                props = schema["components"]["schemas"][model].get("properties", {})
                lines.append(
                    f"Body ({', '.join(body)}): " + ", ".join(f"`{k}`" for k in props) + "."
                )
            by_tag.setdefault(tag, []).append("\n".join(lines).rstrip() + "\n")
    for tag, entries in by_tag.items():
        out.append(f"## {tag}\n")
        out.extend(entries)
    return "\n".join(out)


def main() -> None:
    print(render(create_app(Settings()).openapi()), end="")


if __name__ == "__main__":
    main()
