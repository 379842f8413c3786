"""Two CPU workers of MultiWorkerMirroredStrategy on loopback train one model.

The contract: the same global batch and seed as a single worker; the two workers' weights are
bit-identical after every epoch (each all-reduced step leaves every copy equal), and the final
test accuracy is within 2 standard errors of the single worker's.  Run by ``make test-long``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from snapshot_factory import PARTS, make_snapshot

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--backbone", "tiny", "--size", "48", "--epochs", "6", "--batch", "16",
        "--patience", "6", "--seed", "3", "--weights", "none"]  # fmt: skip

pytestmark = pytest.mark.long


def _split_train_shard(root: Path) -> None:
    """Two train shards (one per worker) and per-class counts in the manifest."""
    path = root / "webdataset" / "train-000000.tar"
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]
    keys = sorted({m.name.split(".")[0] for m, _ in members})
    half = set(keys[::2])
    manifest = json.loads((root / "manifest.json").read_text())
    files = [f for f in manifest["files"] if f["path"] != "webdataset/train-000000.tar"]
    for n, chosen in enumerate((half, set(keys) - half)):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as out:
            for m, data in members:
                if m.name.split(".")[0] in chosen:
                    out.addfile(m, io.BytesIO(data))
        target = root / "webdataset" / f"train-{n:06d}.tar"
        target.write_bytes(buf.getvalue())
        files.append({"path": target.relative_to(root).as_posix(), "format": "webdataset",
                      "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
                      "size": len(buf.getvalue())})  # fmt: skip
    manifest["files"] = files
    per = {"train": 40, "val": 8, "test": 30}
    manifest["counts"]["by_class_split"] = {label: dict(per) for label in PARTS}
    (root / "manifest.json").write_text(json.dumps(manifest))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train(root: Path, out: Path, tf_config: dict | None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "250", "CUDA_VISIBLE_DEVICES": "",
           "TF_CPP_MIN_LOG_LEVEL": "2", "PARTRIG_CONFIG": str(root / "none.toml")}  # fmt: skip
    env.pop("TF_CONFIG", None)
    (root / "none.toml").write_text("")
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    cmd = [sys.executable, "-m", "web.cli", "train", "--dataset", str(root), "--out", str(out)]
    return subprocess.Popen(cmd + ARGS, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def test_two_workers_train_one_model_matching_a_single_worker(tmp_path: Path) -> None:
    root = make_snapshot(tmp_path / "snap-0001", {"train": 40, "val": 8, "test": 30}, seed=5)
    _split_train_shard(root)
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    roles = [{"cluster": cluster, "task": {"type": "worker", "index": i}} for i in range(2)]
    workers = [_train(root, tmp_path / f"w{i}", role) for i, role in enumerate(roles)]
    logs = [w.communicate(timeout=1500)[0] for w in workers]
    for w, log in zip(workers, logs, strict=True):
        assert w.returncode == 0, log[-4000:]
    single = _train(root, tmp_path / "single", None)
    single_log = single.communicate(timeout=1500)[0]
    assert single.returncode == 0, single_log[-4000:]

    per_epoch = [re.findall(r"weights ([0-9a-f]{16})", log) for log in logs]
    finals = [re.findall(r"final weights sha256 ([0-9a-f]{64})", log) for log in logs]
    assert per_epoch[0] and per_epoch[0] == per_epoch[1], logs
    assert finals[0] and finals[0] == finals[1]
    assert not (tmp_path / "w1").exists()
    multi = json.loads((tmp_path / "w0" / "metrics.json").read_text())
    one = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert multi["workers"] == 2 and multi["weights_sha256"] == finals[0][0]
    assert multi["steps_per_epoch"] == math.ceil(max(3 * 40, 512) / 16)
    n = multi["test"]["float"]["count"]
    assert n == 3 * 30
    # NOTE: the standard error of the difference of two accuracies on n test shots each,
    # from the pooled rate with one success and one failure added (never zero at 100 %).
    p = (multi["float_accuracy"] * n + one["float_accuracy"] * n + 1) / (2 * n + 2)
    se = math.sqrt(2 * p * (1 - p) / n)
    print(f"multi {multi['float_accuracy']} single {one['float_accuracy']} 2se {2 * se:.3f}")
    assert abs(multi["float_accuracy"] - one["float_accuracy"]) <= 2 * se
