"""CLI commands and the data folder's owner: they wait their turn behind another command that
holds the rig, and hold the folder themselves while they drive it.

(The same against a real server, through its API, is tests/attack/test_ownership.py.)
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rig.owner import DataFolderLock, current_owner
from web.cli import app

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "partrig.toml"
    path.write_text(
        f'[data]\ndir = "{tmp_path / "data"}"\n[simulator]\ntime_scale = 0\n'
        f"[camera]\npreview_size = [320, 240]\nstill_size = [320, 240]\n[web]\nport = {port}\n"
    )
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["rig", "lights", "0.5", "--sim"],
        ["rig", "status", "--sim"],
        ["sort", "--sim", "--parts", "1", "--collect-for-review"],
        ["capture", "PLAN", "--sim", "--yes"],
        ["dataset", "snapshot"],
    ],
)
def test_commands_wait_for_another_command_that_holds_the_rig(
    config: Path, tmp_path: Path, args: list[str]
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text('name = "p"\nbackgrounds = [1]\nangles_per_rev = 4\nparts = []\n')
    args = [str(plan) if a == "PLAN" else a for a in args]
    with DataFolderLock(tmp_path / "data", "capture"):
        result = runner.invoke(app, [*args, "-c", str(config)], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert f"partrig capture (pid {os.getpid()})" in flat


def test_a_rig_command_holds_the_folder_while_it_drives_the_rig_and_lets_go(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    import rig.rig

    real_open = rig.rig.open_rig

    def spying_open(*a, **k):  # type: ignore[no-untyped-def]
        seen.append(current_owner(tmp_path / "data"))
        return real_open(*a, **k)

    monkeypatch.setattr(rig.rig, "open_rig", spying_open)
    result = runner.invoke(app, ["rig", "lights", "0.5", "--sim", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert seen and seen[0] is not None and seen[0].command == "rig lights"
    assert seen[0].pid == os.getpid()
    assert current_owner(tmp_path / "data") is None
