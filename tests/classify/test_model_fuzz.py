"""TFLite mutation fuzz (``make test-long``): a few hundred hostile models through the real upload.

Each mutant of the red/blue colour model goes through :meth:`ModelRegistry.upload`, the path a
push takes: stored durably, validated in a child process, recorded, pruned.  Whatever the
mutant does to the runtime (segfault, abort, huge allocation, garbage scores), this test process
must carry on, and every verdict must be ``validated`` or ``rejected`` with a reason; none may
stay ``uploaded``.

``PARTRIG_FUZZ_MUTANTS`` sets the count (default 300); ``PARTRIG_FUZZ_REPORT`` names a JSON file
for the tally (mutants, verdicts by reason, wall time), as quoted in docs/security.md.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_mutants import random_mutants
from registry_helpers import add_colour_shots, colour_model, make_snapshot, upload_files

from classify.registry import ModelRegistry
from rig.config import parse_settings

pytestmark = pytest.mark.long


def reason_class(result: dict) -> str:
    """Which check failed (a crash as its signal, e.g. ``isolated:SIGSEGV``)."""
    if result["state"] == "validated":
        return "validated"
    validation = result["validation"]
    failed = [c for c in validation.get("checks", []) if not c["ok"]]
    if not failed:
        return "no-check"
    name = failed[0]["check"]
    if name == "isolated":
        detail = failed[0]["detail"]
        return "isolated:" + (detail.split("(")[1].split(")")[0] if "signal" in detail else detail)
    return name


def test_hundreds_of_mutated_models_get_a_verdict_and_none_crashes_this_process(tmp_path) -> None:
    from capture.store import DatasetStore

    count = int(os.environ.get("PARTRIG_FUZZ_MUTANTS", "300"))
    settings = parse_settings(
        {
            "data": {"dir": str(tmp_path / "data")},
            "models": {"accuracy_floor": 0.9, "check_timeout_s": 60, "check_memory_mb": 512},
        }
    )
    store = DatasetStore.open(settings.data.dir)
    add_colour_shots(store)
    make_snapshot(store, settings)
    registry = ModelRegistry(store, settings)
    seed_dir = colour_model(tmp_path / "seed")
    files = upload_files(seed_dir)
    pid = os.getpid()

    tally: collections.Counter[str] = collections.Counter()
    walls: list[float] = []
    started = time.monotonic()
    for kind, content in random_mutants(files["model.tflite"], count, rng_seed=2026):
        result = registry.upload({**files, "model.tflite": content}, "fuzz")
        assert result["state"] in ("validated", "rejected"), (kind, result)
        if result["state"] == "rejected":
            reason = result["validation"].get("reason")
            assert isinstance(reason, str) and reason.strip(), (kind, result)
        tally[reason_class(result)] += 1
        walls.append(float(result["validation"].get("child", {}).get("wall_s", 0.0)))
    wall = time.monotonic() - started

    assert os.getpid() == pid
    assert not [m for m in store.list_models(limit=100_000) if m["state"] == "uploaded"]
    # NOTE: the fuzz is only worth its time if the child really took crashes for this process.
    assert sum(n for k, n in tally.items() if k.startswith("isolated:SIG")) > 0, tally
    walls.sort()
    report = {
        "mutants": count,
        "verdicts": dict(tally.most_common()),
        "wall_s": round(wall, 1),
        "child_wall_s_p50": walls[len(walls) // 2],
        "child_wall_s_max": walls[-1],
    }
    print(json.dumps(report, indent=2))
    if os.environ.get("PARTRIG_FUZZ_REPORT"):
        Path(os.environ["PARTRIG_FUZZ_REPORT"]).write_text(json.dumps(report, indent=2))
    store.close()
