"""The G-code link against the scripted pty peer: handshake, replies, windows, threads."""

from __future__ import annotations

import threading

import pytest
from link_helpers import Peer, fast_config

from rig.errors import GcodeError, LinkError
from rig.link import GcodeLink

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def link(peer):
    lk = GcodeLink(fast_config(peer.path), reset_hook=peer.reset)
    lk.open()
    yield lk
    lk.close()


def test_open_handshakes_and_reads_m115(peer):
    with GcodeLink(fast_config(peer.path)) as link:
        assert link.firmware.name == "partrig-peer"
        assert link.firmware.dialect == "partrig"
        assert link.firmware.advanced_ok == peer.advanced_ok
        assert link.state == "ready"
    assert peer.received[0] == "N0 M110 N0*125"
    assert link.state == "closed"


def test_send_returns_the_lines_printed_for_the_command(link, peer):
    link.send("G92 X12.5")
    assert link.send("M114") == ["X:12.50 Y:0.00 Z:0.00 E:0.00 Count X:111 Y:0 Z:0"]
    assert link.send("M42 P9 S255") == []
    assert peer.executed[-3:] == ["G92 X12.5", "M114", "M42 P9 S255"]


def test_lines_are_numbered_consecutively_with_checksums(link, peer):
    for _ in range(5):
        link.send("M400")
    # NOTE: from the handshake's M115 on; before it a plain-ok handshake's sync probe is
    # misnumbered on purpose (tests/rig/test_link_races.py).
    first = next(i for i, line in enumerate(peer.received) if line.startswith("N1 M115"))
    numbered = peer.received[first:]
    numbers = [int(line.split()[0][1:]) for line in numbered]
    assert numbers == list(range(1, len(numbers) + 1))
    assert all("*" in line for line in numbered)


def test_unknown_command_raises_gcode_error_and_link_goes_on(link):
    with pytest.raises(GcodeError, match="does not know"):
        link.send("M999")
    assert link.send("M118 still-here") == ["still-here"]


@pytest.mark.parametrize("raw", ["G1 X1\nM112", "G1 X1*99", "G1 X1 ; comment", "  "])
def test_injection_is_refused_before_anything_is_written(link, peer, raw):
    before = len(peer.received)
    with pytest.raises(GcodeError):
        link.send(raw)
    assert link.send("M118 fine") == ["fine"]
    assert len(peer.received) == before + 1


def test_send_before_open_is_a_clear_error(tmp_path):
    with pytest.raises(LinkError, match="not open"):
        GcodeLink(fast_config(str(tmp_path / "none"))).send("M114")


def test_open_on_a_missing_port_says_what_to_check(tmp_path):
    with pytest.raises(LinkError, match=r"serial\.port"):
        GcodeLink(fast_config(str(tmp_path / "none"))).open()


def test_advanced_ok_keeps_several_commands_in_flight(tmp_path):
    peer = Peer(tmp_path, advanced_ok=True).start()
    peer.delays["M42"] = 0.02
    try:
        with GcodeLink(fast_config(peer.path, max_in_flight=4)) as link:
            pending = [link.submit(f"M42 P{i} S1") for i in range(12)]
            for p in pending:
                assert p.result(5) == []
    finally:
        peer.stop()
    assert peer.max_waiting >= 1  # lines queued at the firmware while one executed
    assert peer.max_waiting <= 3  # never more than the window of 4
    assert [c for c in peer.executed if c.startswith("M42")] == [f"M42 P{i} S1" for i in range(12)]


def test_without_advanced_ok_only_one_command_is_in_flight(tmp_path):
    peer = Peer(tmp_path, advanced_ok=False).start()
    peer.delays["M42"] = 0.02
    try:
        with GcodeLink(fast_config(peer.path, max_in_flight=4)) as link:
            pending = [link.submit(f"M42 P{i} S1") for i in range(6)]
            for p in pending:
                p.result(5)
    finally:
        peer.stop()
    assert peer.max_waiting == 0


def test_eight_threads_each_get_their_own_replies(link, peer):
    errors: list[str] = []

    def worker(t: int) -> None:
        for j in range(25):
            tag = f"T{t}x{j}"
            got = link.send(f"M118 {tag}")
            if got != [tag]:
                errors.append(f"{tag} got {got}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert errors == []
    assert len([c for c in peer.executed if c.startswith("M118")]) == 200


def test_close_is_idempotent_and_fails_later_sends(link):
    link.close()
    link.close()
    with pytest.raises(LinkError):
        link.send("M114")
