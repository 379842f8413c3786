"""Signing in and out: the operator's password opens a server-side session named by a cookie.

The cookie is HttpOnly and SameSite=Strict; it carries only a signed session id, and the
session (in :class:`~web.security.SessionStore`) holds the CSRF token that every mutating
request from the page must echo in the ``X-CSRF-Token`` header (see :mod:`web.deps`).  Logout
deletes the session, so a copied cookie stops working at once.

Password attempts pass the :class:`LoginGate` before argon2 runs:

- every attempt is *counted before* it is verified, so a burst of parallel attempts cannot all
  slip in while the first ones are still hashing (a success is taken back off the count);
- the count is kept per client address and for all clients together, so rotating addresses
  (or a forged ``X-Forwarded-For``: honoured only from ``web.trusted_proxies``) gains nothing;
- at most ``auth.login_concurrency`` argon2 checks run at once (each takes 64 MiB and a core);
  one more is answered 429 at once instead of waiting in the thread pool the rest of the API
  shares.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from rig.config import AuthConfig
from web.deps import SettingsDep, current_principal, session_id
from web.security import SESSION_COOKIE, verify_password

router = APIRouter(tags=["auth"])

WINDOW_S = 60.0
#: How many client addresses the gate remembers; beyond that the least recent is forgotten
#: (the global count still holds, so forgetting never lets more attempts through).
MAX_CLIENTS = 4096


class LoginBody(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


class LoginRefused(HTTPException):
    """429 with ``Retry-After``: the gate would not let this attempt reach argon2."""

    def __init__(self, detail: str, retry_s: float) -> None:
        super().__init__(429, detail, headers={"Retry-After": str(max(1, math.ceil(retry_s)))})


class LoginGate:
    """Counts password attempts before they are verified and bounds verifications at once."""

    def __init__(
        self,
        per_client: int,
        global_limit: int,
        concurrency: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_client = per_client
        self.global_limit = global_limit
        self.clock = clock
        self._clients: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()
        self._lock = threading.Lock()
        self._verifying = threading.BoundedSemaphore(concurrency)

    @classmethod
    def from_config(cls, auth: AuthConfig) -> LoginGate:
        return cls(
            auth.login_attempts_per_min, auth.login_attempts_global_per_min, auth.login_concurrency
        )

    def admit(self, client: str) -> float:
        """Count one attempt from ``client`` now, or raise :class:`LoginRefused`.

        Returns the attempt's timestamp, to hand to :meth:`forgive` when it succeeds.
        """
        now = self.clock()
        with self._lock:
            mine = self._clients.pop(client, None) or deque()
            self._clients[client] = mine  # NOTE: re-inserted: most recent client last
            for q in (mine, self._all):
                while q and q[0] <= now - WINDOW_S:
                    q.popleft()
            if len(mine) >= self.per_client:
                raise LoginRefused(
                    f"too many sign-in attempts from this address ({self.per_client} a minute, "
                    "auth.login_attempts_per_min): wait a minute and try again",
                    mine[0] + WINDOW_S - now,
                )
            if len(self._all) >= self.global_limit:
                raise LoginRefused(
                    f"too many sign-in attempts on this rig ({self.global_limit} a minute from "
                    "all addresses, auth.login_attempts_global_per_min): wait a minute; API "
                    "keys still work",
                    self._all[0] + WINDOW_S - now,
                )
            mine.append(now)
            self._all.append(now)
            while len(self._clients) > MAX_CLIENTS:
                self._clients.pop(next(iter(self._clients)))
        return now

    def forgive(self, client: str, stamp: float) -> None:
        """Take a successful (or never verified) attempt back off the counts."""
        with self._lock:
            for q in (self._clients.get(client), self._all):
                if q is not None and stamp in q:
                    q.remove(stamp)

    async def verify(self, password_hash: str, password: str) -> bool:
        """argon2 in a worker thread if a verification slot is free; else 429 at once.

        NOTE: the slot is taken on the event loop, so a refused attempt never occupies a
        thread.  ``run_in_threadpool`` does not abandon a started thread when cancelled, so
        releasing in ``finally`` never frees a slot whose argon2 is still running.
        """
        if not self._verifying.acquire(blocking=False):
            raise LoginRefused("the rig is checking other sign-ins: try again in a second", 1)
        try:
            return await run_in_threadpool(verify_password, password_hash, password)
        finally:
            self._verifying.release()


def gate_of(request: Request) -> LoginGate:
    gate: LoginGate = request.app.state.login_gate
    return gate


async def _sign_in(request: Request, response: Response, password: str) -> dict[str, Any]:
    settings = request.app.state.settings
    if not settings.auth.operator_password_hash:
        raise HTTPException(
            403,
            "no operator password is configured: set auth.operator_password_hash "
            "(`partrig auth hash-password`)",
        )
    # NOTE: the client address is the socket's peer unless web.trusted_proxies names it, in
    # which case uvicorn has replaced it with X-Forwarded-For's (see web.serve).
    client = request.client.host if request.client else "unknown"
    gate = gate_of(request)
    stamp = gate.admit(client)
    try:
        ok = await gate.verify(settings.auth.operator_password_hash, password)
    except LoginRefused:
        gate.forgive(client, stamp)  # never verified: it does not count
        raise
    if not ok:
        raise HTTPException(401, "wrong password")
    gate.forgive(client, stamp)
    sid, session = request.app.state.sessions.create("operator")
    ttl_s = request.app.state.sessions.ttl_s
    token = request.app.state.signer.sign("session", {"sid": sid}, ttl_s)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(ttl_s), httponly=True, samesite="strict", path="/"
    )
    return {"role": "operator", "csrf_token": session.csrf}


@router.post("/api/auth/login")
async def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
    """Sign in with the operator password; sets the session cookie, returns the CSRF token.

    429 with ``Retry-After`` when the address (or the rig as a whole) has used its attempts for
    the minute, or when other sign-ins are being checked at this moment.
    """
    return await _sign_in(request, response, body.password)


@router.post("/login", include_in_schema=False)
async def login_form(
    request: Request,
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    """The sign-in page's form: on success go to ``next`` (a local path only)."""
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    response = RedirectResponse(target, status_code=303)
    try:
        await _sign_in(request, response, password)
    except HTTPException as exc:
        back = urlencode({"error": exc.status_code, "next": target})
        return RedirectResponse(f"/login?{back}", status_code=303)
    return response


@router.post("/api/auth/logout")
def logout(request: Request, response: Response) -> dict[str, bool]:
    """End the browser session on the server (the cookie stops working at once) and drop it."""
    sid = session_id(request)
    if sid is not None:
        request.app.state.sessions.revoke(sid)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"ok": True}


@router.get("/api/auth/me")
def me(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """Who the credentials belong to (401 when anonymous)."""
    who = current_principal(request)
    if who is None:
        raise HTTPException(401, "not signed in and no API key sent")
    return {"role": who.role, "via": who.via, "name": who.name}
