"""The serial port opens exclusively: a second opener is refused and told who holds the board."""

from __future__ import annotations

import os
import subprocess
import sys
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig.errors import LinkError, RigBusy
from rig.serial_port import PortBusy, open_serial, port_holders


@pytest.fixture
def pty_path() -> Iterator[str]:
    """The slave side of a fresh pty, as the simulators hand it to the host."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def test_a_second_open_of_the_port_is_refused_and_names_the_holder(pty_path: str) -> None:
    first = open_serial(pty_path, 115200)
    try:
        with pytest.raises(PortBusy, match=rf"pid {os.getpid()} \(this process\)") as info:
            open_serial(pty_path, 115200)
        assert isinstance(info.value, RigBusy) and isinstance(info.value, LinkError)
        assert "partrig serve" in str(info.value)
    finally:
        first.close()
    again = open_serial(pty_path, 115200)  # closed: the next owner may open it
    again.close()


def test_a_port_held_by_another_process_names_that_process(pty_path: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from rig.serial_port import open_serial; "
            f"p = open_serial({pty_path!r}, 115200); print('open', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"open"
        assert any(h.startswith(f"pid {holder.pid} ") for h in port_holders(pty_path))
        with pytest.raises(PortBusy, match=f"pid {holder.pid} "):
            open_serial(pty_path, 115200)
    finally:
        holder.kill()
        holder.wait(10)
    open_serial(pty_path, 115200).close()


def test_pyserial_urls_open_as_before() -> None:
    a, b = open_serial("loop://", 115200), open_serial("loop://", 115200)
    a.write(b"M114\n")
    assert a.read(5) == b"M114\n"
    a.close()
    b.close()
