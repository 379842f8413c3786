"""The sorter's one-slot pipeline: the front thread prepares the next part while the back thread
runs the model; decisions keep their frames' order and a halt fires nothing, even for a part
already prepared."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from capture.store import DatasetStore
from classify.actuator_sim import SimActuator
from classify.runtime import Prediction
from classify.sort_pipeline import FrontThread, OneSlot
from classify.sorter import Sorter, core_to_spare
from rig.config import Settings

SHAPE = (120, 160, 3)
LABEL = "brick-2x4-red"


class ScriptedCamera:
    """The empty platform for the reference, then each part (tagged with its drop id) followed
    by an empty frame; once the script is done, the empty platform, slowly."""

    def __init__(self, parts: int) -> None:
        self.empty = np.full(SHAPE, 200, np.uint8)
        self.script: list[tuple[np.ndarray, str | None]] = []
        for i in range(parts):
            frame = self.empty.copy()
            x = 2 + 4 * (i % 30)
            frame[40:80, x : x + 30] = (200, 30, 30)
            self.script += [(frame, f"drop-{i}"), (self.empty, None)]
        self._lock = threading.Lock()

    def preview(self) -> np.ndarray:
        return self.empty

    def preview_tagged(self) -> tuple[np.ndarray, str | None]:
        with self._lock:
            if self.script:
                return self.script.pop(0)
        time.sleep(0.002)
        return self.empty, None


class PreparingFake:
    """A model with the runtime's two halves; records which thread ran each and in what order.

    ``hold`` (optional) is called inside ``predict_prepared``: a test blocks the back there.
    """

    runtime = "fake"

    def __init__(self, hold: Callable[[], None] | None = None) -> None:
        self.calls: list[tuple[str, str, tuple[int, ...]]] = []
        self.hold = hold

    def prepare(
        self,
        image_rgb: np.ndarray,
        bbox: Sequence[float] | None = None,
        colour_matrix: object = None,
    ) -> np.ndarray:
        assert bbox is not None
        box = tuple(int(v) for v in bbox)
        self.calls.append(("prepare", threading.current_thread().name, box))
        return np.asarray(box)

    def predict_prepared(self, prepared: np.ndarray, top_k: int = 3) -> Prediction:
        box = tuple(int(v) for v in prepared)
        self.calls.append(("predict", threading.current_thread().name, box))
        if self.hold is not None:
            self.hold()
        return Prediction(LABEL, 0, 0.99, [(LABEL, 0.99)], 0.98)

    def predict(self, *args: object, **kwargs: object) -> Prediction:
        raise AssertionError("the crop prepared by the front half was not used")


def make_sorter(
    tmp_path: Path, parts: int, classifier: object, *, pipelined: bool = True
) -> tuple[Sorter, SimActuator]:
    settings = Settings()
    settings.sorter.stable_frames = 1
    settings.sorter.bins = {LABEL: 3}
    store = DatasetStore.open(tmp_path)
    actuator = SimActuator()
    sorter = Sorter(ScriptedCamera(parts), actuator, store, settings, pipelined=pipelined)
    sorter.take_reference(2)
    sorter.set_classifier(classifier, "model-0001")  # type: ignore[arg-type]
    return sorter, actuator


def wait_until(what: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_running_loop_prepares_on_the_front_thread_and_keeps_the_frames_order(
    tmp_path: Path,
) -> None:
    parts = 30
    model = PreparingFake(lambda: time.sleep(0.005))  # a model run, the GIL released
    sorter, actuator = make_sorter(tmp_path, parts, model)
    try:
        sorter.start()
        assert wait_until(lambda: sorter.status()["counts"]["decisions"] >= parts)
        sorter.stop()
        rows = list(reversed(sorter.store.list_decisions(limit=100)))  # type: ignore[attr-defined]
        assert [r["drop_id"] for r in rows] == [f"drop-{i}" for i in range(parts)]
        assert len(actuator.firings) == parts and {f[1] for f in actuator.firings} == {3}
        prepared = [box for kind, _, box in model.calls if kind == "prepare"]
        predicted = [box for kind, _, box in model.calls if kind == "predict"]
        assert predicted == prepared and len(set(prepared)) == len(prepared) == parts
        # The front prepares while the model runs; when it is not at work on a frame, the back
        # prepares the next part itself (a loaded machine), so both may appear, in order.
        assert "sorter-frames" in {t for kind, t, _ in model.calls if kind == "prepare"}
        assert {t for kind, t, _ in model.calls if kind == "prepare"} <= {"sorter-frames", "sorter"}
        assert {t for kind, t, _ in model.calls if kind == "predict"} == {"sorter"}
    finally:
        sorter.close()


def test_a_halt_while_a_part_is_classified_and_the_next_is_prepared_fires_nothing(
    tmp_path: Path,
) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(30)

    sorter, actuator = make_sorter(tmp_path, 5, PreparingFake(hold))
    try:
        sorter.start()
        assert entered.wait(30), "the back never started on the first part"
        # The front has prepared the second part meanwhile: it waits in the slot.
        assert wait_until(lambda: sorter._slot.full, 30)
        t = time.perf_counter()
        sorter.halt()
        assert time.perf_counter() - t < 0.05  # the e-stop never waits for the loop
        release.set()
        sorter.stop()
        assert actuator.firings == []
        assert sorter.flush() and sorter.store.count_decisions() == 0  # type: ignore[attr-defined]
        assert not sorter._slot.full and sorter.state == "stopped"
    finally:
        release.set()
        sorter.close()


def test_a_model_swapped_after_a_part_was_prepared_classifies_it_from_the_frame(
    tmp_path: Path,
) -> None:
    old, new = PreparingFake(), PreparingFake()
    sorter, actuator = make_sorter(tmp_path, 1, old)
    try:
        camera = sorter.camera
        assert isinstance(camera, ScriptedCamera)
        job = None
        while job is None:
            job = sorter._look(*camera.preview_tagged())
        assert job.classifier is old and job.prepared is not None
        seen: list[str] = []

        def predict(*args: object, **kwargs: object) -> Prediction:
            seen.append("predict")
            return Prediction(LABEL, 0, 0.99, [(LABEL, 0.99)], 0.98)

        new.predict = predict  # type: ignore[method-assign]
        sorter.set_classifier(new, "model-0002")
        decision = sorter._sort(job)
        assert decision is not None and decision.model_id == "model-0002"
        assert seen == ["predict"] and not [c for c in old.calls if c[0] == "predict"]
        assert decision.drop_id == "drop-0" and len(actuator.firings) == 1
    finally:
        sorter.close()


def test_one_slot_hands_items_over_in_order_and_refuses_after_stop() -> None:
    slot: OneSlot[int] = OneSlot()
    stop = threading.Event()
    got: list[int] = []

    def consume() -> None:
        while len(got) < 50:
            item = slot.take(1.0)
            if item is not None:
                got.append(item)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(50):
        assert slot.put(i, stop)
    consumer.join(30)
    assert got == list(range(50))
    assert slot.put(99, stop) and slot.full
    stop.set()
    assert not slot.put(100, stop) and not slot.wait_empty(stop)
    assert slot.clear() and not slot.full and slot.take(0.01) is None


def test_a_fault_latched_while_a_part_is_in_the_model_fires_neither_it_nor_the_next(
    tmp_path: Path,
) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(30)

    sorter, actuator = make_sorter(tmp_path, 3, PreparingFake(hold))
    try:
        sorter.start()
        assert entered.wait(30)
        assert wait_until(lambda: sorter._slot.full, 30)
        sorter._latch("camera", "simulated: the camera failed 4 times in a row")
        release.set()
        assert wait_until(lambda: not sorter._slot.full, 30)
        sorter.stop()
        assert actuator.firings == []  # neither the part in the model nor the prepared one
        assert sorter.status()["state"] == "faulted"
    finally:
        release.set()
        sorter.close()


def test_the_back_looks_at_the_next_frame_itself_when_the_front_is_not_at_work() -> None:
    frames = iter([None, 1, None, 2])
    front = FrontThread(lambda: next(frames), OneSlot(), threading.Event(), lambda: False)
    # The front thread is not running (as when it waits for a core): the back goes on alone.
    assert [front.next_item(0.1) for _ in range(4)] == [None, 1, None, 2]


def test_without_a_core_to_spare_the_running_loop_is_the_serial_one_in_order(
    tmp_path: Path,
) -> None:
    settings = Settings()
    assert settings.sorter.num_threads == 2
    assert not core_to_spare(settings, cores=2) and core_to_spare(settings, cores=4)
    model = PreparingFake()
    sorter, actuator = make_sorter(tmp_path, 10, model, pipelined=False)
    try:
        sorter.start()
        assert wait_until(lambda: sorter.status()["counts"]["decisions"] >= 10)
        sorter.stop()
        rows = list(reversed(sorter.store.list_decisions(limit=100)))  # type: ignore[attr-defined]
        assert [r["drop_id"] for r in rows] == [f"drop-{i}" for i in range(10)]
        assert {t for _, t, _ in model.calls} == {"sorter"}  # no front thread ran
        assert len(actuator.firings) == 10
    finally:
        sorter.close()
