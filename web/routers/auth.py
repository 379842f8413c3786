"""Signing in and out: the operator's password becomes a signed session cookie.

The cookie is HttpOnly and SameSite=Strict, and it carries a CSRF token that every mutating
request from the page must echo in the ``X-CSRF-Token`` header (see :mod:`web.deps`).  Failed
sign-ins are limited per client address so the password cannot be guessed quickly.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict, deque
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from web.deps import SettingsDep, current_principal
from web.security import SESSION_COOKIE, SESSION_TTL_S, verify_password

router = APIRouter(tags=["auth"])

MAX_FAILURES_PER_MIN = 10


class LoginBody(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


class FailureLimiter:
    """Counts failed sign-ins per client address over the last minute."""

    def __init__(self, limit: int = MAX_FAILURES_PER_MIN) -> None:
        self.limit = limit
        self._fails: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        with self._lock:
            q = self._fails[client]
            while q and q[0] < time.monotonic() - 60:
                q.popleft()
            if len(q) >= self.limit:
                raise HTTPException(429, "too many failed sign-ins: wait a minute and try again")

    def failed(self, client: str) -> None:
        with self._lock:
            self._fails[client].append(time.monotonic())


_limiter = FailureLimiter()


def _sign_in(request: Request, response: Response, password: str) -> dict[str, Any]:
    settings = request.app.state.settings
    client = request.client.host if request.client else "unknown"
    _limiter.check(client)
    if not settings.auth.operator_password_hash:
        raise HTTPException(
            403,
            "no operator password is configured: set auth.operator_password_hash "
            "(`partrig auth hash-password`)",
        )
    if not verify_password(settings.auth.operator_password_hash, password):
        _limiter.failed(client)
        raise HTTPException(401, "wrong password")
    csrf = secrets.token_urlsafe(24)
    token = request.app.state.signer.sign(
        "session", {"user": "operator", "csrf": csrf}, SESSION_TTL_S
    )
    response.set_cookie(
        SESSION_COOKIE, token, max_age=SESSION_TTL_S, httponly=True, samesite="strict", path="/"
    )
    return {"role": "operator", "csrf_token": csrf}


@router.post("/api/auth/login")
def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
    """Sign in with the operator password; sets the session cookie, returns the CSRF token."""
    return _sign_in(request, response, body.password)


@router.post("/login", include_in_schema=False)
def login_form(
    request: Request, password: Annotated[str, Form()], next: Annotated[str, Form()] = "/"
) -> Response:
    """The sign-in page's form: on success go to ``next`` (a local path only)."""
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    response = RedirectResponse(target, status_code=303)
    try:
        _sign_in(request, response, password)
    except HTTPException as exc:
        return RedirectResponse(f"/login?error={exc.status_code}", status_code=303)
    return response


@router.post("/api/auth/logout")
def logout(response: Response) -> dict[str, bool]:
    """End the browser session (the cookie is dropped; nothing to protect with CSRF)."""
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"ok": True}


@router.get("/api/auth/me")
def me(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """Who the credentials belong to (401 when anonymous)."""
    who = current_principal(request)
    if who is None:
        raise HTTPException(401, "not signed in and no API key sent")
    return {"role": who.role, "via": who.via, "name": who.name}
