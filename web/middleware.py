"""The gate every HTTP request passes before a route sees it: host, credentials, body, headers.

Why one pure-ASGI layer and not ``BaseHTTPMiddleware``: the e-stop goes through here too, so it
must cost microseconds and never buffer a body or hop threads.  In order:

1. **Host.** The ``Host`` header must be an IP literal, ``localhost``, this machine's host name
   (also ``NAME.local``), the address the connection arrived on, or a name in
   ``web.allowed_hosts``; anything else is 400.  A DNS-rebinding page reaches the rig under
   the attacker's own name, so this is what stops it.
2. **Credentials before the body.**  A request that carries a body (other than to sign in or
   out) must present a valid API key or session *before* one byte of it is read; otherwise 401
   at once.  The answer is then the same as the route's own check would give, only without
   reading 300 MB first.
3. **Body size.**  A declared ``Content-Length`` over the route's limit is 413 at once; a
   streamed body is counted as it arrives and cut off at the limit (413).  Limits:
   ``models.max_upload_mb`` for ``POST /api/models``, :data:`PLAN_BODY_BYTES` for the plan
   routes, ``web.max_body_kb`` for everything else.
4. **Finite numbers.**  A JSON body is checked for ``NaN``/``Infinity`` (which Python's parser
   accepts but JSON does not have) and for numbers that overflow to infinity: 422 saying so.
5. **Response headers.**  Anti-framing (``frame-ancestors 'none'``, ``X-Frame-Options``),
   ``nosniff``, ``Referrer-Policy``, and ``Cache-Control: private`` on every answer to a
   request that carried credentials (``private, no-store`` unless the route chose a policy).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import HTTPException
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rig.config import Settings

#: Routes that take a body from someone not yet signed in.
PUBLIC_BODY_PATHS = frozenset({"/api/auth/login", "/login", "/api/auth/logout"})
#: Routes whose body is a plan: 256 KiB of TOML, which JSON escaping may nearly double.
PLAN_PATHS = frozenset({"/api/runs", "/api/runs/upload", "/api/plans/preview"})
PLAN_BODY_BYTES = 576 * 1024
MODEL_UPLOAD_PATH = "/api/models"

SECURITY_HEADERS = {
    "content-security-policy": "frame-ancestors 'none'; object-src 'none'; base-uri 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyTooLarge(HTTPException):
    """413: raised from ``receive`` when a streamed body passes its limit.

    An ``HTTPException`` so that FastAPI, which turns other errors met while reading a body
    into a 400, passes it on unchanged.
    """

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(413, too_large_message(limit, what))


def too_large_message(limit: int, what: str) -> str:
    size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 1024} KiB"
    return f"the request body is larger than {size}, the limit for {what}"


def local_names() -> set[str]:
    """This machine's own names: a rebinding page cannot make a browser use them."""
    name = socket.gethostname().lower().rstrip(".")
    return {"localhost", name, f"{name}.local", name.split(".")[0]}


class Guard:
    """The ASGI middleware described in the module docstring; install it with ``add_middleware``."""

    def __init__(self, app: ASGIApp, settings: Settings, extra_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.settings = settings
        self.hosts = local_names() | set(settings.web.allowed_hosts) | set(extra_hosts)
        self.json_limit = settings.web.max_body_kb * 1024
        self.model_limit = settings.models.max_upload_mb * 2**20

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self.host_allowed(headers.get("host"), scope):
            await _answer(
                scope,
                receive,
                send,
                400,
                "the Host header names a server this rig does not answer to: browse to it by "
                "its address or host name, or add the name to web.allowed_hosts",
            )
            return
        send = self.with_headers(scope, headers, send)
        length = _content_length(headers)
        if length == -1:
            await _answer(scope, receive, send, 400, "Content-Length must be a whole number")
            return
        has_body = bool(length) or "transfer-encoding" in headers
        if has_body and scope["path"] not in PUBLIC_BODY_PATHS:
            refusal = _unauthenticated(scope)
            if refusal is not None:
                await _answer(
                    scope, receive, send, refusal.status_code, refusal.detail, refusal.headers
                )
                return
        limit, what = self.limit_for(scope["method"], scope["path"])
        if length is not None and length > limit:
            await _answer(scope, receive, send, 413, too_large_message(limit, what))
            return
        if has_body:
            receive = _counting(receive, limit, what)
            if _is_json(headers):
                try:
                    receive = await _checked_json(receive)
                except BodyTooLarge as exc:
                    await _answer(scope, receive, send, 413, exc.detail)
                    return
                except ValueError as exc:
                    await _answer(scope, receive, send, 422, str(exc))
                    return
        await self.app(scope, receive, send)

    def host_allowed(self, host: str | None, scope: Scope) -> bool:
        """Whether the ``Host`` header is one this rig answers to (see the module docstring)."""
        if host is None:
            return True  # NOTE: HTTP/1.0 without Host: no browser sends that, so no rebinding
        name = _host_name(host)
        if name in self.hosts:
            return True
        server = scope.get("server")
        if server and name == str(server[0]).lower():
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def limit_for(self, method: str, path: str) -> tuple[int, str]:
        """The body limit in bytes for this route, and how to name it in a 413."""
        if path == MODEL_UPLOAD_PATH and method == "POST":
            return self.model_limit, "a model upload (models.max_upload_mb)"
        if path in PLAN_PATHS:
            return PLAN_BODY_BYTES, "a plan"
        return self.json_limit, "this request (web.max_body_kb)"

    def with_headers(self, scope: Scope, request_headers: Headers, send: Send) -> Send:
        """``send`` that adds the security headers and the cache policy to the response."""
        credentialed = "x-api-key" in request_headers or "partrig_session=" in request_headers.get(
            "cookie", ""
        )
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in out:
                        out[name] = value
                if credentialed:
                    out["cache-control"] = private(out.get("cache-control"))
                elif api and "cache-control" not in out:
                    out["cache-control"] = "no-store"
            await send(message)

        return send_with_headers


def private(policy: str | None) -> str:
    """``policy`` made private: a shared cache must never keep an authenticated answer."""
    if not policy:
        return "private, no-store"
    parts = [p.strip() for p in policy.split(",") if p.strip()]
    parts = ["private" if p.lower() == "public" else p for p in parts]
    if not any(p.lower() in ("private", "no-store") for p in parts):
        parts.insert(0, "private")
    return ", ".join(parts)


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _content_length(headers: Headers) -> int | None:
    """The declared length; None when absent; -1 when it is not a number."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    return int(raw) if raw.strip().isdigit() else -1


def _is_json(headers: Headers) -> bool:
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _unauthenticated(scope: Scope) -> HTTPException | None:
    """The 401 the route would give, decided from the headers alone; None when signed in."""
    from web.deps import current_principal

    try:
        who = current_principal(Request(scope))
    except HTTPException as exc:
        return exc
    if who is None:
        return HTTPException(
            401,
            "sign in at /login, or send an API key in the X-Api-Key header",
            headers={"WWW-Authenticate": "X-Api-Key"},
        )
    return None


def _counting(receive: Receive, limit: int, what: str) -> Receive:
    """``receive`` that raises :class:`BodyTooLarge` once more than ``limit`` bytes came."""
    seen = 0

    async def receive_counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit, what)
        return message

    return receive_counted


def _reject_constant(name: str) -> Any:
    raise ValueError(
        f"{name} is not a JSON number: send finite numbers only (NaN and Infinity are refused)"
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:20]} is too large for a float: send a finite number")
    return value


async def _checked_json(receive: Receive) -> Receive:
    """Read the (already size-limited) JSON body, refuse non-finite numbers, then replay it.

    Malformed JSON is passed on untouched: the route's own parser names the problem.
    """
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the route will see the same
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    try:
        json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError:
        pass
    except RecursionError:
        raise ValueError("the JSON body is nested too deeply") from None
    except UnicodeDecodeError:
        pass
    # NOTE: other ValueErrors (ours above, an integer with too many digits) propagate: 422.
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    detail: Any,
    headers: Mapping[str, str] | None = None,
) -> None:
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(
        scope, receive, send
    )
