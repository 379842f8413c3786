"""``partrig serve --demo DIR``: the simulated rig, with credentials the command line shares.

Why a configuration file of its own: ``make demo`` used to serve ``--sim --data demo-data`` with
only a one-time password in memory, so every command of the README failed against it: the CLI
looked in ``./data``, ``capture`` and ``sort`` found no operator key to reach the server with,
and ``pull``/``push`` had no trainer key.  Writing a ``partrig.toml`` by hand to fix that turned
the password off.  The demo now writes ``DIR/partrig.toml`` once (this data folder, the
simulated rig, a generated operator key and trainer key, bins for the demo plan's parts) and
``DIR/demo.env`` (``PARTRIG_CONFIG`` and ``PARTRIG_KEY``), and still signs the page in with a
fresh one-time password each start.  Both files are readable by their owner only.
"""

from __future__ import annotations

import os
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

from rig.config import Settings, load_settings
from web.security import hash_password, new_api_key

CONFIG_NAME = "partrig.toml"
ENV_NAME = "demo.env"
#: The parts of examples/plans/demo.toml and their bins (the rest go to the default bin).
DEMO_BINS = {"brick-2x4-red": 1, "brick-2x4-blue": 2, "plate-2x4-green": 3}


@dataclass
class Demo:
    """What ``serve --demo`` serves with, and what it tells the person who started it."""

    settings: Settings
    password: str
    config: Path
    env: Path


def _config_text(data_dir: Path, operator_key: str, trainer_key: str) -> str:
    bins = ", ".join(f'"{label}" = {b}' for label, b in DEMO_BINS.items())
    return f"""# Written by `partrig serve --demo` (make demo) for the simulated rig; edit freely.
# The command line uses it too: `source {data_dir / ENV_NAME}` sets PARTRIG_CONFIG to it.
sim = true

[data]
dir = {_toml_str(str(data_dir))}

[camera]
still_size = [640, 480]
preview_size = [640, 480]

[simulator]
# The simulated rig runs this many times faster than real time (1 = real time).
time_scale = 2.0

[auth]
# `partrig capture`, `partrig sort` and `partrig model activate` reach the server with the
# first operator key; `dataset pull`, `train` and `model push` take the trainer key
# (PARTRIG_KEY in demo.env).  The page signs in with the password printed at start-up.
operator_keys = [{_toml_str(operator_key)}]
trainer_keys = [{_toml_str(trainer_key)}]

[sorter]
bins = {{ {bins} }}
# NOTE: generous, in simulated seconds: on a busy laptop the simulated clock runs ahead of the
# CPU (the first part waits for the model to load), which is not a part stuck on the platform.
stuck_after_s = 120
"""


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (it holds keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def prepare_demo(data_dir: Path) -> Demo:
    """Write the demo's configuration once (kept across starts) and this start's password."""
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / CONFIG_NAME
    if not config.exists():
        _write_private(config, _config_text(data_dir, new_api_key(), new_api_key()))
    settings = load_settings(config, sim=True)
    settings.data.dir = data_dir
    trainer = settings.auth.trainer_keys[0] if settings.auth.trainer_keys else ""
    env = data_dir / ENV_NAME
    _write_private(
        env,
        "# Written by `partrig serve --demo`: source it to use the CLI against the demo.\n"
        f"export PARTRIG_CONFIG={shlex.quote(str(config))}\n"
        f"export PARTRIG_KEY={shlex.quote(trainer)}\n",
    )
    # NOTE: a fresh password each start, hashed in memory only, as for a bare --sim.
    password = secrets.token_urlsafe(9)
    settings.auth.operator_password_hash = hash_password(password)
    return Demo(settings, password, config, env)


def usage(demo: Demo, url: str) -> str:
    """How to use the demo from a second terminal, printed at start-up."""
    venv_bin = Path(".venv/bin").resolve()
    return (
        f"partrig: demo data and configuration in {demo.settings.data.dir}\n"
        "partrig: to use the command line against this demo, in another terminal:\n"
        f"    source {shlex.quote(str(venv_bin / 'activate'))}   # or call .venv/bin/partrig\n"
        f"    source {shlex.quote(str(demo.env))}   # PARTRIG_CONFIG and a trainer key\n"
        "    partrig dataset stats\n"
        f"partrig: README.md, 'Using it', is a script that runs as written against {url}"
    )
