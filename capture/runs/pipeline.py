"""The shot writer: encodes, stores, masks and records captured frames off the critical path.

Why a thread with a bounded queue: a 12 MP JPEG takes a good part of a second of CPU to encode,
hash, mask and fsync, and the turntable needs about as long to move to the next angle.  Doing the
writing while the motor moves keeps the rig's time per shot at the physical floor (move + settle
+ exposure).  The queue holds at most two frames, so a slow disk slows the capture down instead of
filling the memory with 36 MB frames.

The order for each shot is the crash-safety contract: the image, its mask and its thumbnail are
made durable first (the store writes temporary files, syncs them, renames them and syncs their
folders), and only then is the shot's row committed, in one transaction; the store's durable
batched path (:class:`capture.store.shot_batches.ShotBatches`) does all of it, and
bench/store.py measures that same path.  File names are deterministic per run and shot index,
so a shot re-captured after a crash overwrites its own leftovers instead of leaving orphans.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from capture.runs.ports import ShotSink, ShotStream
from capture.store.records import ShotRecord
from capture.store.shot_batches import ShotFiles
from rig.errors import StoreError

if TYPE_CHECKING:
    from capture.vision.masks import MaskReference

log = logging.getLogger("capture.runs.run")

#: Called with (phase, shot index) at "encode", "encoded", "written", "recorded".  Tests use it
#: to land a crash in a chosen phase; it must not raise.
PhaseHook = Callable[[str, int], None]
#: (frame, reference, mask) -> (status, sizes in mm or None): see
#: capture.vision.measure.ShotMeasurer.
MeasureFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[str, dict | None]]


@dataclass
class SegmentContext:
    """What every shot of one background segment shares: the reference and the locked exposure."""

    background: int
    reference: np.ndarray  # RGB empty-turntable frame, for the masks and the measurer
    colour_matrix: list[list[float]] | None
    exposure: dict[str, Any]
    #: The reference readied once for the mask function (capture.vision.masks.prepare_reference)
    prepared: MaskReference | None = None

    @property
    def mask_reference(self) -> MaskReference:
        """What the mask function is given: the prepared reference, else the frame itself."""
        return self.reference if self.prepared is None else self.prepared


@dataclass
class ShotJob:
    """A captured frame on its way to the store."""

    run_id: int
    spec: Any  # capture.plans.order.ShotSpec
    image: np.ndarray  # RGB uint8 HxWx3, as captured
    frame_meta: dict[str, Any]
    angle_measured: float
    segment: SegmentContext
    captured_at: str


def encode_image(image: np.ndarray, fmt: str, quality: int) -> bytes:
    """Encode an RGB frame as JPEG (``quality`` 1-100) or PNG; the stored file is as captured."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise StoreError(f"could not encode a {image.shape[1]}x{image.shape[0]} frame as {fmt}")
    return buf.tobytes()


def encode_mask(mask: np.ndarray) -> bytes:
    # NOTE: a 1-bit PNG encodes a 12 MP mask about 7x faster than an 8-bit one, and any reader
    # still decodes it to 0/255 greyscale.
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_BILEVEL, 1]
    ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255, params)
    if not ok:
        raise StoreError("could not encode a mask as PNG")
    return buf.tobytes()


def make_thumbnail(image: np.ndarray, longest_px: int) -> bytes:
    h, w = image.shape[:2]
    step = max(1, max(h, w) // (longest_px * 2))
    if step > 1:
        # NOTE: subsample first; area-averaging 12 MP for a 256 px thumbnail costs 40 ms.
        image = image[::step, ::step]
        h, w = image.shape[:2]
    scale = min(1.0, longest_px / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return encode_image(small, "jpeg", 85)


def shot_paths(run_id: int, index: int, fmt: str) -> tuple[str, str, str]:
    """Image, mask and thumbnail paths (relative to the data dir) for one shot."""
    ext = "png" if fmt == "png" else "jpg"
    stem = f"{run_id}/{index:06d}"
    return f"images/{stem}.{ext}", f"masks/{stem}.png", f"thumbs/{stem}.jpg"


def _lower_priority(niceness: int = 10) -> None:
    """Run this thread at a lower CPU priority than the capture loop (Linux, best effort).

    Why: on a 2- or 4-core Pi the writer's encode and mask work competes with the camera and
    the serial link; the writer has a whole move's time to finish, the capture has none to
    spare.  Lowering only this thread (by its native id) keeps the shot timing at the floor.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):
        log.debug("could not lower the writer thread's priority")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class _Prepared:
    """A shot encoded and measured, on its way through the store's batches."""

    job: ShotJob
    files: ShotFiles
    measured: tuple[str, dict[str, Any] | None] | None


class ShotWriter:
    """A thread that turns :class:`ShotJob` objects into durable files and committed shot rows.

    ``put`` blocks while two frames are waiting (back-pressure) and raises the writer's error once
    it has failed, so the engine stops capturing at the next shot.  ``close`` drains what is
    queued and returns the error, if any.

    Each shot goes through the store's one durable batched path (``store.shot_batches()``):
    its three files are written, synced and renamed; when another frame is already waiting the
    writer goes on to it, and that shot's sync also makes the previous shot's names durable
    before its row commits (one file-system sync per shot instead of two); when none is waiting
    the writer finishes the shot at once (folder sync, then the row).
    """

    def __init__(
        self,
        store: ShotSink,
        *,
        image_format: str,
        jpeg_quality: int,
        thumbnail_px: int,
        mask_fn: Callable[[np.ndarray, MaskReference], tuple[np.ndarray, Any]],
        record_factory: Callable[..., ShotRecord],
        on_stored: Callable[[ShotJob, int], None] | None = None,
        phase_hook: PhaseHook | None = None,
        queue_size: int = 2,
        measure_fn: MeasureFn | None = None,
    ) -> None:
        self.store = store
        self.image_format = image_format
        self.jpeg_quality = jpeg_quality
        self.thumbnail_px = thumbnail_px
        self._mask_fn = mask_fn
        self._record_factory = record_factory
        self._on_stored = on_stored
        self._hook = phase_hook
        self._measure_fn = measure_fn
        self._queue: queue.Queue[ShotJob | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._loop, name="shot-writer", daemon=True)
        self.error: BaseException | None = None
        self.busy_s = 0.0
        self.written = 0
        self._started = False

    def start(self) -> ShotWriter:
        self._thread.start()
        self._started = True
        return self

    def put(self, job: ShotJob) -> None:
        """Hand a frame to the writer; raises the writer's error if it has already failed."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self._queue.put(job, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self, timeout: float | None = None) -> BaseException | None:
        """Write everything queued, stop the thread and return the error it met (or None)."""
        if self._started and self._thread.is_alive():
            while self._thread.is_alive():
                try:
                    self._queue.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self._thread.join(timeout)
        return self.error

    def _phase(self, phase: str, index: int) -> None:
        if self._hook is not None:
            self._hook(phase, index)

    def _loop(self) -> None:
        _lower_priority()
        stream = self.store.shot_batches()
        waiting: deque[_Prepared] = deque()
        while True:
            job = self._queue.get()
            if job is None:
                break
            if self.error is not None:
                continue  # NOTE: after a failure, queued frames cannot be stored; drop them.
            t0 = time.perf_counter()
            try:
                shot = self._prepare(job)
                # NOTE: ids come back oldest first: the previous shot's (or, from a store that
                # commits at once, this one's).
                waiting.append(shot)
                self._committed(waiting, stream.add([shot.files]))
                self._phase("written", int(job.spec.index))
                if self._queue.empty():
                    self._committed(waiting, stream.flush())
            except BaseException as exc:
                log.error("run %s: shot %s not stored: %s", job.run_id, job.spec.index, exc)
                self.error = exc
                self._rescue(stream, waiting)
                continue
            self.busy_s += time.perf_counter() - t0
        try:
            self._committed(waiting, stream.flush())
        except BaseException as exc:
            log.error("run: the last shots were not stored: %s", exc)
            self.error = self.error or exc

    def _rescue(self, stream: ShotStream, waiting: deque[_Prepared]) -> None:
        """After a failure, commit the shot whose files are already durable, if that works."""
        try:
            self._committed(waiting, stream.flush())
        except BaseException as exc:
            log.error("run: %d stored file set(s) left without a row: %s", len(waiting), exc)

    def _prepare(self, job: ShotJob) -> _Prepared:
        """Encode the image, mask, thumbnail and measurement; the shot's files and row."""
        idx = int(job.spec.index)
        self._phase("encode", idx)
        data = encode_image(job.image, self.image_format, self.jpeg_quality)
        self._phase("encoded", idx)
        img_path, mask_path, thumb_path = shot_paths(job.run_id, idx, self.image_format)
        mask, bbox = self._mask_fn(job.image, job.segment.mask_reference)
        h, w = job.image.shape[:2]
        # NOTE: path, sha256 and size are filled in by the store once the image is durable.
        record = self._record_factory(
            job=job,
            path=img_path,
            sha256="",
            size=0,
            width=w,
            height=h,
            format=self.image_format,
            mask_path=mask_path,
            bbox=tuple(int(v) for v in bbox) if bbox is not None else None,
            thumb_path=thumb_path,
        )
        files = ShotFiles(
            record,
            (img_path, data),
            mask=(mask_path, encode_mask(mask)),
            thumb=(thumb_path, make_thumbnail(job.image, self.thumbnail_px)),
        )
        return _Prepared(job, files, self._measure(job, mask))

    def _committed(self, waiting: deque[_Prepared], ids: list[int]) -> None:
        """The oldest waiting shots got these ids: record their sizes, tell the engine."""
        for shot_id in ids:
            shot = waiting.popleft()
            self.written += 1
            self._phase("recorded", int(shot.job.spec.index))
            if shot.measured is not None:
                self._record_measurement(shot_id, *shot.measured)
            if self._on_stored is not None:
                self._on_stored(shot.job, shot_id)

    def _measure(self, job: ShotJob, mask: np.ndarray) -> tuple[str, dict[str, Any] | None] | None:
        """The shot's size in millimetres, or None when not measured."""
        if self._measure_fn is None:
            return None
        try:
            return self._measure_fn(job.image, job.segment.reference, mask)
        except (ValueError, cv2.error) as exc:
            log.warning("run %s: shot %s not measured: %s", job.run_id, job.spec.index, exc)
            return None

    def _record_measurement(self, shot_id: int, status: str, sizes: dict[str, Any] | None) -> None:
        """Record the shot's size (``shot_measurements``) after its row.

        NOTE: its own transaction, after the shot's: a crash between leaves a shot with no
        measurement row ("never measured"), distinct from a flagged ``marker_missing``.
        """
        from capture.store.measure_schema import measurement_row, record_measurement

        with self.store.transaction() as conn:
            record_measurement(conn, measurement_row(shot_id, status, sizes, utc_now()))
