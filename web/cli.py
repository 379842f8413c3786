"""The ``partrig`` command: every layer's sub-commands assembled in one typer app.

This lives in the top layer because it is the only one allowed to import all the others.
"""

from __future__ import annotations

import typer

from capture.dataset_cli import dataset_app
from capture.pull.cli import pull_command
from capture.runs.cli import capture_command
from capture.vision.backgrounds_cli import backgrounds_app
from classify.model_cli import model_app
from classify.sort_cli import sort_command
from classify.train_cli import train_command
from rig.cli import config_app, demo, rig_app
from web.auth_cli import auth_app
from web.serve import serve_command


def _no_flag_placeholders() -> None:
    """Show boolean flags bare in ``--help`` (``--sim``, not ``--sim <bool>``).

    NOTE: typer's rich help prints a type placeholder for every option, flags included, which
    reads as if ``--sim`` took a value.  A flag takes none, so it gets no placeholder.
    """
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "partrig_flags_bare", False):
        return

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.partrig_flags_bare = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_no_flag_placeholders()

app = typer.Typer(
    help="partrig: turntable photo rig for small parts (capture, datasets, training, sorting).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(config_app, name="config")
app.add_typer(rig_app, name="rig")
app.add_typer(dataset_app, name="dataset")
dataset_app.command("pull")(pull_command)
app.add_typer(backgrounds_app, name="backgrounds")
app.add_typer(auth_app, name="auth")
app.command("capture")(capture_command)
app.command("serve")(serve_command)
app.command("sort")(sort_command)
app.command("train")(train_command)
app.add_typer(model_app, name="model")
app.command("demo", help="Run a short turntable session on the simulated rig (no web page).")(demo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
