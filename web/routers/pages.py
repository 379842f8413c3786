"""The operator's HTML pages (Jinja2 templates + a little plain JavaScript, no CDN).

Pages need a signed-in browser session; without one they redirect to the sign-in page, keeping
the page (path and query) to return to.  Every page carries the CSRF token (for the page's
``fetch`` calls), the emergency-stop button, the status strip and, when the client's address
looks public, a warning banner.  A run or a shot that does not exist is a real 404 page, not a
page of live controls around a broken image.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from rig.errors import NotFound
from web.deps import current_principal
from web.paths import WEB_DIR
from web.security import PREVIEW_TOKEN_TTL_S

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=WEB_DIR / "templates")


def looks_public(host: str | None) -> bool:
    """True for an address that is not loopback, private or link-local (a banner warns)."""
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_private or ip.is_link_local)


def _return_to(request: Request) -> str:
    """The page to come back to after signing in: path and query, never another site."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target)}"


def _context(request: Request, **context: Any) -> dict[str, Any]:
    who = current_principal(request)
    settings = request.app.state.settings
    client = request.client.host if request.client else None
    return {
        "csrf_token": who.csrf if who is not None else "",
        "who": who,
        "public_banner": settings.web.public_banner and looks_public(client),
        "client_host": client,
        "sim": settings.sim,
        "rig_error": request.app.state.rig_error,
        "page": "",
        **context,
    }


def _signed_in(request: Request) -> bool:
    who = current_principal(request)
    return who is not None and who.via == "session"


def _page(request: Request, template: str, **context: Any) -> Response:
    if not _signed_in(request):
        return RedirectResponse(_return_to(request), status_code=303)
    return templates.TemplateResponse(request, template, _context(request, **context))


def not_found_page(request: Request, what: str) -> Response:
    """The 404 page (signed in) or the sign-in redirect (not signed in)."""
    if not _signed_in(request):
        return RedirectResponse(_return_to(request), status_code=303)
    return templates.TemplateResponse(
        request, "not_found.html", _context(request, what=what), status_code=404
    )


def install_not_found(app: FastAPI) -> None:
    """A 404 for a page (not ``/api``) is the 404 page; the API keeps its JSON answer."""

    async def handler(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and not request.url.path.startswith(("/api/", "/static/")):
            return not_found_page(request, f"There is no page at {request.url.path}.")
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    app.add_exception_handler(StarletteHTTPException, handler)  # type: ignore[arg-type]


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    return FileResponse(WEB_DIR / "static" / "favicon.ico", media_type="image/x-icon")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/", error: int | None = None) -> Response:
    messages = {
        401: "Wrong password.",
        403: "No operator password is configured.",
        429: "Too many failed sign-ins: wait a minute.",
    }
    return templates.TemplateResponse(
        request,
        "login.html",
        {
            "next": next if next.startswith("/") and not next.startswith("//") else "/",
            "error": messages.get(error or 0, "Sign-in failed." if error else None),
        },
    )


def _preview_token(request: Request) -> str:
    token: str = request.app.state.signer.sign("preview", {"role": "operator"}, PREVIEW_TOKEN_TTL_S)
    return token


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request) -> Response:
    return _page(
        request,
        "dashboard.html",
        preview_token=_preview_token(request),
        page="dashboard",
        has_camera=request.app.state.preview is not None,
    )


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request) -> Response:
    return _page(request, "runs.html", page="runs")


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: int) -> Response:
    if _signed_in(request):
        try:
            request.app.state.store.get_run(run_id)
        except (NotFound, OverflowError):
            return not_found_page(request, f"Run {run_id} does not exist.")
    return _page(
        request,
        "run.html",
        page="runs",
        run_id=run_id,
        preview_token=_preview_token(request),
        has_camera=request.app.state.preview is not None,
    )


@router.get("/dataset", response_class=HTMLResponse)
def dataset_page(request: Request) -> Response:
    return _page(request, "dataset.html", page="dataset")


@router.get("/dataset/shots/{shot_id}", response_class=HTMLResponse)
def shot_page(request: Request, shot_id: int) -> Response:
    if _signed_in(request):
        try:
            request.app.state.store.get_shot(shot_id)
        except (NotFound, OverflowError):
            return not_found_page(request, f"Shot {shot_id} does not exist.")
    return _page(request, "shot.html", page="dataset", shot_id=shot_id)


@router.get("/sorter", response_class=HTMLResponse)
def sorter_page(request: Request) -> Response:
    return _page(request, "sorter.html", page="sorter")


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request) -> Response:
    return _page(request, "review.html", page="review")


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request) -> Response:
    return _page(request, "models.html", page="models")


@router.get("/snapshots", response_class=HTMLResponse)
def snapshots_page(request: Request) -> Response:
    return _page(request, "snapshots.html", page="snapshots")


@router.get("/terminal", response_class=HTMLResponse)
def terminal_page(request: Request) -> Response:
    return _page(request, "terminal.html", page="terminal")


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request) -> Response:
    return _page(
        request,
        "settings.html",
        page="settings",
        preview_token=_preview_token(request),
        has_camera=request.app.state.preview is not None,
    )
