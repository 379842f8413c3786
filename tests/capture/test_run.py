"""The run engine's state machine, prompts, faults and resume, with small in-test fakes.

The fakes stand in for the rig, the store and the capture functions so these tests prove the
engine's own logic quickly; tests/capture/test_run_sim.py runs the same engine on the simulated
rig and the real store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from capture.plans.schema import ImageSpec
from capture.runs.run import CaptureRun
from capture.runs.state import RunState, check_transition
from capture.runs.tools import CaptureTools
from capture.store.records import ShotRecord
from capture.store.shot_batches import ShotFiles
from rig.camera_types import Exposure, Frame
from rig.errors import CameraError, DiskFull, FaultLatched, MotionError, RunStateError

# --- fakes -------------------------------------------------------------------------------------


@dataclass
class Stored:
    path: str
    sha256: str
    size: int


class FakeStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.runs: dict[int, dict[str, Any]] = {}
        self.states: list[str] = []
        self.shots: dict[tuple[int, int], ShotRecord] = {}
        self.files: dict[str, bytes] = {}
        self.refs: dict[tuple[int, int], dict[str, Any]] = {}
        self.incidents: list[tuple[str, str]] = []
        self.fault: str | None = None
        self.fail_write_at: int | None = None
        self.writes = 0
        self.lock = threading.Lock()
        self.parts: dict[str, str] = {}
        self.instances: dict[str, str] = {}
        self.sheets: dict[int, tuple[str, str]] = {}
        self.exposures: dict[int, dict[str, Any]] = {}

    def list_parts(self) -> list[dict[str, Any]]:
        return [{"label": label, "name": name} for label, name in self.parts.items()]

    def upsert_part(self, label: str, name: str | None = None, meta=None) -> None:
        self.parts[label] = name or label

    def upsert_instance(self, instance_id: str, label: str, source: str = "capture") -> None:
        self.instances[instance_id] = label

    def upsert_background(self, sheet_id: int, name: str, kind: str = "unknown") -> None:
        self.sheets[sheet_id] = (name, kind)

    def set_run_exposure(self, run_id: int, exposure: dict[str, Any]) -> None:
        self.exposures[run_id] = exposure

    def create_run(self, name: str, plan_toml: str, plan_json: str, total: int) -> int:
        run_id = len(self.runs) + 1
        self.runs[run_id] = {"id": run_id, "state": "pending", "plan_toml": plan_toml}
        return run_id

    def set_run_state(self, run_id: int, state: str, *, prompt=None, action=None, reason=None):
        self.runs[run_id].update(state=state, prompt=prompt, action=action, reason=reason)
        self.states.append(state)

    def done_shot_indices(self, run_id: int) -> set[int]:
        with self.lock:
            return {i for (r, i) in self.shots if r == run_id}

    def write_file(self, rel: str, data: bytes) -> Stored:
        with self.lock:
            self.writes += 1
            if self.fail_write_at is not None and self.writes >= self.fail_write_at:
                raise DiskFull("no space left in the data directory; free some space")
            path = self.data_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.files[rel] = data
            return Stored(rel, hashlib.sha256(data).hexdigest(), len(data))

    def add_shot(self, record: ShotRecord) -> int:
        with self.lock:
            key = (record.run_id, record.shot_index)
            assert key not in self.shots, f"shot {key} recorded twice"
            assert record.path in self.files, "row committed before its file"
            self.shots[key] = record
            return len(self.shots)

    def shot_batches(self) -> FakeBatches:
        return FakeBatches(self)

    def add_reference(self, run_id, sheet, *, path, sha256, colour_matrix, exposure):
        self.refs[(run_id, sheet)] = {"path": path, "colour_matrix": colour_matrix}

    def reference_for(self, run_id: int, sheet: int):
        return self.refs.get((run_id, sheet))

    def latch_fault(self, reason: str) -> None:
        self.fault = reason

    def active_fault(self) -> dict[str, Any] | None:
        return {"reason": self.fault} if self.fault else None

    def add_incident(self, kind: str, message: str, run_id=None) -> None:
        self.incidents.append((kind, message))


class FakeBatches:
    """The store's batched path, each batch committed at once: files first, then the rows."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def add(self, items: list[ShotFiles]) -> list[int]:
        ids = []
        for item in items:
            stored = self.store.write_file(*item.image)
            for extra in (item.mask, item.thumb):
                if extra is not None:
                    self.store.write_file(*extra)
            record = dataclasses.replace(
                item.record, path=stored.path, sha256=stored.sha256, size=stored.size
            )
            ids.append(self.store.add_shot(record))
        return ids

    def flush(self) -> list[int]:
        return []


class FakeWorld:
    def __init__(self) -> None:
        self.sheet: int | None = None
        self.part: Any = None
        self.actions: list[dict[str, Any]] = []
        self.wrong_sheet_once: int | None = None

    def apply(self, action: dict[str, Any]) -> None:
        self.actions.append(action)
        if action["kind"] == "install_background":
            if self.wrong_sheet_once is not None:
                self.sheet, self.wrong_sheet_once = self.wrong_sheet_once, None
            else:
                self.sheet = action["sheet"]
        elif action["kind"] == "place_part":
            self.part = action["label"]
        else:
            self.part = None


class FakeTurntable:
    def __init__(self) -> None:
        self.target = 0.0
        self.moves: list[float] = []
        self.offset = 0.0
        self.gate: threading.Event | None = None

    def rotate_to(self, deg: float) -> None:
        self.target = deg % 360
        self.moves.append(deg)

    def wait(self) -> float:
        if self.gate is not None:
            self.gate.wait(5)
        return self.target + self.offset


class FakeCamera:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.captures = 0
        self.fail_at: int | None = None

    def capture(self) -> Any:
        self.captures += 1
        if self.fail_at is not None and self.captures >= self.fail_at:
            raise CameraError("camera not responding; check the ribbon cable")
        img = np.zeros((24, 32, 3), np.uint8)
        img[0, 0, 0] = 200 if self.world.sheet is None else self.world.sheet
        if self.world.part is not None:
            img[8:16, 10:20] = 255
        return Frame(img, 0.0, exposure_us=1000, analogue_gain=1.0, colour_gains=(1.5, 1.4))

    def unlock(self) -> None:
        pass

    def meter_and_lock(self) -> Exposure:
        return Exposure(exposure_us=1000, analogue_gain=1.0, colour_gains=(1.5, 1.4))


class FakeLights:
    def __init__(self) -> None:
        self.levels: list[float] = []

    def set(self, level: float) -> None:
        self.levels.append(level)


class FakeRig:
    def __init__(self) -> None:
        self.world = FakeWorld()
        self.turntable = FakeTurntable()
        self.camera = FakeCamera(self.world)
        self.lights = FakeLights()
        self.stops: list[str] = []
        self.emergency_stopped = False

    def safe_stop(self, reason: str) -> None:
        self.stops.append(reason)


def _mask(image: np.ndarray, reference: np.ndarray):
    mask = np.any(image != reference, axis=2)
    mask[0, 0] = False
    ys, xs = np.nonzero(mask)
    box = (
        (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) if len(xs) else None
    )
    return mask, box


def _detect(image: np.ndarray) -> int | None:
    v = int(image[0, 0, 0])
    return None if v == 200 else v


def _expand(plan: Any) -> list[Any]:
    shots, i = [], 0
    for bg in plan.backgrounds:
        for part in plan.parts:
            for a in range(plan.angles):
                shots.append(
                    SimpleNamespace(
                        index=i,
                        label=part,
                        instance=f"{part}-a",
                        pose="upright",
                        background=bg,
                        angle_deg=a * 360 / plan.angles,
                        light=1.0,
                        prompt_before=None,
                        actions=(),
                    )
                )
                i += 1
    return shots


TOOLS = CaptureTools(_expand, _mask, _detect, lambda img: np.eye(3))


def make_run(tmp_path: Path, parts=("3001", "3023"), backgrounds=(1, 2), angles=4, **kw):
    store = kw.pop("store", None) or FakeStore(tmp_path)
    rig = kw.pop("rig", None) or FakeRig()
    plan = SimpleNamespace(
        name="t",
        parts=list(parts),
        backgrounds=list(backgrounds),
        angles=angles,
        settle_s=0.0,
        image=ImageSpec(),
        poses=[],
    )
    run_id = store.create_run("t", "", "{}", len(_expand(plan)))
    run = CaptureRun(store, rig, run_id, plan, tools=TOOLS, sleep=lambda s: None, **kw)
    return run, store, rig


def auto_answer(run: CaptureRun) -> list[str]:
    """Answer every prompt as it comes (from the event thread), recording the texts."""
    prompts: list[str] = []

    def on_event(event) -> None:
        if event.kind == "state" and event.data["state"] == "awaiting_operator":
            prompts.append(event.data["prompt"])
            threading.Thread(target=run.answer_prompt).start()

    run.subscribe(on_event)
    return prompts


# --- tests ------------------------------------------------------------------------------------


def test_a_run_captures_every_shot_once_with_prompts_at_each_change(tmp_path):
    run, store, rig = make_run(tmp_path)
    prompts = auto_answer(run)
    run.start()
    assert run.wait(10) is RunState.COMPLETED
    assert sorted(i for (_, i) in store.shots) == list(range(16))
    assert [a["kind"] for a in rig.world.actions] == [
        "install_background", "place_part", "place_part",
        "install_background", "remove_part", "place_part", "place_part",
    ]  # fmt: skip
    assert "Install background sheet 1" in prompts[0]
    assert store.runs[run.run_id]["state"] == "completed"
    assert all(r.mask_path and r.bbox == (10, 8, 10, 8) for r in store.shots.values())
    assert len(store.refs) == 2


def test_state_is_persisted_on_every_transition(tmp_path):
    run, store, _ = make_run(tmp_path, parts=("a",), backgrounds=(1,), angles=2)
    auto_answer(run)
    run.start()
    run.wait(10)
    assert store.states == [
        "running", "awaiting_operator", "running", "awaiting_operator", "running", "completed",
    ]  # fmt: skip


def test_events_carry_increasing_sequence_numbers_and_replay(tmp_path):
    run, _, _ = make_run(tmp_path, parts=("a",), backgrounds=(1,), angles=3)
    auto_answer(run)
    run.start()
    run.wait(10)
    events = run.events_since(0)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.seq for e in run.events_since(3)] == list(range(4, len(events) + 1))
    stored = [e for e in events if e.kind == "stored"]
    assert [e.data["done"] for e in stored] == [1, 2, 3]
    assert stored[-1].data["total"] == 3 and stored[-1].data["eta_s"] == 0


def test_a_wrong_sheet_prompts_again_with_a_clear_message(tmp_path):
    run, _, rig = make_run(tmp_path, parts=("a",), backgrounds=(3,), angles=2)
    rig.world.wrong_sheet_once = 5
    prompts = auto_answer(run)
    run.start()
    assert run.wait(10) is RunState.COMPLETED
    assert "sheet 5 is installed" in prompts[1] and "needs sheet 3" in prompts[1]


def test_pause_resume_and_abort_from_another_thread(tmp_path):
    run, store, rig = make_run(tmp_path, parts=("a",), backgrounds=(1,), angles=50)
    auto_answer(run)
    gate = threading.Event()
    rig.turntable.gate = gate
    run.start()
    seen_running = threading.Event()
    run.subscribe(lambda e: e.kind == "shot" and seen_running.set())
    gate.set()
    assert seen_running.wait(5)
    run.pause()
    assert run.state is RunState.PAUSED
    with pytest.raises(RunStateError):
        run.pause()
    with pytest.raises(RunStateError):
        run.answer_prompt()
    n = len(store.shots)
    run.resume()
    assert run.state is RunState.RUNNING
    run.abort()
    assert run.wait(10) is RunState.ABORTED
    assert len(store.shots) >= n and len(store.shots) < 50
    assert rig.lights.levels[-1] == 0.0
    with pytest.raises(RunStateError):
        run.start()
    with pytest.raises(RunStateError):
        run.resume()


def test_abort_wakes_a_run_waiting_for_the_operator(tmp_path):
    run, store, _ = make_run(tmp_path, parts=("a",), backgrounds=(1,), angles=2)
    prompted = threading.Event()
    run.subscribe(lambda e: e.data.get("state") == "awaiting_operator" and prompted.set())
    run.start()
    assert prompted.wait(5)
    run.abort()
    assert run.wait(5) is RunState.ABORTED
    assert store.runs[run.run_id]["state"] == "aborted"


def test_invalid_transitions_raise_run_state_error(tmp_path):
    run, _, _ = make_run(tmp_path)
    for action in (run.pause, run.resume, run.answer_prompt):
        with pytest.raises(RunStateError):
            action()
    run.abort()
    with pytest.raises(RunStateError, match="finished"):
        run.abort()
    with pytest.raises(RunStateError):
        check_transition(1, RunState.COMPLETED, RunState.RUNNING, "start")


def test_a_full_disk_fails_the_run_safely_and_resume_completes_it(tmp_path):
    run, store, rig = make_run(tmp_path, parts=("a",), backgrounds=(1,), angles=12)
    auto_answer(run)
    store.fail_write_at = 20  # reference + 3 files per shot: fails inside shot 6
    run.start()
    assert run.wait(10) is RunState.FAILED
    assert "DiskFull" in run.reason and "free some space" in run.reason
    assert rig.stops and "DiskFull" in rig.stops[0]
    assert store.incidents[0][0] == "capture_failed"
    kept = set(store.done_shot_indices(run.run_id))
    assert kept == set(range(len(kept))) and 0 < len(kept) < 12
    with pytest.raises(FaultLatched):
        run.start()
    store.fault, store.fail_write_at = None, None
    run.start()
    assert run.wait(10) is RunState.COMPLETED
    assert sorted(store.done_shot_indices(run.run_id)) == list(range(12))


def test_a_camera_error_fails_the_run_and_keeps_the_frames_already_captured(tmp_path):
    run, store, rig = make_run(tmp_path, parts=("a",), backgrounds=(1,), angles=10)
    auto_answer(run)
    rig.camera.fail_at = 7  # marker check, reference, shots 0..3, then shot 4 fails
    run.start()
    assert run.wait(10) is RunState.FAILED
    assert "CameraError" in run.reason and "ribbon cable" in run.reason
    assert store.done_shot_indices(run.run_id) == {0, 1, 2, 3}
    assert store.fault and store.runs[run.run_id]["state"] == "failed"


def test_a_position_mismatch_fails_with_a_motion_error(tmp_path):
    run, _, rig = make_run(tmp_path, parts=("a",), backgrounds=(1,), angles=4)
    auto_answer(run)
    rig.turntable.offset = 2.0
    run.start()
    assert run.wait(10) is RunState.FAILED
    assert MotionError.__name__ in run.reason and "not at the commanded" in run.reason


def test_resume_continues_with_the_first_missing_shot_and_reuses_the_reference(tmp_path):
    run, store, rig = make_run(tmp_path, parts=("a", "b"), backgrounds=(1,), angles=5)
    auto_answer(run)
    rig.camera.fail_at = 6
    run.start()
    assert run.wait(10) is RunState.FAILED
    first = set(store.done_shot_indices(run.run_id))
    # a new process: fresh rig and world, the run loaded as interrupted
    store.fault = None
    rig2 = FakeRig()
    run2 = CaptureRun(
        store, rig2, run.run_id, run.plan, state=RunState.INTERRUPTED, tools=TOOLS,
        sleep=lambda s: None,
    )  # fmt: skip
    prompts = auto_answer(run2)
    run2.start()
    assert run2.wait(10) is RunState.COMPLETED
    assert sorted(store.done_shot_indices(run.run_id)) == list(range(10))
    assert first == {0, 1, 2}  # marker check, reference, shots 0..2, then the camera failed
    assert rig2.turntable.moves == [216.0, 288.0] + [a * 72.0 for a in range(5)]
    assert "remove" not in " ".join(prompts).lower()  # the stored reference was reused


def test_the_previous_frame_is_stored_while_the_turntable_moves(tmp_path):
    run, store, rig = make_run(tmp_path, parts=("a",), backgrounds=(1,), angles=6)
    auto_answer(run)
    overlapped: list[bool] = []
    real_wait = rig.turntable.wait

    def wait() -> float:
        # NOTE: the move to shot k waits until shot k-1 is stored: this only finishes if the
        # writer works while the engine is inside wait(), i.e. the pipeline overlaps.
        k = len(rig.turntable.moves) - 1
        if k > 0:
            deadline = threading.Event()
            for _ in range(200):
                if (run.run_id, k - 1) in store.shots:
                    break
                deadline.wait(0.01)
            overlapped.append((run.run_id, k - 1) in store.shots)
        return real_wait()

    rig.turntable.wait = wait
    run.start()
    assert run.wait(10) is RunState.COMPLETED
    assert overlapped == [True] * 5


def test_the_engine_records_shots_references_and_faults_in_the_real_store(tmp_path):
    import capture.store as store_mod

    store = store_mod.DatasetStore.open(tmp_path / "data")
    tools = CaptureTools(_expand, _mask, _detect, lambda img: np.eye(3))
    run, _, rig = make_run(tmp_path, store=store, angles=3)
    run.tools = tools
    auto_answer(run)
    rig.camera.fail_at = 12  # fails during the second background segment
    run.start()
    assert run.wait(10) is RunState.FAILED
    assert store.get_run(run.run_id)["state"] == "failed"
    assert store.active_fault()
    kept = store.done_shot_indices(run.run_id)
    assert kept == set(range(7))  # 2 + 6 captures on sheet 1, 2 + 1 on sheet 2
    store.clear_fault("test")
    rig2 = FakeRig()
    run2 = CaptureRun(
        store, rig2, run.run_id, run.plan, state=RunState.FAILED, tools=tools, sleep=lambda s: None
    )
    auto_answer(run2)
    run2.start()
    assert run2.wait(10) is RunState.COMPLETED, run2.reason
    assert store.done_shot_indices(run.run_id) == set(range(12))
    assert store.check().ok
    store.close()


class SlowReferenceStore(FakeStore):
    """Writes a segment's reference PNG only once the operator was asked to place the part (or
    after 5 s), and checks that no shot row comes before its segment's reference row."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.prompts: list[str] = []
        self.asked_first: list[bool] = []
        self.fail_references = False

    def write_file(self, rel: str, data: bytes) -> Stored:
        if rel.startswith("references/"):
            segment = len(self.asked_first) + 1
            for _ in range(500):
                if self._place_prompts() >= segment:
                    break
                threading.Event().wait(0.01)
            self.asked_first.append(self._place_prompts() >= segment)
            if self.fail_references:
                raise DiskFull("no space left in the data directory; free some space")
        return super().write_file(rel, data)

    def _place_prompts(self) -> int:
        return sum("Place part" in p for p in list(self.prompts))

    def add_shot(self, record: ShotRecord) -> int:
        assert (record.run_id, record.background_id) in self.refs, "shot before its reference"
        return super().add_shot(record)


def test_the_reference_is_stored_while_the_operator_places_the_part_and_before_any_shot(
    tmp_path,
):
    store = SlowReferenceStore(tmp_path)
    run, store, _ = make_run(tmp_path, store=store, parts=("a",), backgrounds=(1, 2), angles=3)
    store.prompts = auto_answer(run)
    run.start()
    assert run.wait(20) is RunState.COMPLETED, run.reason
    # each segment's reference PNG was written after the operator was asked to place the part
    assert store.asked_first == [True, True]
    assert len(store.refs) == 2 and len(store.shots) == 6


def test_a_reference_that_cannot_be_stored_fails_the_run_before_any_shot_is_stored(tmp_path):
    store = SlowReferenceStore(tmp_path)
    store.fail_references = True
    run, store, rig = make_run(tmp_path, store=store, parts=("a",), backgrounds=(1,), angles=3)
    store.prompts = auto_answer(run)
    run.start()
    assert run.wait(10) is RunState.FAILED
    assert "DiskFull" in run.reason and "free some space" in run.reason
    assert rig.stops and not store.shots and not store.refs


def test_the_reference_is_prepared_once_per_segment_and_given_to_every_mask(tmp_path):
    prepared: list[np.ndarray] = []

    @dataclass(frozen=True)
    class Prepared:
        image: np.ndarray

    def prepare(reference: np.ndarray) -> Prepared:
        prepared.append(reference)
        return Prepared(reference)

    def mask(image: np.ndarray, reference: Prepared):
        assert isinstance(reference, Prepared)
        return _mask(image, reference.image)

    tools = dataclasses.replace(TOOLS, mask_and_box=mask, prepare_reference=prepare)
    run, store, _ = make_run(tmp_path, parts=("a", "b"), backgrounds=(1, 2), angles=3)
    run.tools = tools
    auto_answer(run)
    run.start()
    assert run.wait(10) is RunState.COMPLETED, run.reason
    assert len(prepared) == 2 and len(store.shots) == 12
    assert all(r.bbox == (10, 8, 10, 8) for r in store.shots.values())
