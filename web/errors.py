"""partrig's error hierarchy mapped onto HTTP answers with clear JSON bodies.

Why a table: every router raises the same domain errors (``RunStateError``, ``NotFound``, ...)
and the operator's page shows ``detail`` verbatim, so the mapping lives in one place and the
messages, which already say what to fix, are passed through unchanged.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
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


def install(app: FastAPI) -> None:
    app.add_exception_handler(E.RigError, rig_error_handler)
