"""The Pi's one install step resolves with numpy below 2 and pulls no OpenCV wheel.

apt's python3-picamera2 and python3-opencv are built for Debian's numpy 1.x, so the venv must
keep numpy below 2 (contracts.md, "The Pi's Python environment").  The step is
``pip install -c deploy/pi-constraints.txt -e '.[pi]'``; here pip resolves exactly that with
``--dry-run`` (needs the package index: skipped when it cannot be reached).  README.md and
docs/deployment.md must give the same command lines.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "deploy" / "pi-constraints.txt"
NETWORK_TROUBLE = ("Could not fetch URL", "NewConnectionError", "Max retries exceeded",
                   "Temporary failure in name resolution", "Network is unreachable")  # fmt: skip


def _index_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


def test_the_pi_extra_resolves_with_numpy_below_2_and_no_opencv_wheel(tmp_path):
    if not _index_reachable():
        pytest.skip("PyPI is not reachable from here")
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "-c",
            str(CONSTRAINTS),
            ".[pi]",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0 and any(t in done.stderr for t in NETWORK_TROUBLE):
        pytest.skip(f"the package index failed: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-3000:]
    resolved = {
        item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert int(resolved["numpy"].split(".")[0]) < 2, resolved["numpy"]
    assert "ai-edge-litert" in resolved
    assert not [n for n in resolved if n.startswith("opencv")], resolved
    assert "tensorflow" not in resolved


def _commands(block: str) -> list[str]:
    """The command lines of a shell block, comments and blank lines left out."""
    lines = (line.split("  #")[0].strip() for line in block.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_readme_and_deployment_give_the_same_pi_install_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Deployment on the Pi", 1)[1].split("\n## ", 1)[0]
    readme_cmds = _commands(re.findall(r"```sh\n(.*?)```", section, re.S)[0])
    deployment = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    deployment_cmds = {c for b in re.findall(r"```sh\n(.*?)```", deployment, re.S)
                       for c in _commands(b)}  # fmt: skip
    assert readme_cmds, "README.md's Pi section has no ```sh block"
    assert [c for c in readme_cmds if c not in deployment_cmds] == []
    install = [c for c in readme_cmds if "pip install" in c]
    assert install == [
        "sudo -u partrig .venv/bin/pip install -c deploy/pi-constraints.txt -e '.[pi]'"
    ]
