"""Credentials for the web app: roles, API keys, the operator's password, signed sessions.

Why our own small HMAC signer instead of itsdangerous: it is one function over the standard
library (``hmac`` + ``hashlib``), so the Pi needs no extra package, and every token carries an
expiry and a purpose so a preview token can never be replayed as a session cookie.

Roles: ``viewer`` reads, ``operator`` controls runs and the rig (and may do everything a viewer
does), ``trainer`` uses the dataset and model API.  A browser session is always an operator's:
the operator is the one who signs in with the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rig.config import AuthConfig

Role = Literal["viewer", "operator", "trainer"]

SESSION_COOKIE = "partrig_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
SESSION_TTL_S = 12 * 3600
PREVIEW_TOKEN_TTL_S = 120


@dataclass(frozen=True)
class Principal:
    """Who is calling: the role, how they proved it, and a name recorded in audit trails."""

    role: Role
    via: Literal["key", "session"]
    name: str
    csrf: str | None = None

    def may(self, *roles: Role) -> bool:
        return self.role in roles


def hash_password(password: str) -> str:
    """An argon2id hash for ``auth.operator_password_hash``."""
    from argon2 import PasswordHasher

    if len(password) < 8:
        raise ValueError("choose a password of at least 8 characters")
    return PasswordHasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; False for a wrong password or an unusable hash."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    if not password_hash or not password:
        return False
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_api_key() -> str:
    """A fresh random API key (URL-safe, 256 bits)."""
    return "prk_" + secrets.token_urlsafe(32)


def role_for_key(auth: AuthConfig, key: str) -> Role | None:
    """The role an API key belongs to, compared in constant time; None when unknown."""
    found: Role | None = None
    for role, keys in (
        ("operator", auth.operator_keys),
        ("trainer", auth.trainer_keys),
        ("viewer", auth.viewer_keys),
    ):
        for candidate in keys:
            # NOTE: check every key (no early return) so timing does not reveal which matched.
            if candidate and hmac.compare_digest(candidate.encode(), key.encode()) and not found:
                found = role  # type: ignore[assignment]
    return found


def key_name(key: str) -> str:
    """A short, non-secret name for a key in audit trails (a hash prefix, never the key)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:8]


class Signer:
    """Signs small JSON payloads with a purpose and an expiry (HMAC-SHA256)."""

    def __init__(self, secret: str | bytes) -> None:
        self._key = secret.encode() if isinstance(secret, str) else secret
        if len(self._key) < 16:
            raise ValueError("the session secret must be at least 16 characters")

    def sign(self, purpose: str, payload: dict[str, object], ttl_s: float) -> str:
        body = dict(payload, p=purpose, exp=int(time.time() + ttl_s))
        raw = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode())
        mac = hmac.new(self._key, raw, hashlib.sha256).digest()
        return (raw + b"." + base64.urlsafe_b64encode(mac)).decode().replace("=", "")

    def unsign(self, purpose: str, token: str) -> dict[str, object] | None:
        """The payload, or None when the token is forged, expired or for another purpose."""
        try:
            raw_s, _, mac_s = token.partition(".")
            raw = raw_s.encode() + b"=" * (-len(raw_s) % 4)
            mac = base64.urlsafe_b64decode(mac_s.encode() + b"=" * (-len(mac_s) % 4))
            want = hmac.new(self._key, raw, hashlib.sha256).digest()
            if not hmac.compare_digest(mac, want):
                return None
            body = json.loads(base64.urlsafe_b64decode(raw))
        except (ValueError, TypeError, UnicodeError):
            return None
        if not isinstance(body, dict) or body.get("p") != purpose:
            return None
        exp = body.get("exp")
        if not isinstance(exp, int) or exp < time.time():
            return None
        return body


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who, the CSRF token its page must echo, and when it ends."""

    user: str
    csrf: str
    expires: float


class SessionStore:
    """Server-side sessions, in this process's memory: the cookie only names one.

    Why server-side: logout (or a password change) must end a session for real, and a signed
    cookie alone stays valid until it expires, whoever holds a copy.  Why in memory: a lookup
    is a dict access under a lock, so the e-stop route authenticates without a database or a
    thread; a restart signs everyone out, which on a rig that restarts rarely is a fair price
    (and the safe direction).  At most ``max_sessions`` live at once: the oldest goes first.
    """

    def __init__(
        self,
        ttl_s: float = SESSION_TTL_S,
        max_sessions: int = 64,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> tuple[str, Session]:
        """A new session for ``user``: its id (for the cookie) and the session itself."""
        sid = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(24), self.clock() + self.ttl_s)
        with self._lock:
            self._prune()
            while len(self._sessions) >= self.max_sessions:
                # NOTE: dicts keep insertion order: the first key is the oldest session.
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[sid] = session
        return sid, session

    def get(self, sid: str) -> Session | None:
        """The live session ``sid`` names; None when unknown, revoked or expired."""
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires <= self.clock():
                del self._sessions[sid]
                return None
            return session

    def revoke(self, sid: str) -> bool:
        """End session ``sid`` now (logout); True when it existed."""
        with self._lock:
            return self._sessions.pop(sid, None) is not None

    def revoke_all(self) -> int:
        """End every session (e.g. after the password changed); how many there were."""
        with self._lock:
            count = len(self._sessions)
            self._sessions.clear()
            return count

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _prune(self) -> None:
        now = self.clock()
        for sid in [k for k, v in self._sessions.items() if v.expires <= now]:
            del self._sessions[sid]


def session_secret(auth: AuthConfig) -> str:
    """The configured secret, or a random one for this process (sessions end on restart)."""
    return auth.session_secret or secrets.token_urlsafe(32)
