"""partrig's error hierarchy mapped onto HTTP answers with clear JSON bodies.

Why a table: every router raises the same domain errors (``RunStateError``, ``NotFound``, ...)
and the operator's page shows ``detail`` verbatim, so the mapping lives in one place and the
messages, which already say what to fix, are passed through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rig import errors as E

log = logging.getLogger("web")

#: Most specific first: the first class the error is an instance of decides the status.
STATUS: list[tuple[type[Exception], int]] = [
    (E.RunStateError, 409),
    (E.FaultLatched, 409),
    (E.PositionLost, 409),
    (E.MotionError, 409),
    (E.NotFound, 404),
    (E.ConfigError, 422),
    (E.PlanError, 422),
    (E.GcodeError, 422),
    (E.QueryError, 400),
    (E.DiskFull, 507),
    (E.FirmwareHalted, 409),
    (E.LinkError, 503),
    (E.CameraError, 503),
    (E.ActuatorError, 503),
    (E.ModelError, 422),
    (E.StoreError, 500),
]


def status_for(exc: Exception) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


async def rig_error_handler(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status)


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic's errors without ``input``/``ctx``: where and what, never the sent value.

    Why: the default 422 echoes every input (a password sent with a typo'd field name came
    back in the answer), and rendering it fails outright for NaN or an exception in ``ctx``.
    """
    out = []
    for err in errors:
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        msg = str(err.get("msg", "invalid value"))
        out.append({"type": str(err.get("type", "value_error")), "loc": loc, "msg": msg})
    return out


async def request_validation_handler(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": validation_errors(errors)}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(E.RigError, rig_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
