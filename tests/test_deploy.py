"""The deployment files say what docs/deployment.md promises: one unit running `partrig serve`
with Restart=on-failure, and a udev rule naming both Mega variants /dev/partrig-ramps."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from rig.config import SerialConfig

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "partrig.service").read_text())
    return parser


def test_there_is_one_unit_and_it_runs_the_server_with_restart_on_failure():
    assert sorted(p.name for p in DEPLOY.glob("*.service")) == ["partrig.service"]
    service = unit()["Service"]
    program, *args = service["ExecStart"].split()
    assert Path(program).name == "partrig" and args == ["serve"]
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGINT"  # uvicorn runs the lifespan's shutdown on SIGINT
    assert "dialout" in service["SupplementaryGroups"]
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_the_udev_rule_names_the_mega_and_its_ch340_clone_as_the_default_port():
    rules = [
        line
        for line in (DEPLOY / "99-partrig-ramps.rules").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    ids = {tuple(re.findall(r'ATTRS\{id(?:Vendor|Product)\}=="([0-9a-f]{4})"', r)) for r in rules}
    assert ids == {("2341", "0042"), ("1a86", "7523")}
    name = SerialConfig().port.removeprefix("/dev/")
    assert all(f'SYMLINK+="{name}"' in r and 'SUBSYSTEM=="tty"' in r for r in rules)
