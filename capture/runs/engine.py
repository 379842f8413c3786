"""The engine thread of a capture run: background segments, operator prompts and the shot loop.

Why separate from :mod:`capture.runs.run`: that module is the state machine the outside world talks
to; this one is what the rig does, step by step, for one session of a run (from a start or a
resume to completion, abort or failure).  A session remembers what it has verified itself (the
installed sheet, the loaded part); after a restart nothing is assumed and the operator is asked
again, which is why resuming "means answering the prompt".

Per shot: command the move, wait for it (the turntable verifies the position), settle, capture,
check the measured angle, hand the frame to the writer thread; the writer encodes and stores
the *previous* frame while the turntable moves to the next angle.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from capture.runs.eta import RunEta
from capture.runs.pipeline import SegmentContext, ShotJob, ShotWriter, utc_now
from capture.runs.references import ReferenceJob, ReferenceWriter
from capture.runs.state import Aborted, RunState
from capture.runs.tools import CaptureTools, matrix_list
from capture.store.records import ShotRecord
from rig.errors import CameraError, MotionError
from rig.sheets import SHEETS

if TYPE_CHECKING:
    from collections.abc import Callable

    from capture.plans.order import ShotSpec
    from capture.plans.schema import Plan
    from capture.runs.eta import ActiveClock
    from capture.runs.pipeline import MeasureFn, PhaseHook
    from capture.runs.ports import RunStore
    from rig.camera_types import Camera, Frame
    from rig.config import Settings
    from rig.rig_types import Rig

log = logging.getLogger("capture.runs.run")

S = RunState
_UNKNOWN = "unknown"


class EngineRun(Protocol):
    """What the engine thread uses of its :class:`capture.runs.run.CaptureRun`.

    Why a Protocol: the run starts the engine and the engine reports back to the run; naming
    the engine's side here keeps the two modules importing one way (run -> engine).
    """

    run_id: int
    store: RunStore
    rig: Rig
    plan: Plan
    settings: Settings | None
    tools: CaptureTools | None
    phase_hook: PhaseHook | None
    sleep: Callable[[float], None]
    active: ActiveClock
    end_state: RunState
    reason: str | None

    def checkpoint(self) -> None: ...

    def ask_operator(self, text: str, action: dict[str, Any]) -> None: ...

    def publish(self, kind: str, **data: Any) -> None: ...

    def update_progress(self, done: int, total: int, eta_s: float | None) -> None: ...

    def finish(self, new: RunState, **fields: Any) -> None: ...


class RunEngine:
    """One session of a run; :meth:`run` is the body of the engine thread."""

    def __init__(self, run: EngineRun) -> None:
        self.run_ = run
        self.rig = run.rig
        self.store = run.store
        self.plan = run.plan
        self.sheet: int | None = None  # verified installed sheet, this session
        #: (label, instance, pose) on the turntable, None (empty) or _UNKNOWN
        self.loaded: tuple[str, str, str] | str | None = _UNKNOWN
        self.segment: SegmentContext | None = None
        self.light: float | None = None
        self.writer: ShotWriter | None = None
        self.references = ReferenceWriter(self.store)
        self.done = 0
        self.session_done = 0
        self.total = 0
        self.tools: CaptureTools = run.tools or CaptureTools.default()
        self.eta = RunEta(self.rig.turntable, float(self.plan.settle_s))

    # --- the session -----------------------------------------------------------------------------

    def run(self) -> None:
        run = self.run_
        try:
            shots = self.tools.expand(self.plan)
            self.total = len(shots)
            done = set(self.store.done_shot_indices(run.run_id))
            self.done = len(done & {s.index for s in shots})
            if not done:
                # NOTE: a fresh run starts with an empty turntable; after a crash the part may
                # still be on it, so the reference step asks for it to be removed.
                self.loaded = None
            todo = [s for s in shots if s.index not in done]
            self.eta.plan(todo)
            self._register(todo)
            self._progress()
            self.writer = self._make_writer().start()
            for spec in todo:
                run.checkpoint()
                self._shoot(spec)
            error = self.writer.close()
            if error is not None:
                raise error
            self._lights_off()
            missing = {s.index for s in shots} - set(self.store.done_shot_indices(run.run_id))
            if missing:
                raise RuntimeError(f"shots {sorted(missing)[:10]} are not in the store")
            run.finish(S.COMPLETED)
        except Aborted:
            self._drain()
            self._lights_off()
            run.finish(run.end_state, reason=run.reason or "aborted by the operator")
        except BaseException as exc:
            if self.rig.emergency_stopped:
                self._emergency_stopped(exc)
            else:
                self._fail(exc)

    def _register(self, shots: list[ShotSpec]) -> None:
        """Make sure the store knows the parts, instances and sheets the shots refer to."""
        # NOTE: a part already in the catalogue keeps its name and attributes; a capture run
        # only adds what is missing (it used to reset them).
        known = {p["label"] for p in self.store.list_parts()}
        for label in dict.fromkeys(spec.label for spec in shots):
            if label not in known:
                self.store.upsert_part(label, name=label)
        for instance, label in dict.fromkeys((s.instance, s.label) for s in shots):
            self.store.upsert_instance(instance, label, source="capture")
        for sheet in dict.fromkeys(int(s.background) for s in shots):
            spec = SHEETS.get(sheet)
            if spec is None:
                self.store.upsert_background(sheet, f"sheet {sheet}")
            else:
                self.store.upsert_background(sheet, spec.name, spec.kind)

    def _make_writer(self) -> ShotWriter:
        image = self.plan.image
        fmt = image.format.lower()
        settings = self.run_.settings
        default_q = settings.data.jpeg_quality if settings is not None else 92
        quality = int(image.quality or default_q)
        thumb = settings.data.thumbnail_px if settings is not None else 256
        return ShotWriter(
            self.store,
            image_format="png" if fmt == "png" else "jpeg",
            jpeg_quality=quality,
            thumbnail_px=thumb,
            mask_fn=self.tools.mask_and_box,
            record_factory=self._record,
            on_stored=self._stored,
            phase_hook=self.run_.phase_hook,
            measure_fn=self._measurer(),
        )

    def _measurer(self) -> MeasureFn | None:
        """The per-shot measurer for this data folder (its stored lens calibration), if any."""
        return self.tools.measurer(self.store.data_dir)

    # --- one shot --------------------------------------------------------------------------------

    def _shoot(self, spec: ShotSpec) -> None:
        shot_span = self.run_.active.span()
        segment_s = 0.0
        if self.sheet != spec.background or self.segment is None:
            segment_span = self.run_.active.span()
            self._background_segment(spec)
            segment_s = segment_span()
            self.eta.observe_segment(segment_s)
        key = (spec.label, spec.instance, spec.pose)
        if self.loaded != key:
            self._place_part(spec)
        self._set_light(spec.light)
        tt = self.rig.turntable
        tt.rotate_to(float(spec.angle_deg))
        measured = float(tt.wait())
        self._check_angle(spec.angle_deg, measured)
        settle = float(self.plan.settle_s)
        if settle > 0:
            self.run_.sleep(settle)
        frame = self._camera().capture()
        assert self.writer is not None and self.segment is not None
        # NOTE: the segment's reference is durable and recorded before its first shot goes to
        # the writer, so no shot row can name a reference that is not on disk.
        self.references.wait()
        self.run_.publish(
            "shot",
            index=spec.index,
            n=self.done + 1,
            label=spec.label,
            instance=spec.instance,
            pose=spec.pose,
            background=spec.background,
            angle=float(spec.angle_deg),
            light=spec.light,
        )
        self.writer.put(
            ShotJob(
                run_id=self.run_.run_id,
                spec=spec,
                image=frame.image,
                frame_meta=frame_meta(frame),
                angle_measured=measured,
                segment=self.segment,
                captured_at=utc_now(),
            )
        )
        # NOTE: measured after the hand-over, so a writer that falls behind (put blocks) shows
        # in the per-shot cost; operator waits and pauses are not in the span.
        self.eta.observe_shot(shot_span() - segment_s)
        self._progress()

    def _camera(self) -> Camera:
        camera = self.rig.camera
        if camera is None:
            raise CameraError("the rig was opened without its camera; a capture run needs it")
        return camera

    def _check_angle(self, commanded: float, measured: float) -> None:
        # NOTE: absolute targets are rounded to whole steps, so half a step is not an error.
        tol = 0.06
        settings = self.run_.settings
        if settings is not None:
            tt = settings.turntable
            tol = max(tt.position_tolerance_deg, 0.5 / tt.steps_per_degree)
        diff = abs((measured - commanded + 180.0) % 360.0 - 180.0)
        if diff > tol + 1e-9:
            raise MotionError(
                f"the turntable is at {measured:.3f} deg, not at the commanded {commanded:.3f} deg;"
                " check the belt or coupling, then resume the run"
            )

    def _set_light(self, level: float) -> None:
        if self.light != level:
            self.rig.lights.set(float(level))
            self.light = level

    # --- operator steps --------------------------------------------------------------------------

    def _background_segment(self, spec: ShotSpec) -> None:
        """Install and verify the sheet, lock the exposure, take or reuse the reference."""
        detect_sheet = self.tools.detect_sheet
        want = int(spec.background)
        action = {"kind": "install_background", "sheet": want}
        text = prompt_text(spec, "install_background") or (
            f"Install background sheet {want} ({sheet_name(want)}) on the rig, then press Continue."
        )
        self.run_.ask_operator(text, action)
        self._set_light(spec.light)
        while True:
            got = detect_sheet(self._camera().capture().image)
            if got == want:
                break
            found = "no sheet marker is visible" if got is None else f"sheet {got} is installed"
            self.run_.ask_operator(
                f"Wrong background: {found}, but this segment needs sheet {want}"
                f" ({sheet_name(want)}). Install sheet {want} with its marker visible, then"
                " press Continue.",
                action,
            )
        self.sheet = want
        camera = self._camera()
        camera.unlock()
        exposure = camera.meter_and_lock().as_dict()
        self.store.set_run_exposure(self.run_.run_id, exposure)
        self.references.wait()  # NOTE: a previous segment's, so the store is asked the truth
        stored = self._stored_reference(want)
        if stored is not None:
            reference, matrix = stored
        else:
            reference, matrix = self._take_reference(want, exposure)
        prepared = self.tools.prepare_reference(reference)
        self.segment = SegmentContext(want, reference, matrix, exposure, prepared)

    def _take_reference(
        self, sheet: int, exposure: dict[str, Any]
    ) -> tuple[np.ndarray, list[list[float]] | None]:
        if self.loaded is not None:
            self.run_.ask_operator(
                "Remove the part from the turntable so the empty reference frame can be taken,"
                " then press Continue.",
                {"kind": "remove_part"},
            )
            self.loaded = None
        image = self._camera().capture().image
        matrix = matrix_list(self.tools.colour_matrix(image))
        # NOTE: the PNG encode and durable write (seconds on a Pi) run while the operator
        # places the part; see capture.runs.references.
        self.references.start(ReferenceJob(self.run_.run_id, sheet, image, matrix, exposure))
        return image, matrix

    def _stored_reference(self, sheet: int) -> tuple[np.ndarray, list[list[float]] | None] | None:
        """This run's reference for ``sheet`` from an earlier session, if the store has one."""
        ref = self.store.reference_for(self.run_.run_id, sheet)
        if not ref:
            return None
        bgr = cv2.imread(str(self.store.data_dir / ref["path"]), cv2.IMREAD_COLOR)
        if bgr is None:
            return None
        matrix = ref.get("colour_matrix")
        if isinstance(matrix, str):
            matrix = json.loads(matrix)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), matrix

    def _place_part(self, spec: ShotSpec) -> None:
        action = {
            "kind": "place_part",
            "label": spec.label,
            "instance": spec.instance,
            "pose": spec.pose,
        }
        text = prompt_text(spec, "place_part") or (
            f"Place part {spec.label} (instance {spec.instance}) on the turntable"
            f"{_pose_words(self.plan, spec.pose)}, then press Continue."
        )
        self.run_.ask_operator(text, action)
        self.loaded = (spec.label, spec.instance, spec.pose)

    # --- writer callbacks ------------------------------------------------------------------------

    def _record(
        self,
        *,
        job: ShotJob,
        path: str,
        sha256: str,
        size: int,
        width: int,
        height: int,
        format: str,
        mask_path: str,
        bbox: tuple[int, int, int, int] | None,
        thumb_path: str,
    ) -> ShotRecord:
        spec, seg, meta = job.spec, job.segment, job.frame_meta
        x, y, w, h = bbox if bbox is not None else (None, None, None, None)
        return ShotRecord(
            run_id=job.run_id,
            shot_index=int(spec.index),
            label=spec.label,
            instance_id=spec.instance,
            pose=spec.pose,
            background_id=int(spec.background),
            angle_cmd=float(spec.angle_deg),
            angle_measured=job.angle_measured,
            light_level=float(spec.light),
            exposure_us=meta.get("exposure_us", seg.exposure.get("exposure_us")),
            analogue_gain=meta.get("analogue_gain", seg.exposure.get("analogue_gain")),
            colour_gains=meta.get("colour_gains", seg.exposure.get("colour_gains")),
            colour_matrix=seg.colour_matrix,
            captured_at=job.captured_at,
            source="capture",
            path=path,
            sha256=sha256,
            size=size,
            width=width,
            height=height,
            format=format,
            mask_path=mask_path,
            bbox_x=x,
            bbox_y=y,
            bbox_w=w,
            bbox_h=h,
            thumb_path=thumb_path,
        )

    def _stored(self, job: ShotJob, shot_id: int) -> None:
        self.done += 1
        self.session_done += 1
        self._progress()
        self.run_.publish("stored", index=int(job.spec.index), shot_id=shot_id)

    def _progress(self) -> None:
        self.run_.update_progress(self.done, self.total, self.eta.remaining_s())

    # --- ending ----------------------------------------------------------------------------------

    def _drain(self) -> None:
        try:
            self.references.wait()
        except Exception:
            log.exception("run %s: the segment's reference was not stored", self.run_.run_id)
        if self.writer is not None:
            self.writer.close()

    def _emergency_stopped(self, exc: BaseException) -> None:
        """The e-stop cut a command short: an ordinary stop, not a failure (no traceback).

        The run ends ``interrupted``, resumable by an explicit Resume once the fault is
        cleared and zero is re-established; the e-stop itself stopped the rig.
        """
        run = self.run_
        log.warning("run %s: emergency stop (%s: %s)", run.run_id, type(exc).__name__, exc)
        self._drain()
        try:
            run.finish(S.INTERRUPTED, reason="emergency stop")
        except Exception:
            log.exception("run %s: could not record the emergency stop", run.run_id)

    def _lights_off(self) -> None:
        if self.rig.emergency_stopped:
            return  # NOTE: the halted board switched its outputs off; it refuses commands
        try:
            self.rig.lights.set(0.0)
        except Exception:
            log.exception("run %s: could not turn the lights off", self.run_.run_id)

    def _fail(self, exc: BaseException) -> None:
        """Fail safe: keep what was captured, stop the rig, record why, set the run failed."""
        run = self.run_
        # NOTE: frames already captured are still written unless the writer itself failed
        # (then it drops what it holds: the same fault would hit them).
        self._drain()
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        log.error("run %s failed: %s", run.run_id, reason, exc_info=exc)
        for step in (
            lambda: self.rig.safe_stop(reason),
            lambda: self.store.latch_fault(reason),
            lambda: self.store.add_incident("capture_failed", reason, run_id=run.run_id),
        ):
            try:
                step()
            except Exception:
                log.exception("run %s: fail-safe step failed", run.run_id)
        try:
            run.finish(S.FAILED, reason=reason)
        except Exception:
            log.exception("run %s: could not record the failure", run.run_id)


def sheet_name(sheet: int) -> str:
    """The printed sheet's name for a prompt; an id the catalogue lacks is named by its id."""
    spec = SHEETS.get(sheet)
    return spec.name if spec is not None else f"sheet {sheet}"


def prompt_text(spec: ShotSpec, kind: str) -> str | None:
    """The plan's own wording for an action of ``kind`` before this shot, if it has one."""
    actions = list(spec.actions)
    if spec.prompt_before is not None and spec.prompt_before not in actions:
        actions.insert(0, spec.prompt_before)
    for action in actions:
        if action.kind == kind and action.text:
            return action.text
    return None


def _pose_words(plan: Plan, pose: str) -> str:
    for p in plan.poses:
        if p.name == pose and p.prompt:
            return f" ({p.prompt})"
    return f" ({pose})" if pose else ""


def frame_meta(frame: Frame) -> dict[str, Any]:
    """The exposure a frame was taken with, JSON-ready, for its shot row."""
    return {
        "exposure_us": int(frame.exposure_us),
        "analogue_gain": float(frame.analogue_gain),
        "colour_gains": [float(g) for g in frame.colour_gains],
    }
