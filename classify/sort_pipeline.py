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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: How often a waiting thread looks at the stop flag (seconds); a put or take wakes it at once.
POLL_S = 0.05


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
        name: str = "sorter-frames",
    ) -> None:
        self._produce = produce
        self._slot = slot
        self._stop = stop
        self._paused = paused
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._paused():
                self._stop.wait(POLL_S)
                continue
            if not self._slot.wait_empty(self._stop):
                return
            item = self._produce()
            if item is not None and not self._slot.put(item, self._stop):
                return
