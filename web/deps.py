"""The app's dependencies as ``Annotated`` aliases, so routes declare what they need by name.

Everything lives on ``app.state`` (set up by the lifespan in :mod:`web.app`), so tests swap a
rig or a store by passing them to :func:`web.app.create_app`, or override a dependency with
``app.dependency_overrides``.

Auth: :data:`ViewerAuth`, :data:`OperatorAuth` and :data:`TrainerAuth` each resolve to the
calling :class:`~web.security.Principal` or answer 401 (no or bad credentials) / 403 (wrong
role).  A browser session must also send its CSRF token on every mutating request.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from pydantic import StringConstraints

from capture.store import DatasetStore
from rig.config import Settings
from rig.rig_types import Rig
from web.run_registry import RunRegistry
from web.security import (
    CSRF_FORM_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    Principal,
    Role,
    Session,
    key_name,
    role_for_key,
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_rig(request: Request) -> Rig:
    rig: Rig | None = request.app.state.rig
    if rig is None:
        raise HTTPException(503, "the rig is not open: see the server log for why it failed")
    return rig


def get_store(request: Request) -> DatasetStore:
    store: DatasetStore = request.app.state.store
    return store


def get_runs(request: Request) -> RunRegistry:
    runs: RunRegistry = request.app.state.runs
    return runs


SettingsDep = Annotated[Settings, Depends(get_settings)]
RigDep = Annotated[Rig, Depends(get_rig)]
StoreDep = Annotated[DatasetStore, Depends(get_store)]
RunsDep = Annotated[RunRegistry, Depends(get_runs)]


#: Where :func:`current_principal` keeps its answer for the rest of the request (the
#: middleware in :mod:`web.middleware` authenticates before the body is read; routes reuse it).
PRINCIPAL_SCOPE_KEY = "partrig.principal"


def current_principal(request: Request) -> Principal | None:
    """Who is calling, from ``X-Api-Key`` or the session cookie; None when anonymous.

    A wrong key is an error (401) rather than "anonymous", so a typo in a client's key is
    reported as such instead of as a missing permission.  Everything here is memory only (a
    constant-time key comparison, an HMAC, a dict lookup): the e-stop relies on that.
    """
    if PRINCIPAL_SCOPE_KEY in request.scope:
        known: Principal | None = request.scope[PRINCIPAL_SCOPE_KEY]
        return known
    settings: Settings = request.app.state.settings
    who: Principal | None = None
    key = request.headers.get("x-api-key")
    if key is not None:
        role = role_for_key(settings.auth, key)
        if role is None:
            raise HTTPException(
                401, "unknown API key: use a key from auth.*_keys (see `partrig auth new-key`)"
            )
        who = Principal(role, "key", key_name(key))
    else:
        session = session_of(request)
        if session is not None:
            who = Principal("operator", "session", session.user, csrf=session.csrf)
    request.scope[PRINCIPAL_SCOPE_KEY] = who
    return who


def session_id(request: Request) -> str | None:
    """The session id the cookie names, when the cookie is ours (signed) and unexpired."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    body = request.app.state.signer.unsign("session", cookie)
    sid = body.get("sid") if body is not None else None
    return sid if isinstance(sid, str) else None


def session_of(request: Request) -> Session | None:
    """The live server-side session behind the cookie; None once logged out or expired."""
    sid = session_id(request)
    return request.app.state.sessions.get(sid) if sid is not None else None


async def _check_csrf(request: Request, who: Principal) -> None:
    if who.via != "session" or request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FORM_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not who.csrf or not hmac.compare_digest(sent, who.csrf):
        raise HTTPException(
            403, f"missing or wrong CSRF token: send the page's token in the {CSRF_HEADER} header"
        )


def require(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that admits only ``roles`` (and checks CSRF for browser sessions)."""

    async def dependency(request: Request) -> Principal:
        who = current_principal(request)
        if who is None:
            raise HTTPException(
                401,
                "sign in at /login, or send an API key in the X-Api-Key header",
                headers={"WWW-Authenticate": "X-Api-Key"},
            )
        if not who.may(*roles):
            raise HTTPException(
                403, f"this needs the {' or '.join(roles)} role; you are {who.role}"
            )
        await _check_csrf(request, who)
        return who

    return dependency


ViewerAuth = Annotated[Principal, Depends(require("viewer", "operator", "trainer"))]
OperatorAuth = Annotated[Principal, Depends(require("operator"))]
TrainerAuth = Annotated[Principal, Depends(require("trainer", "operator"))]

#: A part label from a client: trimmed, 1-100 printable characters (control characters would
#: make file names, reports and the page unreadable).
Label = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00-\x20\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
    ),
]
