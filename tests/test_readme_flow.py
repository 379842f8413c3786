"""README.md's "Using it" script, run as written against a demo server (``make test-long``).

The script is the first ``bash`` block under "## Using it".  It runs in a folder laid out like a
checkout after ``make demo`` (``.venv``, ``examples/``, ``demo-data/`` from ``partrig serve
--demo``), with one change: the demo's port, 8000 in the README, is a free one here.  It must
end with a model the rig validated and made live, and a sorter that sorted with it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [
    pytest.mark.long,
    pytest.mark.skipif(
        importlib.util.find_spec("tensorflow") is None, reason="training needs the train extra"
    ),
]

REPO = Path(__file__).resolve().parents[1]
#: The virtual environment the tests run in (sys.prefix is its folder).
VENV = Path(sys.prefix)


def readme_script() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Using it", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert blocks, "README.md's 'Using it' has no ```bash block"
    return blocks[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_script_ends_with_a_live_model_sorting_on_the_demo(tmp_path: Path) -> None:
    script = readme_script()
    assert "127.0.0.1:8000" in script
    port = _free_port()
    work = tmp_path / "checkout"
    work.mkdir()
    # NOTE: the venv the tests run in, by the name the README uses (`make demo` makes .venv).
    (work / ".venv").symlink_to(VENV, target_is_directory=True)
    (work / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(VENV / "bin" / "partrig"), "serve", "--demo", "demo-data", "--port", str(port)],
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PARTRIG_CONFIG": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, server)
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script.replace("127.0.0.1:8000", url[7:])],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=1800,
            env={k: v for k, v in os.environ.items() if k not in ("PARTRIG_CONFIG", "PARTRIG_KEY")},
        )
        wall = time.monotonic() - started
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-6000:]
        flat = " ".join(out.split())
        print(f"README flow: {wall:.0f} s")
        assert "run 1 completed (96 of 96 shots)" in flat
        assert "model-0001 validated on the rig" in flat
        assert "model-0001 is live" in flat
        assert "stopped the server's sorter after" in flat
        keys = (work / "demo-data" / "partrig.toml").read_text()
        operator_key = re.search(r'operator_keys = \["([^"]+)"\]', keys).group(1)
        with httpx.Client(base_url=url, headers={"X-Api-Key": operator_key}) as api:
            assert api.get("/api/models").json()["active"] == "model-0001"
            status = api.get("/api/sorter/status").json()
            assert status["model_id"] == "model-0001"
            assert int(status["counts"]["decisions"]) >= 20
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


def _wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, "partrig serve --demo exited"
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the demo server did not answer at {url}")
