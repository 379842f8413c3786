"""The assembled ``partrig`` command: every layer's sub-commands reachable from one entry point."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from web.cli import app

runner = CliRunner()


def test_every_sub_command_is_registered():
    out = runner.invoke(app, ["--help"], terminal_width=200)
    assert out.exit_code == 0
    for name in ("config", "rig", "demo", "capture", "serve", "dataset", "backgrounds", "auth"):
        assert f" {name} " in out.output, name


def test_config_check_reports_a_bad_key_with_its_name(tmp_path):
    bad = tmp_path / "partrig.toml"
    bad.write_text("[turntable]\nmax_speed_deg_s = -5\n")
    out = runner.invoke(app, ["config", "check", "--config", str(bad)], terminal_width=200)
    assert out.exit_code != 0
    assert "turntable.max_speed_deg_s" in out.output


def test_rig_status_on_the_simulated_rig(tmp_path):
    out = runner.invoke(app, ["rig", "status", "--sim", "--json"], env={"PARTRIG_CONFIG": ""})
    assert out.exit_code == 0, out.output
    status = json.loads(out.output)
    assert status["simulated"] is True and status["link"] == "ready"
    assert status["firmware"]["dialect"] == "partrig"


def test_rig_status_is_a_summary_a_person_reads_unless_json_is_asked_for(tmp_path):
    out = runner.invoke(app, ["rig", "status", "--sim"], env={"PARTRIG_CONFIG": ""})
    assert out.exit_code == 0, out.output
    flat = " ".join(out.output.split())
    assert flat.startswith("simulated rig: link ready, firmware partrig")
    assert "no fault latched" in flat and "{" not in flat


#: Runs in a fresh interpreter: every group's and command's --help, then which heavy modules
#: the help pulled in (contracts.md: none of these for help).
_HELP_PROBE = """
import json, sys
from typer.main import get_command
from typer.testing import CliRunner
from web.cli import app

HEAVY = ("cv2", "numpy", "sqlite_utils", "pandas", "tensorflow")
paths = [[]]
for name, sub in get_command(app).commands.items():
    paths.append([name])
    paths += [[name, n] for n in getattr(sub, "commands", {})]
runner = CliRunner()
out = []
for p in paths:
    r = runner.invoke(app, [*p, "--help"], terminal_width=200)
    out.append({"path": p, "code": r.exit_code, "bool": "<bool>" in r.output,
                "heavy": [m for m in HEAVY if m in sys.modules]})
print(json.dumps(out))
"""


def test_help_of_every_group_and_command_imports_no_heavy_module_and_shows_no_bool():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _HELP_PROBE], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    paths = {" ".join(r["path"]) for r in results}
    assert {"", "dataset", "dataset snapshot", "model push", "capture", "train"} <= paths
    for r in results:
        where = "partrig " + " ".join(r["path"]) + " --help"
        assert r["code"] == 0, where
        assert not r["bool"], f"{where} shows a <bool> placeholder"
        assert r["heavy"] == [], f"{where} imported {r['heavy']}"
