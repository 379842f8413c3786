"""Fault injection: the link against a scripted peer that breaks the protocol on purpose."""

from __future__ import annotations

import queue
import time

import pytest
from link_helpers import Peer, fast_config

from rig.errors import FirmwareHalted, FirmwareReset, LinkError, LinkTimeout
from rig.link import GcodeLink, LinkEvent

pytestmark = pytest.mark.timeout(60)


def open_link(peer, **overrides) -> tuple[GcodeLink, queue.Queue[LinkEvent]]:
    events: queue.Queue[LinkEvent] = queue.Queue()
    link = GcodeLink(fast_config(peer.path, **overrides), reset_hook=peer.reset)
    link.add_listener(events.put)
    link.open()
    return link, events


def next_event(events: queue.Queue[LinkEvent], kind: str, timeout: float = 5.0) -> LinkEvent:
    end = time.monotonic() + timeout
    while True:
        event = events.get(timeout=max(0.01, end - time.monotonic()))
        if event.kind == kind:
            return event


def times_received(peer, command: str) -> int:
    return sum(1 for line in peer.received if line.split("*")[0].endswith(" " + command))


def test_corrupted_line_is_resent_and_runs_once(peer):
    link, _ = open_link(peer)
    try:
        peer.corrupt = {peer.last_n + 1}
        assert link.send("M118 after-resend") == ["after-resend"]
        assert link.send("M114")
    finally:
        link.close()
    assert peer.executed.count("M118 after-resend") == 1
    assert times_received(peer, "M118 after-resend") == 2


def test_repeated_resend_requests_from_lines_in_flight_are_ignored(tmp_path):
    peer = Peer(tmp_path, advanced_ok=True).start()
    peer.flush_on_error = False  # each line behind the bad one earns its own Resend request
    link, _ = open_link(peer, max_in_flight=4)
    try:
        first = peer.last_n + 2  # after the G4
        peer.corrupt = {first}
        pending = [link.submit("G4 P150")] + [link.submit(f"M42 P{i} S1") for i in range(3)]
        for p in pending:
            p.result(5)
    finally:
        link.close()
        peer.stop()
    errors = [line for line in peer.received if line.startswith(f"N{first + 1} ")]
    assert len(errors) == 2  # sent, rejected as out of order, resent once: never more
    assert [c for c in peer.executed if c.startswith("M42")] == [f"M42 P{i} S1" for i in range(3)]


def test_resend_loop_is_capped_with_a_clear_link_error(peer):
    link, _ = open_link(peer, resend_limit=3)
    try:
        peer.corrupt_always = {peer.last_n + 1}
        with pytest.raises(LinkError, match="asked 4 times for line"):
            link.send("M118 never")
        peer.corrupt_always = set()
        assert link.send("M118 recovered") == ["recovered"]  # re-synchronised (new base)
    finally:
        link.close()
    assert "M118 never" not in peer.executed


def test_missing_ok_after_resend_is_supplied(peer):
    peer.ok_after_resend = False
    link, _ = open_link(peer)
    try:
        peer.corrupt = {peer.last_n + 1}
        assert link.send("M118 no-ok-firmware") == ["no-ok-firmware"]
        assert link.send("M118 next") == ["next"]
    finally:
        link.close()
    assert peer.executed.count("M118 no-ok-firmware") == 1


def test_lost_ok_is_provoked_with_a_probe_and_nothing_runs_twice(peer):
    link, _ = open_link(peer)
    try:
        peer.drop_ok = {peer.last_n + 1}
        assert link.send("M118 lost-ok") == ["lost-ok"]
        assert link.send("M118 after") == ["after"]
    finally:
        link.close()
    assert peer.executed.count("M118 lost-ok") == 1
    assert times_received(peer, "M118 lost-ok") == 1
    assert peer.executed.count("M115") == 2  # the handshake's and the probe


def test_silent_firmware_raises_link_timeout_without_resending(peer):
    link, _ = open_link(peer, command_timeout_s=0.2, handshake_timeout_s=0.5)
    try:
        peer.on_command = lambda p, cmd: True  # executes nothing, answers nothing
        with pytest.raises(LinkTimeout, match="stopped answering"):
            link.send("M118 void")
    finally:
        link.close()
    assert times_received(peer, "M118 void") == 1
    assert times_received(peer, "M115") >= 3


def test_busy_keepalives_extend_a_long_command(peer):
    link, _ = open_link(peer, long_command_timeout_s=0.3, busy_timeout_s=0.3)
    try:
        started = time.monotonic()
        assert link.send("G4 P900") == []
        assert time.monotonic() - started >= 0.9
    finally:
        link.close()
    assert peer.executed.count("M115") == 1  # no probe was needed


def test_start_mid_command_raises_firmware_reset_and_tells_listeners(peer):
    link, events = open_link(peer)

    def reset_during_g4(p, cmd):
        if cmd.startswith("G4"):
            p.reset()
            return True
        return False

    try:
        peer.on_command = reset_during_g4
        with pytest.raises(FirmwareReset, match="position is unknown"):
            link.send("G4 P500")
        event = next_event(events, "reset")
        assert event.during_command
        assert link.resets == 1
        assert link.send("M118 alive") == ["alive"]
        assert link.state == "ready"
    finally:
        link.close()


def test_kill_latches_firmware_halted_until_clear_fault(peer):
    link, events = open_link(peer)

    def kill_on_m42(p, cmd):
        if cmd == "M42 P99 S1":
            p.kill()
            return True
        return False

    try:
        peer.on_command = kill_on_m42
        with pytest.raises(FirmwareHalted):
            link.send("M42 P99 S1")
        with pytest.raises(FirmwareHalted, match="kill"):
            link.send("M114")
        assert link.state == "halted"
        assert "kill() called" in link.fault
        assert next_event(events, "halted").detail.startswith("firmware halted")
        link.clear_fault()
        assert link.fault is None
        assert next_event(events, "fault_cleared")
        assert link.send("M118 back") == ["back"]
    finally:
        link.close()


def test_port_vanishing_reconnects_and_rehandshakes(peer):
    link, events = open_link(peer)

    def unplug_on_m42(p, cmd):
        if cmd == "M42 P7 S1":
            p.unplug()
            p.replug(after=0.2)
            return True
        return False

    try:
        peer.on_command = unplug_on_m42
        with pytest.raises(LinkError, match="may or may not have run"):
            link.send("M42 P7 S1")
        next_event(events, "reconnected")
        assert link.send("M118 reconnected") == ["reconnected"]
    finally:
        link.close()
    m110s = [line.split("*")[0] for line in peer.received if " M110 " in line]
    assert m110s == ["N0 M110 N0", "N1000 M110 N1000"]  # each handshake from a fresh base


def test_emergency_stop_bypasses_a_full_queue(tmp_path):
    peer = Peer(tmp_path, advanced_ok=True).start()
    link, events = open_link(peer, long_command_timeout_s=10.0)
    try:
        pending = [link.submit("G4 S5")] + [link.submit(f"M42 P{i} S1") for i in range(10)]
        time.sleep(0.1)  # let the G4 start blocking the peer
        sent = time.monotonic()
        link.emergency_stop()
        for p in pending:
            with pytest.raises(FirmwareHalted, match="emergency stop"):
                p.result(2)
        assert link.fault == "emergency stop"
        with pytest.raises(FirmwareHalted):
            link.send("M114")
        assert next_event(events, "halted").detail == "emergency stop"
        deadline = time.monotonic() + 2.0
        while peer.m112_at is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert peer.m112_at is not None and peer.m112_at - sent < 1.0  # not after the G4's 5 s
        assert not [c for c in peer.executed if c.startswith("M42")]
        link.clear_fault()
        assert link.send("M118 cleared") == ["cleared"]
    finally:
        link.close()
        peer.stop()
