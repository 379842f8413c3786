"""Each sorter fault latches (or, for one camera glitch, is retried), is recorded as an incident,
keeps the actuator still while latched, survives a restart, and recovers on acknowledgement."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sorting_sim import BrokenClassifier, make_rig

from classify.sorter import Sorter
from rig.errors import DiskFull, FaultLatched


def _incidents(rig, kind: str) -> list[dict]:
    return [i for i in rig.store.list_incidents() if i["kind"] == kind]


def _one_decision_per_part(rig) -> None:
    rig.sorter.flush()
    rows = rig.store.list_decisions(limit=1000)
    assert len(rows) == len(rig.actuator.firings)
    assert [rig.truth(r["drop_id"]) for r in reversed(rows)] == [f[2] for f in rig.actuator.firings]


def test_a_transient_camera_error_is_retried_and_recorded(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    try:
        rig.sorter.run_parts(2)
        rig.feeder.camera.fail_next(3)  # three failures: the third retry succeeds
        rig.sorter.run_parts(2)
        assert rig.sorter.status()["state"] != "faulted"
        assert rig.sorter.status()["counts"]["camera_errors"] == 3
        (retry,) = _incidents(rig, "sorter_camera_retry")
        assert retry["acknowledged_at"] is not None and "3 time(s)" in retry["message"]
        assert len(rig.actuator.firings) == 4
        _one_decision_per_part(rig)
    finally:
        rig.close()


def test_a_lasting_camera_error_latches_until_acknowledged(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    try:
        rig.sorter.run_parts(2)
        rig.feeder.camera.fail_next(4)
        assert rig.sorter.run_parts(1) == []
        status = rig.sorter.status()
        assert status["state"] == "faulted" and status["incident"]["kind"] == "sorter_camera"
        assert "4 times in a row" in status["incident"]["message"]
        (incident,) = _incidents(rig, "sorter_camera")
        assert incident["acknowledged_at"] is None
        fired = len(rig.actuator.firings)
        for _ in range(20):  # safe state: no frames, no firing
            assert rig.sorter.step() is None
        assert len(rig.actuator.firings) == fired
        with pytest.raises(FaultLatched, match="camera failed"):
            rig.sorter.start()
        assert rig.sorter.acknowledge("alice") is True
        assert rig.sorter.acknowledge("alice") is False
        assert _incidents(rig, "sorter_camera")[0]["acknowledged_by"] == "alice"
        assert len(rig.sorter.run_parts(3)) == 3
        _one_decision_per_part(rig)
    finally:
        rig.close()


def test_a_stuck_part_latches_and_recovers_once_removed(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, unknown_rate=0.0)
    try:
        rig.sorter.run_parts(2)
        rig.actuator.jam_next()
        (stuck,) = rig.sorter.run_parts(1)
        rig.sorter.run_parts(1)  # waits for the part to leave: it never does
        status = rig.sorter.status()
        assert status["state"] == "faulted" and status["incident"]["kind"] == "sorter_stuck"
        assert "stuck_after_s = 5 s" in status["incident"]["message"]
        assert rig.feeder.truth() == rig.truth(stuck.drop_id)  # still on the platform
        rig.feeder.clear_platform()
        rig.sorter.acknowledge()
        assert len(rig.sorter.run_parts(3)) == 3
        assert len(rig.actuator.firings) == 6
        _one_decision_per_part(rig)
    finally:
        rig.close()


def test_an_actuator_error_latches_and_the_part_is_sorted_after_acknowledging(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path, unknown_rate=0.0)
    try:
        rig.sorter.run_parts(2)
        rig.actuator.fail_next()
        assert rig.sorter.run_parts(1) == []
        status = rig.sorter.status()
        assert status["incident"]["kind"] == "sorter_actuator"
        assert "no air pressure" in status["incident"]["message"]
        waiting = rig.feeder.truth()
        assert waiting is not None
        rig.sorter.acknowledge()
        (decision,) = rig.sorter.run_parts(1)
        assert rig.truth(decision.drop_id) == waiting
        assert len(rig.actuator.firings) == 3
        _one_decision_per_part(rig)
    finally:
        rig.close()


def test_a_model_error_latches_until_a_working_model_is_swapped_in(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    try:
        rig.sorter.run_parts(1)
        rig.sorter.set_classifier(BrokenClassifier(), "model-0002")
        assert rig.sorter.run_parts(1) == []
        assert rig.sorter.status()["incident"]["kind"] == "sorter_model"
        assert "model-0002 failed" in rig.sorter.status()["incident"]["message"]
        rig.sorter.acknowledge()
        assert rig.sorter.run_parts(1) == []  # still the broken model: latches again
        assert len(_incidents(rig, "sorter_model")) == 2
        rig.sorter.set_classifier(rig.oracle, "model-0001")
        rig.sorter.acknowledge()
        assert len(rig.sorter.run_parts(2)) == 2
        assert len(rig.actuator.firings) == 3
        _one_decision_per_part(rig)
    finally:
        rig.close()


def test_a_latched_fault_survives_a_restart(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    try:
        rig.sorter.run_parts(1)
        rig.feeder.camera.fail_next(4)
        rig.sorter.run_parts(1)
        rig.sorter.close()
        again = Sorter(rig.feeder.camera, rig.actuator, rig.store, rig.settings, rig.clock)
        assert again.status()["state"] == "faulted"
        assert again.status()["incident"]["kind"] == "sorter_camera"
        with pytest.raises(FaultLatched):
            again.start()
        again.acknowledge("bob")
        again.set_classifier(rig.oracle, "model-0001")
        assert len(again.run_parts(1)) == 1
        again.close()
    finally:
        rig.store.close()


def test_a_log_that_cannot_write_latches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = make_rig(tmp_path)
    try:
        rig.sorter.run_parts(1)

        def full(*_a, **_k):
            raise DiskFull("no space left for the database: free space")

        monkeypatch.setattr(rig.store, "add_decisions", full)
        rig.sorter.run_parts(1)
        rig.sorter.flush()
        rig.sorter.run_parts(1)
        status = rig.sorter.status()
        assert status["incident"]["kind"] == "sorter_log"
        assert "no space left" in status["incident"]["message"]
    finally:
        rig.close()


def test_an_unexpected_error_latches_an_internal_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(tmp_path)
    try:
        rig.sorter.run_parts(1)
        monkeypatch.setattr(rig.sorter, "process", lambda *frame: 1 / 0)
        assert rig.sorter.step() is None
        assert rig.sorter.status()["incident"]["kind"] == "sorter_internal"
        assert "ZeroDivisionError" in rig.sorter.status()["incident"]["message"]
    finally:
        rig.close()
