"""The model registry: uploads are stored durably, validated on the rig, activated, rolled back.

The models are real full-int8 TFLite files with known behaviour (registry_helpers.py), and the
snapshot is a real one of real stored shots, so every check runs the code the rig runs.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_mutants import crashing_mutants, large_input
from registry_helpers import (
    LABELS,
    RecordingSorter,
    add_colour_shots,
    colour_model,
    make_snapshot,
    upload_files,
)

from classify.registry import ModelRegistry
from rig.config import parse_settings
from rig.errors import ModelError, NotFound, RunStateError


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "good": colour_model(root / "good"),
        "swapped": colour_model(root / "swapped", swap=True),
        "reordered": colour_model(root / "reordered", labels=LABELS[::-1]),
        "float": colour_model(root / "float", int8=False),
        "other-snapshot": colour_model(root / "other", snapshot="snap-0099"),
    }


@pytest.fixture
def rig_env(tmp_path, request):
    from capture.store import DatasetStore

    models_section = {"accuracy_floor": 0.9, **getattr(request, "param", {})}
    settings = parse_settings({"data": {"dir": str(tmp_path / "data")}, "models": models_section})
    store = DatasetStore.open(settings.data.dir)
    add_colour_shots(store)
    manifest = make_snapshot(store, settings)
    assert manifest["id"] == "snap-0001"
    sorter = RecordingSorter()
    yield ModelRegistry(store, settings, sorter), store, sorter
    store.close()


def with_model(model_dir: Path, content: bytes) -> dict[str, bytes]:
    """The upload of ``model_dir`` with its model.tflite replaced by ``content``."""
    return {**upload_files(model_dir), "model.tflite": content}


def test_a_good_model_is_stored_with_checksums_and_validated_on_the_rigs_test_split(
    rig_env, models
):
    registry, store, _ = rig_env
    files = upload_files(models["good"])
    result = registry.upload(files, "trainer-1")
    assert result["id"] == "model-0001" and result["state"] == "validated", result
    validation = result["validation"]
    assert validation["accuracy"] == 1.0 and validation["test_shots"] > 0
    assert validation["required_accuracy"] == 0.9 and validation["baseline"] is None
    assert [c["check"] for c in validation["checks"]] == [
        "loads",
        "input",
        "labels",
        "test_split",
        "accuracy",
    ]
    row = store.get_model("model-0001")
    assert row["state"] == "validated" and row["labels"] == LABELS
    assert row["snapshot_id"] == "snap-0001" and row["uploaded_by"] == "trainer-1"
    stored = store.model_dir("model-0001")
    for entry in row["files"]:
        data = (stored / entry["name"]).read_bytes()
        assert data == files[entry["name"]]
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert not [p for p in stored.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("name", "failed", "words"),
    [
        ("swapped", "accuracy", "needs 0.9000"),
        ("reordered", "labels", "another order"),
        ("float", "input", "uint8"),
        ("other-snapshot", "labels", "snap-0099"),
    ],
)
def test_a_model_that_fails_a_check_is_kept_as_rejected_with_the_reason(
    rig_env, models, name, failed, words
):
    registry, store, _ = rig_env
    result = registry.upload(upload_files(models[name]), "trainer-1")
    assert result["state"] == "rejected"
    failing = [c for c in result["validation"]["checks"] if not c["ok"]]
    assert failing[0]["check"] == failed and words in failing[0]["detail"], failing
    assert store.get_model(result["id"])["state"] == "rejected"
    with pytest.raises(RunStateError):
        registry.activate(result["id"], "op")
    assert store.active_model() is None


def test_an_upload_that_is_not_a_model_is_refused_and_nothing_is_stored(rig_env, models):
    registry, store, _ = rig_env
    files = upload_files(models["good"])
    with pytest.raises(ModelError, match=r"lacks labels\.txt"):
        registry.upload({k: v for k, v in files.items() if k != "labels.txt"}, "t")
    with pytest.raises(ModelError, match="unexpected files"):
        registry.upload({**files, "../evil.sh": b"rm -rf /"}, "t")
    with pytest.raises(ModelError, match="snapshot"):
        registry.upload({**files, "metrics.json": b'{"accuracy": 1}'}, "t")
    assert store.list_models() == []
    assert not (store.data_dir / "models").exists() or not list(
        (store.data_dir / "models").iterdir()
    )


def test_activation_swaps_the_sorters_model_and_rollback_restores_the_previous_one(rig_env, models):
    registry, store, sorter = rig_env
    first = registry.upload(upload_files(models["good"]), "t")["id"]
    registry.activate(first, "alice")
    assert sorter.swaps[-1][1] == first and sorter.swaps[-1][0].labels == LABELS

    second = registry.upload(upload_files(models["good"]), "t")
    # NOTE: with a model active, the bar is that model's accuracy on the same shots.
    assert second["validation"]["baseline"] == {"model_id": first, "accuracy": 1.0}
    assert second["validation"]["required_accuracy"] == pytest.approx(0.98)
    registry.activate(second["id"], "bob")
    assert store.active_model()["id"] == second["id"]
    assert store.get_model(first)["state"] == "retired"
    assert sorter.swaps[-1][1] == second["id"]

    worse = registry.upload(upload_files(models["swapped"]), "t")
    assert worse["state"] == "rejected"
    assert worse["validation"]["baseline"]["model_id"] == second["id"]

    record = registry.rollback("carol")
    assert record == {"model_id": first, "previous_model_id": second["id"], "changed": True}
    assert store.active_model()["id"] == first and sorter.swaps[-1][1] == first
    history = [(a["action"], a["model_id"], a["previous_model_id"], a["who"])
               for a in reversed(store.model_activations())]  # fmt: skip
    assert history == [
        ("activate", first, None, "alice"),
        ("activate", second["id"], first, "bob"),
        ("rollback", first, second["id"], "carol"),
    ]
    # NOTE: the first model replaced nothing, so there is nothing further back to restore.
    with pytest.raises(RunStateError, match="no previous model"):
        registry.rollback("carol")
    assert store.active_model()["id"] == first and len(sorter.swaps) == 3


def test_the_active_model_survives_a_restart_and_loads_for_the_sorter(rig_env, models):
    registry, store, _ = rig_env
    model_id = registry.upload(upload_files(models["good"]), "t")["id"]
    registry.activate(model_id, "op")
    again = ModelRegistry(store, registry.settings)
    classifier, active = again.load_active()
    assert active == model_id and classifier.input_size == 16


def test_a_folder_left_by_a_crash_is_skipped_and_unfinished_uploads_are_removed(rig_env, models):
    registry, store, _ = rig_env
    root = store.data_dir / "models"
    (root / "model-0001").mkdir(parents=True)  # renamed, but the commit never happened
    (root / ".upload-deadbeef.tmp").mkdir()
    assert registry.remove_staging_leftovers() == [".upload-deadbeef.tmp"]
    result = registry.upload(upload_files(models["good"]), "t")
    assert result["id"] == "model-0002"
    with pytest.raises(NotFound):
        store.get_model("model-0001")


def test_unknown_and_malformed_model_ids_are_not_found(rig_env):
    _, store, _ = rig_env
    for bad in ("model-0042", "../etc", "model-1; DROP TABLE models"):
        with pytest.raises(NotFound):
            store.get_model(bad)


# --- untrusted models: validated in a child, never loaded here unvalidated ---------------------


@pytest.mark.parametrize("mutant", ["quantize-output-retyped-uint8", "zero-point-300", "nan-scale"])
def test_a_model_that_crashes_the_runtime_is_rejected_with_the_signal_and_this_process_lives_on(
    rig_env, models, mutant
):
    registry, store, sorter = rig_env
    content = crashing_mutants((models["good"] / "model.tflite").read_bytes())[mutant]
    result = registry.upload(with_model(models["good"], content), "trainer-1")
    assert result["state"] == "rejected"
    assert result["validation"]["reason"].startswith("validation crashed: signal 11 (SIGSEGV)")
    assert result["validation"]["child"]["exit"] == -11
    assert store.get_model(result["id"])["state"] == "rejected"
    with pytest.raises(RunStateError, match="rejected"):
        registry.activate(result["id"], "op")
    assert sorter.swaps == [] and store.active_model() is None


def test_an_8192_pixel_input_is_refused_before_the_child_allocates_it(rig_env, models):
    registry, _, _ = rig_env
    content = large_input((models["good"] / "model.tflite").read_bytes(), 8192)
    result = registry.upload(with_model(models["good"], content), "t")
    assert result["state"] == "rejected"
    assert "[1, 8192, 8192, 3]" in result["validation"]["reason"]
    assert "models.max_input_side" in result["validation"]["reason"]
    # NOTE: the input alone would be 192 MiB; the child never allocated it.
    assert result["validation"]["child"]["peak_rss_mb"] < 150


@pytest.mark.parametrize(
    "rig_env", [{"max_input_side": 4096, "check_memory_mb": 64}], indirect=True
)
def test_a_model_beyond_the_childs_memory_limit_is_rejected(rig_env, models):
    registry, _, _ = rig_env
    content = large_input((models["good"] / "model.tflite").read_bytes(), 4096)
    result = registry.upload(with_model(models["good"], content), "t")
    assert result["state"] == "rejected"
    # NOTE: 4096 x 4096 x 3 is 48 MiB a tensor, three of them: RLIMIT_AS refuses the arena.
    assert result["validation"]["checks"] == [
        {
            "check": "loads",
            "ok": False,
            "detail": "ai_edge_litert cannot load model.tflite: the runtime gave no reason "
            "(most often memory)",
        }
    ]
    assert result["validation"]["child"]["peak_rss_mb"] < 200


@pytest.mark.parametrize("rig_env", [{"check_timeout_s": 0.05}], indirect=True)
def test_a_child_past_its_deadline_is_killed_and_the_model_rejected(rig_env, models):
    registry, store, _ = rig_env
    result = registry.upload(upload_files(models["good"]), "t")
    assert result["state"] == "rejected"
    assert result["validation"]["reason"] == (
        "validation timed out after 0.05 s (models.check_timeout_s)"
    )
    assert result["validation"]["child"]["exit"] == -9
    assert store.get_model(result["id"])["state"] == "rejected"


def test_a_good_models_validation_runs_in_a_child_with_its_figures(rig_env, models):
    registry, _, _ = rig_env
    result = registry.upload(upload_files(models["good"]), "t")
    child = result["validation"]["child"]
    assert result["state"] == "validated" and child["exit"] == 0
    assert 0 < child["wall_s"] < 60 and child["peak_rss_mb"] > 0
    expected = hashlib.sha256(upload_files(models["good"])["model.tflite"]).hexdigest()
    assert result["validation"]["model_sha256"] == expected


def test_an_unvalidated_model_is_refused_before_its_file_is_read(rig_env, models):
    """If activate loaded the file first, this test process would die of SIGSEGV."""
    registry, store, sorter = rig_env
    content = crashing_mutants((models["good"] / "model.tflite").read_bytes())["zero-point-300"]
    staged, shas = registry._stage(with_model(models["good"], content))
    model_id = store.add_model(
        staged,
        files=[{"name": n, "sha256": h, "size": 1} for n, h in shas.items()],
        labels=LABELS,
        snapshot_id="snap-0001",
        metrics={},
        who="t",
    )
    assert store.get_model(model_id)["state"] == "uploaded"
    with pytest.raises(RunStateError, match="uploaded: only a validated model"):
        registry.activate(model_id, "op")
    assert sorter.swaps == [] and store.active_model() is None
    # NOTE: a restart rejects what a stopped server left half-validated.
    assert registry.reject_unfinished() == [model_id]
    row = store.get_model(model_id)
    assert row["state"] == "rejected" and "did not finish" in row["validation"]["reason"]


def test_a_model_file_changed_after_validation_is_never_loaded(rig_env, models):
    registry, store, sorter = rig_env
    model_id = registry.upload(upload_files(models["good"]), "t")["id"]
    crash = crashing_mutants((models["good"] / "model.tflite").read_bytes())["nan-scale"]
    (store.model_dir(model_id) / "model.tflite").write_bytes(crash)
    with pytest.raises(ModelError, match="differs from the file validated"):
        registry.activate(model_id, "op")
    assert sorter.swaps == [] and store.active_model() is None


@pytest.mark.parametrize("rig_env", [{"keep_rejected": 3, "rejected_quota_mb": 1}], indirect=True)
def test_rejected_uploads_are_pruned_to_the_count_and_byte_quota_newest_kept(rig_env, models):
    registry, store, _ = rig_env
    files = upload_files(models["swapped"])
    small = [registry.upload(files, "t")["id"] for _ in range(4)]
    kept = [m["id"] for m in store.list_models()]
    assert kept == small[:0:-1]  # the oldest of four went: keep_rejected = 3
    # NOTE: 600 KB each against a 1 MiB quota: the older big one goes, the newest always stays,
    # and the small ones that still fit under both bounds stay too.
    big = {**files, "confusion.png": b"\x89PNG" + bytes(600_000)}
    ids = [registry.upload(big, "t")["id"] for _ in range(2)]
    assert [m["id"] for m in store.list_models()] == [ids[1], small[3], small[2]]
    root = store.data_dir / "models"
    assert sorted(p.name for p in root.iterdir()) == [small[2], small[3], ids[1]]
    assert registry.upload(files, "t")["id"] == "model-0007"  # ids are never reused


def test_files_over_their_caps_are_refused_before_anything_is_stored(rig_env, models):
    registry, store, _ = rig_env
    files = upload_files(models["good"])
    with pytest.raises(ModelError, match=r"labels\.txt is larger than 0\.0625 MiB"):
        registry.upload({**files, "labels.txt": b"a\n" * 40_000}, "t")
    registry.settings.models.max_model_file_mb = 1
    with pytest.raises(ModelError, match=r"model\.tflite is larger than 1 MiB"):
        registry.upload({**files, "model.tflite": bytes(2**20 + 1)}, "t")
    assert store.list_models() == []
