"""The sorter's one-slot pipeline: the next frame is prepared while the model runs.

Why: on a PC a sorter frame spends about a millisecond outside the model (grabbing the
frame, the presence test, cropping, resizing and colour-correcting the crop) and two inside
``invoke()``.  Done one after the other, the loop ran at 0.66 to 0.74 of the bare model's rate.
Here a *front* thread grabs and prepares frames while the *back* thread (the sorter's loop)
runs the model on the previous one, fires and logs.

Why one slot, and why the front waits for it to be empty before it grabs: the front runs at
most one classified frame ahead of the back, so

* decisions keep the order of their frames (one front, one back, a FIFO of one);
* a decision is never made on a frame older than one model run;
* a halt drops at most one prepared frame, and nothing waits for it: the back checks the
  stop flag before it takes a frame and again right before it fires (:mod:`classify.sorter`).

Frames that need no decision (an empty platform, a part still moving) never enter the slot;
the front handles them itself while the back is busy, so they cost the loop nothing.

Why the back may stand in for the front (:meth:`FrontThread.next_item`): on a loaded machine
(this project's 2 cores are shared) a thread that was woken may wait milliseconds for a core,
so a back that always waited for the front would wait for the scheduler.  When the slot is
empty and the front is not in the middle of a frame, the back looks at the next frame itself,
as the loop did before the pipeline.  One lock lets one thread at a time look at frames, and
the front hands its part over while it holds that lock, so the order stays that of the frames.

Why the front may wait before it grabs (:meth:`FrontThread.hold_s`): with a camera that always
has a frame ready, a frame grabbed as soon as the slot empties would then wait in the slot
for most of a model run, and that wait counts in the decision's latency (frame in to actuator
fired).  So the front starts a cycle only when the back's current part is expected to end
within the front's own cycle time (both as moving averages), plus a margin.  A real camera
that delivers a frame every 33 ms makes the front's cycle longer than a model run, and the
front never waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: How often a waiting thread looks at the stop flag (seconds); a put or take wakes it at once.
POLL_S = 0.05
#: Weight of the newest cycle in the front's moving average of its cycle time.
EWMA_WEIGHT = 0.2
#: The front starts this much earlier than its average cycle needs (seconds, and share of it).
MARGIN_S = 0.0002
MARGIN_SHARE = 0.25


class OneSlot(Generic[T]):
    """A hand-over of at most one item between one producer and one consumer thread."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._full = False
        self._cond = threading.Condition()

    def wait_empty(self, stop: threading.Event) -> bool:
        """Wait until the slot is empty (the consumer took the last item); False on stop."""
        with self._cond:
            while self._full:
                if stop.is_set():
                    return False
                self._cond.wait(POLL_S)
            return not stop.is_set()

    def put(self, item: T, stop: threading.Event) -> bool:
        """Hand ``item`` over once the slot is empty; False (item dropped) on stop."""
        with self._cond:
            while self._full:
                if stop.is_set():
                    return False
                self._cond.wait(POLL_S)
            if stop.is_set():
                return False
            self._item, self._full = item, True
            self._cond.notify_all()
            return True

    def take(self, timeout: float = POLL_S) -> T | None:
        """The waiting item (the slot is then empty), or None after ``timeout`` seconds."""
        with self._cond:
            if not self._full:
                self._cond.wait(timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return item

    def clear(self) -> bool:
        """Drop the waiting item, if any (a halt or a latched fault); True if one was dropped."""
        with self._cond:
            dropped = self._full
            self._item, self._full = None, False
            self._cond.notify_all()
            return dropped

    @property
    def full(self) -> bool:
        with self._cond:
            return self._full


class FrontThread(Generic[T]):
    """Runs ``produce`` in a thread and hands each item it returns through ``slot``.

    ``produce`` takes one frame and returns the item to classify, or None (nothing to do
    for that frame).  Before each frame the thread waits until the slot is empty, so it never
    runs more than one item ahead; ``paused`` (a latched fault) makes it idle instead.
    """

    def __init__(
        self,
        produce: Callable[[], T | None],
        slot: OneSlot[T],
        stop: threading.Event,
        paused: Callable[[], bool],
        *,
        back_left_s: Callable[[], float] | None = None,
        name: str = "sorter-frames",
    ) -> None:
        self._produce = produce
        self._slot = slot
        self._stop = stop
        self._paused = paused
        self._back_left_s = back_left_s
        #: Held while a thread looks at a frame and hands its part over: one at a time, in order.
        self._making = threading.Lock()
        #: Moving average of the front's cycle: from its first frame after a hand-over to the
        #: next hand-over (the frames without a part included).
        self.cycle_s = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (nothing to wait for if it never started)."""
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def hold_s(self) -> float:
        """How long to wait before starting the next cycle so that it ends as the back frees."""
        if self._back_left_s is None or self.cycle_s <= 0.0:
            return 0.0
        left = self._back_left_s()
        return max(0.0, left - self.cycle_s * (1.0 + MARGIN_SHARE) - MARGIN_S)

    def _run(self) -> None:
        started: float | None = None
        while not self._stop.is_set():
            if self._paused():
                started = None
                self._stop.wait(POLL_S)
                continue
            if not self._slot.wait_empty(self._stop):
                return
            if started is None:
                hold = self.hold_s()
                if hold > 0.0 and self._stop.wait(min(hold, POLL_S)):
                    return
                started = time.perf_counter()
            with self._making:
                if self._slot.full:
                    continue  # NOTE: only this thread fills the slot, and it was empty; be safe
                item = self._produce()
                if item is None:
                    continue
                took = time.perf_counter() - started
                weight = EWMA_WEIGHT if self.cycle_s > 0.0 else 1.0
                self.cycle_s = weight * took + (1.0 - weight) * self.cycle_s
                started = None
                # NOTE: the slot is empty and only this thread fills it: this put never waits.
                if not self._slot.put(item, self._stop):
                    return

    def next_item(self, timeout: float = POLL_S) -> T | None:
        """The back's next part: the one the front prepared or, when the front is not busy
        with a frame, one the back prepares itself from the next frame (None: nothing yet)."""
        item = self._slot.take(0.0)
        if item is not None:
            return item
        if not self._making.acquire(timeout=timeout):
            return self._slot.take(0.0)
        try:
            item = self._slot.take(0.0)
            if item is not None or self._stop.is_set():
                return item
            if self._paused():
                self._stop.wait(POLL_S)
                return None
            return self._produce()
        finally:
            self._making.release()
