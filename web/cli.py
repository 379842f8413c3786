"""The ``partrig`` command: every layer's sub-commands assembled in one typer app.

This lives in the top layer because it is the only one allowed to import all the others.
"""

from __future__ import annotations

import typer

from rig.cli import config_app

app = typer.Typer(
    help="partrig: turntable photo rig for small parts (capture, datasets, training, sorting).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(config_app, name="config")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
