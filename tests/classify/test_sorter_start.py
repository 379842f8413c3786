"""When the sorter may start: a model or an explicit "collect for review", no latched rig fault,
and a restart never inherits the part the loop was watching when it stopped."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sorting_sim import make_rig

from rig.errors import FaultLatched, RunStateError


def _run_until(sorter, decisions: int, timeout_s: float = 60.0) -> dict:
    """Let the sorter's own thread work until ``decisions`` parts are sorted or it faults."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = sorter.status()
        if status["state"] == "faulted" or status["counts"]["decisions"] >= decisions:
            return status
        time.sleep(0.01)
    return sorter.status()


def test_a_restart_long_after_a_stop_does_not_report_a_stuck_part(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, unknown_rate=0.0)
    sorter = rig.sorter
    try:
        sorter.take_reference()
        # NOTE: stop the loop (here: stop stepping) while a part is arriving, the state a Stop
        # on the page freezes; then stay stopped well past stuck_after_s on the virtual clock.
        for _ in range(500):
            sorter.step()
            if sorter.status()["phase"] == "arriving":
                break
        assert sorter.status()["phase"] == "arriving"
        rig.clock.advance(3 * rig.settings.sorter.stuck_after_s)
        sorter.start()
        status = _run_until(sorter, decisions=2)
        sorter.stop()
        assert status["incident"] is None, status["incident"]
        assert status["counts"]["decisions"] >= 2
        assert [i for i in rig.store.list_incidents() if i["kind"] == "sorter_stuck"] == []
    finally:
        rig.close()


def test_start_without_a_model_is_refused_unless_collect_for_review(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, model=False)
    sorter = rig.sorter
    try:
        with pytest.raises(RunStateError, match="no model is active"):
            sorter.start()
        assert sorter.status()["state"] == "stopped" and rig.actuator.firings == []
        sorter.start(collect_for_review=True)
        status = _run_until(sorter, decisions=2)
        sorter.stop()
        assert status["collect_for_review"] is True and status["model_id"] is None
        sorter.flush()
        rows = rig.store.list_decisions(limit=100)
        assert rows and {r["reason"] for r in rows} == {"no_model"}
        assert {r["bin"] for r in rows} == {rig.settings.actuator.review_bin}
        assert len(rig.store.review_queue()) == len(rows)
    finally:
        rig.close()


def test_start_is_refused_while_the_rig_fault_is_latched(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    try:
        rig.store.latch_fault("emergency stop pressed by alice")
        with pytest.raises(FaultLatched, match="emergency stop"):
            rig.sorter.start()
        assert rig.sorter.status()["state"] == "stopped" and rig.actuator.firings == []
        rig.store.clear_fault("alice")
        rig.sorter.start()
        assert _run_until(rig.sorter, decisions=1)["counts"]["decisions"] >= 1
        rig.sorter.stop()
    finally:
        rig.close()


def test_partrig_sort_refuses_a_latched_rig_fault(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from capture.store import DatasetStore
    from web.cli import app

    with DatasetStore.open(tmp_path) as store:
        store.latch_fault("emergency stop pressed by alice")
    config = tmp_path / "partrig.toml"
    config.write_text("[simulator]\ntime_scale = 0\n[camera]\npreview_size = [320, 240]\n")
    args = ["sort", "--sim", "--local", "--parts", "1", "--collect-for-review"]
    result = CliRunner().invoke(app, [*args, "-c", str(config), "--data", str(tmp_path)])
    assert result.exit_code == 2 and "emergency stop pressed by alice" in result.output
    with DatasetStore.open(tmp_path) as store:
        assert store.count_decisions() == 0
