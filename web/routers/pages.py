"""The operator's HTML pages (Jinja2 templates + a little plain JavaScript, no CDN).

Pages need a signed-in browser session; without one they redirect to the sign-in page.  Every
page carries the CSRF token (for the page's ``fetch`` calls), the emergency-stop button and,
when the client's address looks public, a warning banner.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from web.app import WEB_DIR
from web.deps import current_principal
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


def _page(request: Request, template: str, **context: Any) -> Response:
    who = current_principal(request)
    if who is None or who.via != "session":
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    settings = request.app.state.settings
    client = request.client.host if request.client else None
    base = {
        "csrf_token": who.csrf,
        "who": who,
        "public_banner": settings.web.public_banner and looks_public(client),
        "client_host": client,
        "sim": settings.sim,
        "rig_error": request.app.state.rig_error,
    }
    return templates.TemplateResponse(request, template, {**base, **context})


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


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request) -> Response:
    token = request.app.state.signer.sign("preview", {"role": "operator"}, PREVIEW_TOKEN_TTL_S)
    return _page(
        request,
        "dashboard.html",
        preview_token=token,
        page="dashboard",
        has_camera=request.app.state.preview is not None,
    )


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request) -> Response:
    return _page(request, "runs.html", page="runs")


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: int) -> Response:
    return _page(request, "run.html", page="runs", run_id=run_id)


@router.get("/dataset", response_class=HTMLResponse)
def dataset_page(request: Request) -> Response:
    return _page(request, "dataset.html", page="dataset")


@router.get("/dataset/shots/{shot_id}", response_class=HTMLResponse)
def shot_page(request: Request, shot_id: int) -> Response:
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
