"""The 10,000-part soak: faults injected, nothing lost, memory flat (``make test-long``).

A camera error every 1,000 parts (alternately one glitch, retried, and a lasting failure that
latches and is acknowledged) and one stuck part half way.  Every part must have exactly one
logged decision and one firing, every fault an incident that ends acknowledged, and the
process's resident memory may grow less than 10 % from part 1,000 (caches warm) to the end.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sorting_sim import make_rig

PARTS = 10_000
STUCK_AT = 5_500


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.mark.long
@pytest.mark.timeout(3600)
def test_ten_thousand_parts_with_faults(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, seed=11, unknown_rate=0.1, preview_size=(320, 240))
    sorter, injected, latched = rig.sorter, [], []
    rss_warm = None
    started = time.perf_counter()
    try:
        done = 0
        while done < PARTS:
            if done and done % 1000 == 0 and (done, "camera") not in injected:
                lasting = (done // 1000) % 2 == 0
                rig.feeder.camera.fail_next(4 if lasting else 1)
                injected.append((done, "camera"))
            if done == STUCK_AT and (done, "stuck") not in injected:
                rig.actuator.jam_next()
                injected.append((done, "stuck"))
            step = 1 if done in (STUCK_AT, STUCK_AT + 1) else 100 - done % 100
            done += len(sorter.run_parts(min(step, PARTS - done)))
            if sorter.incident is not None:
                latched.append((done, sorter.incident["kind"]))
                rig.feeder.clear_platform()  # the operator deals with it...
                assert sorter.acknowledge("soak")  # ...and acknowledges
            if done == 1000 and rss_warm is None:
                sorter.flush()
                gc.collect()
                rss_warm = rss_kib()
        sorter.flush()
        gc.collect()
        rss_end = rss_kib()
        elapsed = time.perf_counter() - started

        rows = rig.store.query("SELECT drop_id FROM decisions ORDER BY id")
        assert len(rows) == PARTS == len(rig.actuator.firings)
        truths = [rig.truth(r["drop_id"]) for r in rows]  # joined on the feeder's drop log
        assert truths == [f[2] for f in rig.actuator.firings]
        assert sorter.status()["counts"]["decisions"] == PARTS
        kinds = [k for _, k in latched]
        assert kinds.count("sorter_camera") == 4 and kinds.count("sorter_stuck") == 1
        assert len(kinds) == 5
        incidents = rig.store.list_incidents(limit=1000)
        assert sum(i["kind"] == "sorter_camera_retry" for i in incidents) == 5
        assert sum(i["kind"] == "sorter_camera" for i in incidents) == 4
        assert sum(i["kind"] == "sorter_stuck" for i in incidents) == 1
        assert all(i["acknowledged_at"] is not None for i in incidents)
        assert sorter.status()["state"] != "faulted"
        growth = (rss_end - rss_warm) / rss_warm
        print(
            f"\nsoak: {PARTS} parts in {elapsed:.0f} s, {sorter.counts['frames']} frames,"
            f" RSS {rss_warm / 1024:.1f} -> {rss_end / 1024:.1f} MiB ({growth:+.1%}),"
            f" incidents {len(incidents)}, review {rig.store.review_counts()['open']}"
        )
        assert growth < 0.10
        assert rig.store.check().ok, rig.store.check().problems()[:5]
    finally:
        rig.close()
