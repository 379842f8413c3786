"""The durable decision log: a writer thread that commits the sorter's decisions in batches.

Why a thread and batches: the loop must fire the actuator as soon as the model has answered,
and a ``synchronous=FULL`` commit (plus a crop's fsync) costs about as long as an inference on
a PC.  The loop therefore hands each decision over (:meth:`DecisionLog.append`, a queue put)
and moves on; the writer encodes the crops as JPEG and commits everything queued so far in one
transaction (:meth:`DatasetStore.add_decisions`: crops durable first, then the rows).

Nothing is dropped: the queue is bounded (``MAX_BACKLOG``), so a slow disk makes ``append``
wait instead of losing decisions, and :meth:`DecisionLog.flush` (called on stop) returns only
once every appended decision is committed.  What a power cut can lose is the batch in flight,
at most the decisions of the last commit's duration.

A store error (a full disk) is kept in :attr:`DecisionLog.error`; the sorter checks it every
frame and latches a fault, since sorting on without a log would lose the audit trail.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from capture.store.sorting import DecisionRecord
from rig.errors import RigError, StoreError

MAX_BACKLOG = 1000
MAX_BATCH = 256
JPEG_QUALITY = 92


@dataclass
class PendingDecision:
    """A decision and its crop (RGB, as captured), not yet encoded or committed."""

    record: DecisionRecord
    crop: np.ndarray | None = None


def encode_jpeg(crop_rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise StoreError("could not encode a sorter crop as JPEG")
    return buf.tobytes()


class DecisionLog:
    """Commits decisions to ``store`` from a background thread; use ``close()`` when done."""

    def __init__(self, store: Any, *, max_backlog: int = MAX_BACKLOG) -> None:
        self.store = store
        self._queue: queue.Queue[PendingDecision | None] = queue.Queue(maxsize=max_backlog)
        self._done = threading.Condition()
        self._appended = 0
        self._handled = 0
        self._committed = 0
        self.error: RigError | None = None
        self._thread = threading.Thread(target=self._run, name="sorter-log", daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Decisions appended but not yet committed."""
        with self._done:
            return self._appended - self._handled

    @property
    def committed(self) -> int:
        """Decisions durably in the store."""
        with self._done:
            return self._committed

    def append(self, record: DecisionRecord, crop: np.ndarray | None = None) -> None:
        """Queue one decision (waits when the backlog is full; never drops)."""
        if self.error is not None:
            raise self.error
        with self._done:
            self._appended += 1
        self._queue.put(PendingDecision(record, crop))

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every appended decision is committed (or failed); False on timeout."""
        with self._done:
            return self._done.wait_for(
                lambda: self._handled >= self._appended or self.error is not None, timeout
            )

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit what is queued, then stop the writer; idempotent."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[PendingDecision] = []
            stop = item is None
            if item is not None:
                batch.append(item)
            while not stop and len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    batch.append(more)
            if batch:
                self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[PendingDecision]) -> None:
        try:
            records = []
            for pending in batch:
                if pending.crop is not None:
                    pending.record.crop_jpeg = encode_jpeg(pending.crop)
                records.append(pending.record)
            if self.error is None:
                self.store.add_decisions(records)
                with self._done:
                    self._committed += len(records)
        except RigError as exc:
            self.error = exc
        except Exception as exc:  # NOTE: the writer must never die silently with work queued.
            self.error = StoreError(f"the decision log failed: {exc}")
        finally:
            with self._done:
                self._handled += len(batch)
                self._done.notify_all()
