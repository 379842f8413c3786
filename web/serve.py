"""``partrig serve``: run the web app on one uvicorn worker, refusing unsafe bindings.

Why the checks live here: binding anything but loopback exposes the rig's motor to the network,
so without credentials configured that is refused with an error saying how to set them.  For
the simulated demo on 127.0.0.1 with no credentials at all, a one-time operator password is
generated, printed once and kept (hashed) only in memory: the page is usable at once and
nothing guessable ever protects it.  We chose a printed password over auto-login so that even
the demo exercises the real sign-in, sessions and CSRF checks.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rig.errors import ConfigError, RigBusy
from web.security import hash_password

if TYPE_CHECKING:
    from rig.config import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str) -> None:
    """Refuse a non-loopback address when no operator credentials are configured."""
    if is_loopback(host) or settings.auth.configured:
        return
    raise ConfigError(
        f"refusing to listen on {host} without credentials: anyone on that network could move "
        "the rig. Set auth.operator_password_hash (`partrig auth hash-password`) and/or "
        "auth.operator_keys (`partrig auth new-key --role operator`) in partrig.toml, "
        "or serve on 127.0.0.1"
    )


def demo_password(settings: Settings, host: str) -> str | None:
    """For ``--sim`` on loopback with no credentials: a one-time password (set in memory)."""
    if not settings.sim or settings.auth.configured or not is_loopback(host):
        return None
    password = secrets.token_urlsafe(9)
    settings.auth.operator_password_hash = hash_password(password)
    return password


def serve(
    settings: Settings, host: str | None = None, port: int | None = None, demo: Any = None
) -> None:
    """Check the binding, then run the app until Ctrl-C (one worker: it owns the rig).

    ``demo`` is :class:`web.demo.Demo` for ``--demo``: its password and how to use the CLI
    are printed once the data folder is ours.
    """
    from web.app import create_app
    from web.server import run_server

    host = host or settings.web.host
    port = port or settings.web.port
    check_bind(settings, host)
    from rig.owner import DataFolderLock, client_url

    # NOTE: taken before anything opens the store or the port, and held until uvicorn returns:
    # a second serve on this data folder refuses here, naming this one (contracts.md, #7).
    owner = DataFolderLock(settings.data.dir, "serve", url=client_url(host, port)).acquire()
    password = demo.password if demo is not None else demo_password(settings, host)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"partrig: serving on http://{shown}:{port}/"
        + ("  (simulated rig)" if settings.sim else "")
    )
    if password:
        typer.echo(f"partrig: demo operator password (this run only): {password}")
    if demo is not None:
        from web.demo import usage

        typer.echo(usage(demo, f"http://{shown}:{port}/"))
    try:
        # NOTE: web.server adds the request-receipt deadline and the open-files limit.
        run_server(
            create_app(settings, owner=owner),
            settings,
            host,
            port,
            # NOTE: X-Forwarded-For only from web.trusted_proxies (nginx); otherwise any local
            # process could forge its address past the sign-in limit (docs/security.md).
            proxy_headers=bool(settings.web.trusted_proxies),
            forwarded_allow_ips=list(settings.web.trusted_proxies) or None,
        )
    finally:
        owner.close()


def serve_command(
    sim: Annotated[bool, typer.Option("--sim", help="use the simulated rig")] = False,
    host: Annotated[str | None, typer.Option(help="address to bind (default web.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default web.port)")] = None,
    data: Annotated[Path | None, typer.Option(help="data directory (default data.dir)")] = None,
    config: Annotated[Path | None, typer.Option(help="configuration file")] = None,
    sorter: Annotated[
        bool, typer.Option("--sorter", help="start the sorter on boot (as sorter.enabled)")
    ] = False,
    demo: Annotated[
        Path | None,
        typer.Option(
            "--demo",
            help="the simulated demo in this folder: writes DIR/partrig.toml (keys the CLI "
            "shares) and DIR/demo.env once; a one-time page password each start",
        ),
    ] = None,
) -> None:
    """Start the web app: dashboard, runs, dataset, sorter, models and the API."""
    try:
        prepared = None
        if demo is not None:
            from web.demo import prepare_demo

            prepared = prepare_demo(demo)
            settings = prepared.settings
        else:
            from rig.config import load_settings

            settings = load_settings(config, sim=sim or None)
        if data is not None:
            settings.data.dir = data
        if sorter:
            settings.sorter.enabled = True
        serve(settings, host, port, demo=prepared)
    except (ConfigError, RigBusy) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
