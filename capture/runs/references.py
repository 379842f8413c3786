"""A background segment's reference frame, stored in the background before any of its shots.

Why a thread: the reference is kept as a lossless PNG, and encoding a 12 MP frame costs about
1 s of CPU on the development machine and about 5 s on a Raspberry Pi 4 (docs/benchmarks.md,
``stages``).  The engine used to do it before asking the operator to place the part, so the
operator waited for it at every background.  Now the encode and the durable write run while the
operator places the part and the turntable makes the segment's first move.

The crash-safety order is unchanged: the engine calls :meth:`ReferenceWriter.wait` before it
hands the segment's first shot to the shot writer, and ``wait`` returns only once the PNG is
durable and its ``references`` row committed.  A shot row therefore never names a reference
that is not on disk; a crash before that leaves no reference row, and the resumed run takes the
reference again (the file name is fixed per run and sheet, so the new one replaces any leftover).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from capture.runs.pipeline import encode_image

if TYPE_CHECKING:
    from capture.runs.ports import RunStore

log = logging.getLogger("capture.runs.run")


@dataclass(frozen=True)
class ReferenceJob:
    """One empty-turntable frame on its way to ``references/<run>/sheetNNN.png``."""

    run_id: int
    sheet: int
    image: np.ndarray  # RGB uint8 HxWx3, as captured
    colour_matrix: list[list[float]] | None
    exposure: dict[str, Any]

    @property
    def path(self) -> str:
        return f"references/{self.run_id}/sheet{self.sheet:03d}.png"


def store_reference(store: RunStore, job: ReferenceJob) -> None:
    """Encode the reference as PNG, make it durable, then commit its row (in that order)."""
    stored = store.write_file(job.path, encode_image(job.image, "png", 0))
    store.add_reference(
        job.run_id,
        job.sheet,
        path=stored.path,
        sha256=stored.sha256,
        colour_matrix=job.colour_matrix,
        exposure=job.exposure,
    )


class ReferenceWriter:
    """Stores one reference at a time on its own thread; :meth:`wait` for it before its shots.

    Used by the engine thread only (not thread-safe itself).
    """

    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, job: ReferenceJob) -> None:
        """Begin storing ``job`` (after the previous one, whose error this raises)."""
        self.wait()
        thread = threading.Thread(
            target=self._write, args=(job,), name="reference-writer", daemon=True
        )
        self._thread = thread
        thread.start()

    def wait(self) -> None:
        """Return once the last reference handed over is durable and recorded; raise its error.

        The error is raised once; after it the writer is idle and may be given another job.
        """
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _write(self, job: ReferenceJob) -> None:
        _lower_priority()
        try:
            store_reference(self._store, job)
        except BaseException as exc:
            log.error("run %s: reference of sheet %s not stored: %s", job.run_id, job.sheet, exc)
            self._error = exc


def _lower_priority(niceness: int = 10) -> None:
    """Run this thread below the capture loop (Linux, best effort), as the shot writer does.

    Why: the operator is placing the part meanwhile, but if that is quick the camera and the
    serial link must not wait for a PNG encode on a 4-core Pi.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):
        log.debug("could not lower the reference writer's priority")
