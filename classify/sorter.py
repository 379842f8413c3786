"""The unattended sorter: see a part, wait until it is still, classify it, fire, log, repeat.

One frame at a time (:meth:`Sorter.process`), the loop moves through three phases:

* ``empty``: nothing differs from the empty reference.  A part appearing starts ``arriving``.
* ``arriving``: the part is there but may still bounce or slide; once it has been still for
  ``sorter.stable_frames`` frames it is cropped and classified (the shared
  :func:`classify.preprocess.prepare`, via ``Classifier.predict`` with the reference's colour
  matrix), a bin is chosen (:mod:`classify.decide`), the actuator fires, and the decision is
  handed to the durable log (:mod:`classify.decision_log`).  Then ``leaving``.
* ``leaving``: the actuator has fired; the part must be gone from the next frames.  When it is,
  back to ``empty``.

Faults (contracts, "Faults"): a camera error is retried :data:`CAMERA_RETRIES` times before it
latches; a stuck part (present longer than ``sorter.stuck_after_s``), an actuator error, a model
error, or a decision log that cannot write latch at once.  Latched, the sorter is in its safe
state: it takes no frames and fires nothing.  Each fault is an incident in the store (so it
survives a restart and shows on the page) and stays until :meth:`Sorter.acknowledge`.

Threads: :meth:`start` runs the loop as a one-slot pipeline (:mod:`classify.sort_pipeline`):
a front thread grabs each frame, runs the presence test and the phases above and, for a part
due to be sorted, crops and preprocesses it (:meth:`_look`), while the back thread (``sorter``)
runs the model on the previous part, chooses its bin, fires and logs (:meth:`_sort`).  The
front is never more than one part ahead, so decisions keep their frames' order; the back
checks the stop flag and the latched fault before it takes a part and again right before it
fires, so a halt or a fault fires nothing, even for a part already prepared.  Tests drive the
same two halves without threads, one after the other, through :meth:`step` and
:meth:`run_parts`.  :meth:`set_classifier` swaps the model while it runs; each decision is made
and logged with one consistent (classifier, model id) pair.

A simulated camera (:class:`classify.sorter_types.DropTaggedCamera`) tells which drop each
frame shows; the decision records that ``drop_id``, so tests and benchmarks join decisions to
the simulator's drop log.  The sorter itself never knows what a part really is.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

import numpy as np

from capture.store.records import utc_now
from capture.store.sorting import DecisionRecord
from capture.vision.colour import colour_matrix_from_reference
from classify.decision_log import DecisionLog
from classify.preprocess import crop_square, square_region
from classify.presence import PresenceDetector, median_frame
from classify.runtime import Prediction
from classify.sort_pipeline import FrontThread, OneSlot
from classify.sorter_rules import SorterRules
from classify.sorter_types import (
    Box,
    DropTaggedCamera,
    FrameClassifier,
    LoopClock,
    PreparingClassifier,
    PreviewCamera,
    SortActuator,
    SorterStore,
)
from classify.sorter_view import RECENT_DECISIONS, SeenFrame
from rig.camera import check_frame
from rig.config import Settings
from rig.errors import CameraError, FaultLatched, RigError, RunStateError

CAMERA_RETRIES = 3
CAMERA_RETRY_DELAY_S = 0.05
REFERENCE_FRAMES = 5
TOP_K = 3
#: Incident kinds the sorter latches on; ``sorter_camera_retry`` is recorded but not latched.
FAULT_KINDS = ("camera", "stuck", "actuator", "model", "log", "internal")
RETRY_KIND = "sorter_camera_retry"
NO_MODEL = (
    "no model is active, so every part would go to review: activate a model on the Models "
    'page, or choose "collect for review" to sort every part into the review bin on purpose'
)


@dataclass(frozen=True)
class SortDecision:
    """What the sorter did with one part."""

    label: str | None
    confidence: float
    top_k: list[tuple[str, float]]
    bin: int
    reason: str
    model_id: str | None
    bbox: tuple[int, int, int, int]
    latency_ms: float
    at: str
    #: The simulated feeder's drop this frame showed (None on a real camera): the key a test
    #: joins on to the simulator's drop log.
    drop_id: str | None = None
    #: The rule that decided (classify.decide): no_model, open_set, margin, confidence, ...
    rule: str = "mapped"
    open_set_score: float | None = None
    #: The sorting rule that picked the bin or sent the part to review (classify.rules).
    fired: str | None = None


@dataclass(frozen=True)
class SortJob:
    """A part due to be sorted, as the front half hands it to the back half.

    ``prepared`` is the model's input, made by ``classifier`` (the model active when the frame
    was looked at); the back half uses it only if that model is still the active one.
    ``error`` is why preparing failed (the back half latches a model fault in order).
    """

    frame: np.ndarray
    bbox: Box
    t_in: float
    drop_id: str | None
    classifier: FrameClassifier | None = None
    prepared: np.ndarray | None = None
    error: Exception | None = None
    #: The part's measured sizes when a sorting rule measures (classify.sorter_rules).
    sizes: dict[str, float | None] | None = None
    #: How that measurement went (``measured``, ``moving``, ...): whether another pass may help.
    size_status: str | None = None


class Sorter:
    """The sorting loop over ``camera`` (its preview stream), ``actuator`` and ``store``.

    ``clock`` (a :class:`~rig.sim.clock.SimClock`) times the loop in simulation.
    ``pipelined``: whether the running loop prepares the next part on a front thread while the
    model runs (:mod:`classify.sort_pipeline`); None (the default) does so only when a core is
    left over beside the model's ``sorter.num_threads`` (:func:`core_to_spare`).
    """

    def __init__(
        self,
        camera: PreviewCamera,
        actuator: SortActuator,
        store: SorterStore,
        settings: Settings,
        clock: LoopClock | None = None,
        *,
        pipelined: bool | None = None,
    ) -> None:
        self.camera = camera
        self.pipelined = core_to_spare(settings) if pipelined is None else bool(pipelined)
        self._tagged = isinstance(camera, DropTaggedCamera)
        self.actuator = actuator
        self.store = store
        self.settings = settings
        self.cfg = settings.sorter
        self._now: Callable[[], float] = clock.now if clock is not None else time.monotonic
        self._sleep: Callable[[float], None] = clock.sleep if clock is not None else time.sleep
        self._lock = threading.RLock()
        self._model_lock = threading.Lock()
        self._classifier: FrameClassifier | None = None
        self._model_id: str | None = None
        self._presence: PresenceDetector | None = None
        self.sort_rules = SorterRules(settings)
        self.colour_matrix: list[list[float]] | None = None
        self._log = DecisionLog(store)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._slot: OneSlot[SortJob] = OneSlot()
        #: When the back took its current part (None: idle), and its moving average per part.
        self._back_since: float | None = None
        self._back_s = 0.0
        self._halted = False
        self._phase = "empty"
        self._since = 0.0
        self._still = 0
        self._decided = 0
        self._collect_for_review = False
        self.counts: dict[str, Any] = {
            "frames": 0,
            "decisions": 0,
            "cleared": 0,
            "review": 0,
            "by_bin": {},
            "by_rule": {},
            "camera_errors": 0,
            "faults": 0,
        }
        self.last_decision: SortDecision | None = None
        #: The last frame looked at, and the last decisions with their frames (feeder view).
        self.seen: SeenFrame | None = None
        self.recent: deque[SeenFrame] = deque(maxlen=RECENT_DECISIONS)
        self.incident: dict[str, Any] | None = self._latched_incident()

    # --- the model -------------------------------------------------------------------------------

    def set_classifier(self, classifier: FrameClassifier | None, model_id: str | None) -> None:
        """Swap the model (None: no model, every part goes to review); safe while running."""
        with self._model_lock:
            self._classifier, self._model_id = classifier, model_id

    @property
    def model_id(self) -> str | None:
        with self._model_lock:
            return self._model_id

    def _classifier_missing(self) -> bool:
        with self._model_lock:
            return self._classifier is None

    # --- the reference ---------------------------------------------------------------------------

    def take_reference(self, frames: int = REFERENCE_FRAMES) -> None:
        """Capture the empty platform (median of a few frames) and its colour correction.

        The platform must be empty: whatever is on it becomes part of the background.
        """
        shots = [check_frame(self.camera.preview(), "reference frame") for _ in range(frames)]
        reference = median_frame(shots)
        with self._lock:
            self._presence = PresenceDetector(reference, self.cfg.presence_threshold)
            matrix = colour_matrix_from_reference(reference)
            self.colour_matrix = None if matrix is None else np.asarray(matrix).tolist()
            self._phase = "empty"
        self.sort_rules.take_reference(self.camera)

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        if self.incident is not None:
            return "faulted"
        thread = self._thread
        return "running" if thread is not None and thread.is_alive() else "stopped"

    @property
    def collect_for_review(self) -> bool:
        """Started on purpose without a model: every part goes to the review bin (banner)."""
        return self._collect_for_review

    def start(self, *, collect_for_review: bool = False) -> None:
        """Run the loop in a thread (taking the reference first if there is none).

        Refused (RunStateError) without a model unless ``collect_for_review`` says every part
        may go to review, and (FaultLatched) while the sorter's or the rig's fault is latched.
        """
        with self._lock:
            if self.incident is not None:
                raise FaultLatched(self.incident["message"])
            if self._thread is not None and self._thread.is_alive():
                return
            rig_fault = self.store.active_fault()
            if rig_fault:
                raise FaultLatched(str(rig_fault.get("reason") or "rig fault"))
            if self._classifier_missing() and not collect_for_review:
                raise RunStateError(NO_MODEL)
            with self._model_lock:
                self.sort_rules.check(self._classifier)
            self._collect_for_review = bool(collect_for_review)
            if self._presence is None:
                self.take_reference()
            # NOTE: what the loop knew about a part (its phase, arrival time, stillness) is
            # stale after a stop; kept, a restart more than stuck_after_s later latched a
            # "stuck part" at once.  Whatever is on the platform now is a new part.
            self._phase, self._since, self._still = "empty", self._now(), 0
            self._presence.forget()  # type: ignore[union-attr]
            self._stop.clear()
            self._halted = False
            self._thread = threading.Thread(target=self._run, name="sorter", daemon=True)
            self._thread.start()

    def halt(self) -> None:
        """Ask the loop to stop and fire nothing more, without waiting (the e-stop calls this
        on the web server's event loop); :meth:`stop` then waits for it."""
        self._stop.set()
        self._halted = True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop after the current frame and commit every logged decision.

        A part already prepared but not yet classified is dropped, never fired at.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._slot.clear()
        self._log.flush()

    def close(self) -> None:
        """Stop, commit the log and stop its writer; the camera and actuator stay the caller's."""
        self.stop()
        self._log.close()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every decision so far is durably in the store."""
        return self._log.flush(timeout)

    def _run(self) -> None:
        """The back half: take each prepared part in order (or prepare it, when the front is
        not at work on a frame), classify, fire and log it."""
        self._slot.clear()
        front = FrontThread(
            self._produce, self._slot, self._stop, self._faulted, back_left_s=self._back_left_s
        )
        if self.pipelined:
            front.start()
        try:
            while not self._stop.is_set():
                job = front.next_item()
                # NOTE: a part prepared before a halt or a fault is dropped here, unfired.
                if job is None or self._stop.is_set() or self.incident is not None:
                    continue
                self._back_since = since = time.perf_counter()
                try:
                    self._sort(job)
                except Exception as exc:
                    self._latch("internal", f"the sorter stopped on an unexpected error: {exc!r}")
                took = time.perf_counter() - since
                self._back_s = took if self._back_s <= 0.0 else 0.2 * took + 0.8 * self._back_s
                self._back_since = None
        finally:
            front.join()
            self._slot.clear()

    def _back_left_s(self) -> float:
        """How much longer the back is expected to work on its current part (0 when idle)."""
        since = self._back_since
        if since is None:
            return 0.0
        return max(0.0, since + self._back_s - time.perf_counter())

    def _faulted(self) -> bool:
        return self.incident is not None

    def _produce(self) -> SortJob | None:
        """The front half, on its own thread: the next frame, looked at (never raises)."""
        try:
            taken = self._frame()
            return None if taken is None else self._look(*taken)
        except Exception as exc:
            self._latch("internal", f"the sorter stopped on an unexpected error: {exc!r}")
            return None

    # --- stepping --------------------------------------------------------------------------------

    def step(self) -> SortDecision | None:
        """Take one frame and act on it; None unless a part was sorted.  Never raises: an
        unexpected error latches an ``internal`` fault (fail safe, nothing fires)."""
        if self.incident is not None:
            return None
        try:
            taken = self._frame()
            return None if taken is None else self.process(*taken)
        except Exception as exc:
            self._latch("internal", f"the sorter stopped on an unexpected error: {exc!r}")
            return None

    def run_parts(self, n: int, max_frames: int | None = None) -> list[SortDecision]:
        """Step until ``n`` parts are sorted, a fault latches, or ``max_frames`` frames pass."""
        if self._presence is None and self.incident is None:
            self.take_reference()
        limit = max_frames if max_frames is not None else 500 * max(1, n) + 100
        out: list[SortDecision] = []
        for _ in range(limit):
            if len(out) >= n or self.incident is not None:
                break
            decision = self.step()
            if decision is not None:
                out.append(decision)
        return out

    def _grab(self) -> tuple[np.ndarray, str | None]:
        """One preview frame and, from a simulated camera, the drop it shows."""
        camera = self.camera
        if self._tagged and isinstance(camera, DropTaggedCamera):
            image, drop_id = camera.preview_tagged()
        else:
            image, drop_id = camera.preview(), None
        return check_frame(image, "sorter frame"), drop_id

    def _frame(self) -> tuple[np.ndarray, str | None] | None:
        """The next preview frame and its drop id; camera errors are retried, then latched."""
        errors: list[str] = []
        for _ in range(CAMERA_RETRIES + 1):
            try:
                frame = self._grab()
            except (CameraError, OSError) as exc:
                errors.append(str(exc))
                self.counts["camera_errors"] += 1
                if self._presence is not None:
                    self._presence.forget()
                self._sleep(CAMERA_RETRY_DELAY_S)
                continue
            if errors:
                self._record_retry(errors)
            return frame
        self._latch(
            "camera",
            f"the camera failed {len(errors)} times in a row ({errors[-1]}); check the camera"
            " and its cable, then acknowledge",
        )
        return None

    def process(self, frame: np.ndarray, drop_id: str | None = None) -> SortDecision | None:
        """Advance the loop by one frame, both halves in turn (tests and the serial bench)."""
        job = self._look(frame, drop_id)
        return None if job is None else self._sort(job)

    def _look(self, frame: np.ndarray, drop_id: str | None = None) -> SortJob | None:
        """The front half: presence and phases; for a part due to be sorted, its prepared crop.

        The part counts as ``leaving`` from here on: the frames the front looks at while the
        back classifies it must not sort it again.  Should it not be fired at (a halt, a fault),
        the stop or the fault resets the phase anyway.
        """
        t_in = time.perf_counter()
        if self._log.error is not None:
            self._latch("log", f"decisions cannot be logged: {self._log.error}")
            return None
        if self._presence is None:
            raise RigError("the sorter has no empty reference; call take_reference() first")
        self.counts["frames"] += 1
        now = self._now()
        seen = self._presence.look(frame)
        self.seen = SeenFrame(self.counts["frames"], frame, seen.bbox if seen.present else None)
        if self._phase == "empty":
            if not seen.present:
                return None
            self._phase, self._since, self._still = "arriving", now, 1
        elif self._phase == "arriving":
            if not seen.present:
                self._phase = "empty"  # NOTE: it fell off before settling; nothing to sort.
                return None
            self._still = self._still + 1 if seen.still else 1
        else:  # leaving
            if not seen.present:
                self._phase = "empty"
                self.counts["cleared"] += 1
                return None
            self._check_stuck(now)
            return None
        if self._still >= self.cfg.stable_frames and seen.bbox is not None:
            self._phase = "leaving"
            job = self._job(frame, seen.bbox, t_in, drop_id)
            size = self.sort_rules.measure_part(self.camera)
            if size is None:
                return job
            return replace(job, sizes=size.sizes, size_status=size.status)
        self._check_stuck(now)
        return None

    def _job(self, frame: np.ndarray, bbox: Box, t_in: float, drop_id: str | None) -> SortJob:
        """The part's job, its crop prepared for the active model when the model allows."""
        with self._model_lock:
            classifier = self._classifier
        if not isinstance(classifier, PreparingClassifier):
            return SortJob(frame, bbox, t_in, drop_id, classifier)
        try:
            prepared = classifier.prepare(frame, bbox, self.colour_matrix)
        except Exception as exc:
            return SortJob(frame, bbox, t_in, drop_id, classifier, error=exc)
        return SortJob(frame, bbox, t_in, drop_id, classifier, prepared)

    def _check_stuck(self, now: float) -> None:
        if now - self._since > self.cfg.stuck_after_s:
            self._latch(
                "stuck",
                f"a part has been on the platform for {now - self._since:.1f} s (limit"
                f" sorter.stuck_after_s = {self.cfg.stuck_after_s:g} s); remove it by hand,"
                " then acknowledge",
            )

    def _predict(self, classifier: FrameClassifier, job: SortJob) -> Prediction:
        """The model's answer for the job, from its prepared crop when that fits the model."""
        if job.classifier is classifier:
            if job.error is not None:
                raise job.error
            if job.prepared is not None:
                # NOTE: only a PreparingClassifier prepares a crop (_job); no isinstance here,
                # on the path between the model's answer and the actuator.
                return cast(PreparingClassifier, classifier).predict_prepared(job.prepared, TOP_K)
        return classifier.predict(
            job.frame, bbox=job.bbox, colour_matrix=self.colour_matrix, top_k=TOP_K
        )

    def _sort(self, job: SortJob) -> SortDecision | None:
        """The back half: classify, choose the bin, fire, and hand the decision to the log."""
        frame, bbox, t_in = job.frame, job.bbox, job.t_in
        with self._model_lock:
            classifier, model_id = self._classifier, self._model_id
        prediction = None
        if classifier is not None:
            try:
                prediction = self._predict(classifier, job)
            except Exception as exc:
                self._latch(
                    "model",
                    f"model {model_id} failed on a frame ({exc}); activate another model or"
                    " roll back, then acknowledge",
                )
                return None
        label = None if prediction is None else prediction.label
        confidence = 0.0 if prediction is None else float(prediction.confidence)
        choice = self.sort_rules.choose(prediction, job.sizes, job.size_status)
        if self._halted or self.incident is not None:
            # NOTE: an e-stop is stopping the loop, or the front half latched a fault while
            # the model ran: push nothing, log nothing.
            return None
        try:
            self.actuator.fire(choice.bin)
        except Exception as exc:
            self._latch(
                "actuator",
                f"firing bin {choice.bin} for {label or 'a part'} failed ({exc}); check the"
                " actuator, clear the platform, then acknowledge",
            )
            return None
        latency_ms = (time.perf_counter() - t_in) * 1000.0
        top_k = [] if prediction is None else [(str(k), float(v)) for k, v in prediction.top_k]
        score = None if prediction is None else getattr(prediction, "open_set_score", None)
        decision = SortDecision(
            label, confidence, top_k, choice.bin, choice.reason, model_id, bbox,
            latency_ms, utc_now(), job.drop_id, choice.rule, score, choice.fired,
        )  # fmt: skip
        self.sort_rules.record(choice, label, job.sizes)
        self._log_decision(decision, frame, choice.review)
        return decision

    def _log_decision(self, d: SortDecision, frame: np.ndarray, review: bool) -> None:
        self._decided += 1
        every = self.cfg.sample_every
        keep = review or (every > 0 and self._decided % every == 0)
        crop = crop_box = None
        if keep:
            h, w = frame.shape[:2]
            region = square_region(d.bbox, w, h)
            crop = crop_square(frame, region).copy()
            crop_box = (d.bbox[0] - region[0], d.bbox[1] - region[1], d.bbox[2], d.bbox[3])
        record = DecisionRecord(
            label=d.label or "unknown",
            confidence=d.confidence,
            bin=d.bin,
            reason=d.reason,
            top_k=d.top_k,
            model_id=d.model_id,
            review=review,
            bbox=d.bbox,
            crop_bbox=crop_box,
            colour_matrix=self.colour_matrix if keep else None,
            drop_id=d.drop_id,
            latency_ms=round(d.latency_ms, 3),
            at=d.at,
        )
        self._log.append(record, crop)
        with self._lock:  # NOTE: status() copies these from another thread.
            counts = self.counts
            counts["decisions"] += 1
            counts["review"] += int(review)
            key = str(d.bin)
            counts["by_bin"][key] = counts["by_bin"].get(key, 0) + 1
            counts["by_rule"][d.rule] = counts["by_rule"].get(d.rule, 0) + 1
            self.last_decision = d
            self.recent.append(SeenFrame(self._decided, frame, d.bbox, d))

    # --- faults ----------------------------------------------------------------------------------

    def _latched_incident(self) -> dict[str, Any] | None:
        """A sorter fault latched before a restart is still latched (it lives in the store)."""
        for row in self.store.list_incidents(unacknowledged=True):
            kind = str(row["kind"])
            if kind.startswith("sorter_") and kind != RETRY_KIND:
                return {"id": row["id"], "kind": kind, "message": row["message"], "at": row["at"]}
        return None

    def _latch(self, kind: str, message: str) -> None:
        """Enter the safe state: fire nothing, take no frames, record the incident."""
        with self._lock:
            if self.incident is not None:
                return
            self.counts["faults"] += 1
            self._stop_moving_parts()
            incident: dict[str, Any] = {
                "id": None,
                "kind": f"sorter_{kind}",
                "message": message,
                "at": utc_now(),
            }
            self.incident = incident
        # NOTE: the fault latches in memory even when the store cannot record it (a full disk
        # is then the store's own error on the page).
        with contextlib.suppress(RigError):
            incident["id"] = self.store.add_incident(f"sorter_{kind}", message)

    def _stop_moving_parts(self) -> None:
        self._phase = "empty"
        if self._presence is not None:
            self._presence.forget()

    def _record_retry(self, errors: list[str]) -> None:
        try:
            incident_id = self.store.add_incident(
                RETRY_KIND,
                f"the camera failed {len(errors)} time(s) and recovered on retry: {errors[0]}",
            )
            self.store.acknowledge_incident(incident_id, "sorter (recovered by retry)")
        except RigError:
            pass

    def acknowledge(self, who: str = "operator") -> bool:
        """Clear the latched fault (the operator has dealt with it); False if none was latched.

        After a stuck part or an actuator error, clear the platform first: whatever is on it
        when the sorter resumes is treated as a new part.
        """
        with self._lock:
            incident = self.incident
            if incident is None:
                return False
            if incident["id"] is not None:
                self.store.acknowledge_incident(incident["id"], who)
            self.incident = None
            self._stop_moving_parts()
            return True

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Everything the Sorter page shows."""
        with self._model_lock:
            classifier, model_id = self._classifier, self._model_id
        with self._lock:
            counts = {
                **self.counts,
                "by_bin": dict(self.counts["by_bin"]),
                "by_rule": dict(self.counts["by_rule"]),
            }
            last = self.last_decision
            incident = None if self.incident is None else dict(self.incident)
        return {
            "state": self.state,
            "phase": self._phase,
            "collect_for_review": self._collect_for_review,
            "model_id": model_id,
            "runtime": getattr(classifier, "runtime", None),
            "open_set": open_set_status(classifier, self.settings),
            "reference": self._presence is not None,
            "colour_corrected": self.colour_matrix is not None,
            "counts": counts,
            "log_backlog": self._log.backlog,
            "logged": self._log.committed,
            "last_decision": None if last is None else asdict(last),
            "incident": incident,
            "rules": self.sort_rules.status(classifier),
        }


def core_to_spare(settings: Settings, cores: int | None = None) -> bool:
    """Whether the machine has a core beside the model's threads for the front thread.

    NOTE: measured on 2 cores with a 2-thread model (bench/sorter.py, docs/sorter.md): there the
    front thread only takes the model's own cores, and the pipelined loop ran slower than the
    serial one; on a Pi 4 or 5 (4 cores, 2 model threads) a core is left for it.
    """
    available = cores if cores is not None else (os.cpu_count() or 1)
    return available > int(settings.sorter.num_threads)


def open_set_status(classifier: Any, settings: Settings) -> dict[str, Any] | None:
    """What the page shows about the model's open-set rule (None: no model)."""
    if classifier is None:
        return None
    rule = getattr(classifier, "open_set", None)
    card = getattr(classifier, "card", None)
    if rule is None:
        why = "the model has no model.json" if card is None else "model.json has no open-set rule"
        return {"enabled": False, "detail": f"no open-set rejection: {why}; retrain to add it"}
    model_threshold = float(rule.threshold)
    configured = settings.sorter.open_set_threshold
    effective = min(model_threshold, configured) if configured > 0 else model_threshold
    return {
        "enabled": True,
        "method": rule.method,
        "score": rule.score_name,
        "model_threshold": model_threshold,
        "threshold": effective,
        "calibrated_on": rule.calibrated_on,
    }
