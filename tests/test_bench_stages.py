"""bench/stages.py runs the product's stage functions at a tiny size and prints its JSON table.

Why a test for a benchmark: the per-stage table in docs/benchmarks.md is only worth anything
if the bench still calls the product's functions after they move; a renamed stage or module
fails here, in seconds, instead of on the day someone projects the rig to a Pi.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "stages.py"
CAPTURE_STAGES = {"encode", "mask", "mask_png", "thumbnail", "measure", "write", "colour"}
SORTER_STAGES = {"grab", "presence", "crop", "preprocess", "log"}


def run_bench(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=300,  # NOTE: generous for a loaded 2-core machine; it takes seconds when idle.
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tiny_run_prints_every_stage_with_cpu_and_wall_and_a_total_that_adds_up() -> None:
    result = run_bench(
        "--shots", "2", "--frames", "3", "--still", "320x240", "--preview", "320x240",
        "--no-model",
    )  # fmt: skip
    assert result["bench"] == "stages"
    assert result["capture_frame"] == "320x240" and result["sorter_frame"] == "320x240"
    capture, sorter = result["capture_ms"], result["sorter_ms"]
    assert set(capture) == CAPTURE_STAGES | {"total"}
    assert set(sorter) == SORTER_STAGES | {"total"}
    for table in (capture, sorter, result["segment_ms"]):
        for stage, cost in table.items():
            assert cost["cpu"] >= 0 and cost["wall"] > 0, stage
    assert capture["total"]["cpu"] == pytest.approx(
        sum(v["cpu"] for k, v in capture.items() if k != "total"), abs=0.01
    )
    # crop is shown apart but is part of preprocess, so the total leaves it out
    assert sorter["total"]["cpu"] == pytest.approx(
        sum(v["cpu"] for k, v in sorter.items() if k not in ("total", "crop")), abs=0.01
    )
    assert {"colour_fit", "reference_png", "reference_prepare"} <= set(result["segment_ms"])
    assert result["mask_bare_ms"]["wall"] > 0  # the mask against the bare reference, for contrast
    assert result["model"] is None
    assert len(result["load_avg_before"]) == 3 and result["cpus"] >= 1


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_stages", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_folder_without_a_model_is_refused_with_what_to_give(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        load_bench().main(["--model", str(tmp_path)])
    assert exit_.value.code == 2
    assert "holds no model.tflite" in capsys.readouterr().err


def test_a_malformed_size_is_refused_naming_the_form(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        load_bench().main(["--still", "12MP"])
    assert exit_.value.code == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
