"""The effective configuration, as the server runs it, with every secret masked.

Why masked here and not on the page: the answer must be safe to show on a screen or paste into
a bug report, so no password hash, session secret or API key ever leaves the server; the page
shows that one is set, and how many keys each role has.  A URL carrying ``user:password@`` has
the password masked as well.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter

from web.deps import OperatorAuth, SettingsDep

router = APIRouter(prefix="/api/settings", tags=["settings"])

MASK = "•••"
#: A key whose name matches holds a secret (``operator_password_hash``, ``session_secret``,
#: ``viewer_keys``, an access token ...).
SECRET_NAME = re.compile(r"(password|secret|_keys?$|token|credential)", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]+:)[^@/\s]+@", re.IGNORECASE)


def masked(value: Any, name: str = "") -> Any:
    """``value`` with every secret replaced: set secrets by :data:`MASK`, lists of keys by a
    list of masks (their count stays visible), empty ones left empty."""
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if SECRET_NAME.search(name):
        if isinstance(value, list):
            return [MASK for _ in value]
        return MASK if value not in (None, "") else value
    if isinstance(value, list):
        return [masked(v, name) for v in value]
    if isinstance(value, str):
        return URL_PASSWORD.sub(rf"\g<head>{MASK}@", value)
    return value


@router.get("")
def effective_settings(settings: SettingsDep, who: OperatorAuth) -> dict[str, Any]:
    """Every section of the configuration in force (defaults included), secrets masked, and
    the file it was read from."""
    return {
        "source": str(settings.source) if settings.source is not None else None,
        "settings": masked(settings.model_dump(mode="json")),
    }
