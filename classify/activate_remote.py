"""``partrig model activate``: make a validated model live on a running rig, over its API.

Why over the API only: the server that owns the data folder holds the running sorter, and an
activation must swap the model inside it (``POST /api/models/{id}/activate``), never just flip
a row under it.  The operator key comes from the configuration (``auth.operator_keys[0]``),
as for ``partrig capture`` and ``partrig sort``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rig.errors import ConfigError, NotFound, RigError


def activate_remotely(
    model_id: str | None, url: str | None, config: Path | None, transport: Any = None
) -> dict[str, Any]:
    """Activate ``model_id`` (None: the newest validated one); returns the activation record."""
    import httpx

    from capture.runs.remote import find_owner
    from rig.config import load_settings

    settings = load_settings(config)
    if url is None:
        owner = find_owner(settings)
        if owner is None or not owner.is_server:
            raise RigError(
                f"no partrig server owns {settings.data.dir}: start `partrig serve`, or pass "
                "--url of the rig"
            )
        url = str(owner.url)
    keys = settings.auth.operator_keys
    if not keys:
        raise ConfigError(
            "activating a model needs an operator key: add one to auth.operator_keys "
            "(`partrig auth new-key --role operator`)"
        )
    with httpx.Client(
        base_url=url.rstrip("/"), headers={"X-Api-Key": keys[0]}, timeout=120.0, transport=transport
    ) as client:
        if model_id is None:
            models = _call(client, "GET", "/api/models")["items"]
            validated = [m for m in models if m.get("state") == "validated"]
            if not validated:
                raise NotFound(
                    f"the rig at {url} has no validated model to activate: push one with "
                    "`partrig model push`"
                )
            model_id = str(validated[0]["id"])  # NOTE: the list is newest first
        return _call(client, "POST", f"/api/models/{model_id}/activate")


def _call(client: Any, method: str, path: str) -> dict[str, Any]:
    import httpx

    try:
        reply = client.request(method, path)
    except httpx.HTTPError as exc:
        raise RigError(f"the rig did not answer {path}: {exc}") from None
    try:
        body = reply.json()
    except ValueError:
        body = {"detail": reply.text[:200]}
    if reply.status_code >= 400:
        detail = body.get("detail", body) if isinstance(body, dict) else body
        raise RigError(f"the rig refused {method} {path} ({reply.status_code}): {detail}")
    return body
