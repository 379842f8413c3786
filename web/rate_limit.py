"""Per-key rate limiting for the API (``auth.rate_limit_per_min``), answered with 429.

Why a token bucket per credential: a trainer pulling a snapshot makes a burst of requests and
then goes quiet, so a bucket of ``rate_limit_per_min`` tokens, refilled at that rate, lets a
whole burst through while capping what a leaked or looping key can do over time.  Buckets are
keyed by the principal's non-secret name (one per configured key or signed-in user), so their
number is bounded by the configuration, not by clients.

Use :data:`TrainerLimited` on a router (or route) instead of ``TrainerAuth``: it authenticates
first (401/403 as usual) and then spends a token, answering 429 with ``Retry-After`` in whole
seconds when the bucket is empty.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from web.deps import TrainerAuth
from web.security import Principal


class RateLimiter:
    """Token buckets: ``per_min`` tokens each, refilled continuously at ``per_min`` a minute."""

    def __init__(self, per_min: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_min < 1:
            raise ValueError("auth.rate_limit_per_min must be at least 1")
        self.capacity = float(per_min)
        self.rate = per_min / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, who: str) -> float:
        """Spend one token for ``who``: 0.0 when allowed, else the seconds until one is free."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(who, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1.0 - tokens) / self.rate


_create_lock = threading.Lock()


def limiter_for(request: Request) -> RateLimiter:
    """The app's limiter, made on first use from the app's settings."""
    state = request.app.state
    limiter = getattr(state, "rate_limiter", None)
    if limiter is None:
        with _create_lock:
            limiter = getattr(state, "rate_limiter", None)
            if limiter is None:
                limiter = RateLimiter(state.settings.auth.rate_limit_per_min)
                state.rate_limiter = limiter
    return limiter


def spend(request: Request, who: Principal) -> Principal:
    """Spend a token for ``who`` or answer 429 with ``Retry-After``."""
    wait = limiter_for(request).take(f"{who.via}:{who.name}")
    if wait > 0:
        retry = max(1, math.ceil(wait))
        raise HTTPException(
            429,
            f"rate limit of {request.app.state.settings.auth.rate_limit_per_min} requests a "
            f"minute reached for this key: retry after {retry} s (or raise "
            "auth.rate_limit_per_min)",
            headers={"Retry-After": str(retry)},
        )
    return who


def trainer_limited(request: Request, who: TrainerAuth) -> Principal:
    return spend(request, who)


TrainerLimited = Annotated[Principal, Depends(trainer_limited)]
