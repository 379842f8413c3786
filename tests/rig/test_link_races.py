"""Races between handshake generations: replies of an abandoned handshake must stay stale.

Each test drives the scripted peer (tests/rig/peer.py) into one exact interleaving by stalling
it before chosen lines (``Peer.before_line`` + ``Peer.wait_input``): the board holds lines the
link has already given up on, then answers them once the link has started a new handshake.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path

import pytest
import serial
from link_helpers import Peer
from link_helpers import fast_config as _fast_config

import rig.link
from rig.errors import LinkTimeout
from rig.link import GcodeLink
from rig.link_types import HS_BASE_MAX, HS_BASE_STEP


def fast_config(path: str, **overrides):
    """Longer handshakes here: these tests stall the peer on purpose."""
    return _fast_config(path, **{"handshake_timeout_s": 6.0, **overrides})


pytestmark = pytest.mark.timeout(60)

POSITION = "X:0.00 Y:0.00 Z:0.00 E:0.00 Count X:0 Y:0 Z:0"


@pytest.fixture(autouse=True)
def short_handshake_attempts(monkeypatch):
    """Each handshake step gives up after 0.3 s instead of 2 s, so the races come quickly."""
    monkeypatch.setattr(rig.link, "HANDSHAKE_ATTEMPT_S", 0.3)


def m110_behind(lines: list[str]) -> bool:
    return any(" M110 " in line for line in lines)


def stall_across_handshakes(peer, release: threading.Event, *, reset: bool = False) -> None:
    """The board stalls before the first two M110s it reads until the link has abandoned
    them (a newer M110 is buffered behind), and holds the third until ``release``.  With
    ``reset`` the board resets there instead (its input survives, as in simavr's harness)
    and the link abandons the handshake on the ``start``, not on a silence.

    Against a link that restarts numbering at N0 every time this plays the abandoned
    generation's ``ok N0``, M115 report and ``ok N1`` into the new generation's M110 and M115,
    so the new generation's own replies land on the caller's next command.
    """
    seen = {"M110": 0}
    peer.reset_keeps_input = reset

    def hook(p, line: str) -> None:
        if " M110 " not in line:
            return
        seen["M110"] += 1
        if seen["M110"] <= 2:
            if reset:
                p.reset()
            assert p.wait_input(m110_behind, timeout=5.0), "the link never re-handshook"
        elif seen["M110"] == 3:
            p.wait_input(lambda _lines: release.is_set(), timeout=1.0)

    peer.before_line = hook


@pytest.mark.parametrize("abandoned_by", ["silence", "reset"])
def test_replies_of_an_abandoned_handshake_never_answer_a_later_command(peer, abandoned_by):
    release = threading.Event()
    stall_across_handshakes(peer, release, reset=abandoned_by == "reset")
    link = GcodeLink(fast_config(peer.path))
    try:
        link.open()
        pending = link.submit("M114")
        release.set()
        assert pending.result(5) == [POSITION]
        assert link.send("M118 next") == ["next"]
        assert link.send("M114") == [POSITION]
        assert link.firmware is not None and link.firmware.name == "partrig-peer"
    finally:
        link.close()
    assert peer.executed.count("M114") == 2  # a sync probe is never executed


def test_each_handshake_attempt_numbers_from_a_fresh_base(peer):
    release = threading.Event()
    release.set()
    stall_across_handshakes(peer, release)
    with GcodeLink(fast_config(peer.path)) as link:
        link.send("M118 a")
    m110s = [line.split("*")[0] for line in peer.received if " M110 " in line]
    assert m110s[0] == "N0 M110 N0"  # the first handshake after open is the usual one
    bases = [int(line.split()[0][1:]) for line in m110s]
    assert all(line.endswith(f" M110 N{b}") for line, b in zip(m110s, bases, strict=True))
    assert len(set(bases)) == len(bases) >= 3
    assert bases == sorted(bases)
    # every numbered line after the last M110 continues from its base
    last = max(i for i, line in enumerate(peer.received) if " M110 " in line)
    probe = _cs_line(bases[-1] + 2, "M114").decode().strip()  # the plain-ok sync probe
    after = [line for line in peer.received[last + 1 :] if line != probe]
    assert [line.split("*")[0] for line in after] == [
        f"N{bases[-1] + 1} M115",
        f"N{bases[-1] + 2} M118 a",
    ]
    assert (probe in peer.received) == (not peer.advanced_ok)


def test_stale_replies_after_a_resync_do_not_shift_later_replies(peer):
    """A board that stalls past the link's patience answers everything late: the commands
    the link gave up on, its probes and only then the re-synchronising M110."""
    link = GcodeLink(fast_config(peer.path, command_timeout_s=0.2))
    hold = threading.Event()

    def stall_on_g4(p, line: str) -> None:
        if " G4 " in line:
            # NOTE: wait until the link has given up (its re-handshake's M110 is buffered).
            p.wait_input(m110_behind, timeout=5.0)
            hold.set()

    try:
        link.open()
        peer.busy_interval = None
        peer.before_line = stall_on_g4
        stalled = link.submit("G4 P1", timeout=0.2)
        with pytest.raises(LinkTimeout, match="stopped answering"):
            stalled.result(10)
        assert hold.wait(5)
        for i in range(5):
            assert link.send(f"M118 after-{i}") == [f"after-{i}"]
        assert link.send("M114") == [POSITION]
    finally:
        link.close()


def test_plain_ok_handshake_survives_a_firmware_without_ok_after_resend(tmp_path):
    """The sync probe's refusal has no ok on such a firmware; the link supplies it."""
    peer = Peer(tmp_path, advanced_ok=False).start()
    peer.ok_after_resend = False
    try:
        with GcodeLink(fast_config(peer.path)) as link:
            assert link.send("M114") == [POSITION]
            assert link.send("M118 fine") == ["fine"]
    finally:
        peer.stop()
    assert peer.received[:3] == [
        "N0 M110 N0*125",
        _cs_line(2, "M114").decode().strip(),  # the probe, refused
        _cs_line(1, "M115").decode().strip(),
    ]
    assert peer.executed.count("M114") == 1


def test_line_number_bases_grow_then_wrap(tmp_path):
    link = GcodeLink(fast_config(str(tmp_path / "none")))
    assert link._hs_next_base() == 0  # the first handshake after open
    link._hs_base, link._next_n = 0, 1
    assert link._hs_next_base() == HS_BASE_STEP
    link._hs_base, link._next_n = 1000, 1999
    assert link._hs_next_base() == 2000  # above line 1998, the last used
    link._hs_base, link._next_n = 1000, 2000
    assert link._hs_next_base() == 3000
    link._hs_base, link._next_n = HS_BASE_MAX, HS_BASE_MAX + 40
    assert link._hs_next_base() == HS_BASE_STEP


def _cs_line(n: int, command: str) -> bytes:
    body = f"N{n} {command}"
    cs = 0
    for b in body.encode():
        cs ^= b
    return f"{body}*{cs}\n".encode()


def _until_ok(port) -> list[str]:
    lines: list[str] = []
    while True:
        raw = port.readline()
        assert raw, f"no ok from the board; got {lines!r}"
        text = raw.decode(errors="replace").strip()
        if text:
            lines.append(text)
        if text.startswith("ok"):
            return lines


def _avr_board(tmp_path):
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "partrig_simavr_client", root / "firmware" / "harness" / "client.py"
    )
    client = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, client)
    spec.loader.exec_module(client)
    if not (client.ELF.exists() and client.HARNESS.exists()):
        pytest.skip(
            "the firmware and its simavr harness are not built (make -C firmware all harness)"
        )
    board = client.SimavrHarness(tmp_path / "ttyAVR")
    deadline = time.monotonic() + 10
    while board.sim_time() < 0.05 and time.monotonic() < deadline:
        time.sleep(0.005)
    return board, board.link_path, board.close


@pytest.mark.parametrize("board", ["simulator", "firmware"])
def test_boards_take_any_m110_base_and_refuse_the_sync_probe_naming_it(board, make_fw, tmp_path):
    """What the fix relies on, checked against rig/sim/marlin.py and our firmware in simavr:
    ``N<b> M110 N<b>`` sets the counter to any b, and line b+2 is refused naming b."""
    if board == "simulator":
        fw = make_fw()
        path, close = fw.port, (lambda: None)
    else:
        _, path, close = _avr_board(tmp_path)
    try:
        with serial.Serial(str(path), 250000, timeout=0.5) as port:
            # NOTE: lines sent while a board boots are lost: repeat the first M110 until an ok.
            for _ in range(10):
                port.write(_cs_line(0, "M110 N0"))
                if any(line.startswith(b"ok") for line in iter(port.readline, b"")):
                    break
            time.sleep(0.2)  # the ok of a repeated M110 N0, if any, then goes unread
            port.reset_input_buffer()
            port.timeout = 3.0
            port.write(_cs_line(4000, "M110 N4000"))
            assert _until_ok(port)[-1].startswith("ok N4000")
            port.write(_cs_line(4002, "M114"))
            refusal = _until_ok(port)
            assert refusal[0].startswith("Error:Line Number is not Last Line Number+1")
            assert refusal[0].endswith("Last Line: 4000")
            assert refusal[1:] and refusal[1] == "Resend: 4001"
            port.write(_cs_line(4001, "M115"))
            report = _until_ok(port)
            assert report[0].startswith("FIRMWARE_NAME:")
            assert report[-1].startswith("ok N4001")
    finally:
        close()
