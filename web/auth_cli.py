"""``partrig auth``: make the credentials ``partrig serve`` needs off loopback."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from web.security import hash_password, new_api_key

auth_app = typer.Typer(help="Create the operator password hash and API keys.", no_args_is_help=True)


@auth_app.command("hash-password")
def hash_password_command(
    password: Annotated[
        str,
        typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="new password"),
    ],
) -> None:
    """Print an argon2 hash for auth.operator_password_hash."""
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo("[auth]")
    typer.echo(f'operator_password_hash = "{hashed}"')


@auth_app.command("new-key")
def new_key_command(
    role: Annotated[
        str, typer.Option(help="viewer, operator or trainer", case_sensitive=False)
    ] = "operator",
) -> None:
    """Print a fresh random API key and the line to add to partrig.toml."""
    role = role.lower()
    roles: tuple[Literal["viewer", "operator", "trainer"], ...] = ("viewer", "operator", "trainer")
    if role not in roles:
        typer.echo(f"error: role must be one of {', '.join(roles)}", err=True)
        raise typer.Exit(2)
    key = new_api_key()
    typer.echo(key)
    typer.echo(f'# add to partrig.toml, [auth]: {role}_keys = ["{key}"]', err=True)
