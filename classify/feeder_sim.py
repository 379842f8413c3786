"""The simulated feeder: drops catalogue parts onto a simulated sorting platform.

The platform is a :class:`~rig.sim.world.SimWorld` of its own, with a printed sheet installed,
seen by a :class:`~rig.sim.camera.SimCamera` through :class:`FeederCamera`.  When a sorting rule
looks at a size (or ``simulator.optics = "metric"``), the camera is the metric one
(:mod:`rig.sim.optics`): parts at their true size on the printed sheet, marker included, and
stills at ``camera.still_size`` for the sorter to measure.  Every dropped part
is a fresh instance (``feed-<seed>-<n>``), so its colour and size jitter and where it lands
(a few millimetres off centre, a few degrees of yaw) are new each time; its pose is drawn from
the poses the part can take and its angle from the full turn.  ``unknown_rate`` of the drops
are catalogue parts flagged ``unknown`` (never trained on), or the ``unknown`` parts given, so
the review path is exercised.  :attr:`SimFeeder.drops` is the drop log, and
:meth:`SimFeeder.drop` finds a drop by its id (the instance, ``feed-<seed>-<n>``): the truth a
test or benchmark joins to the sorter's decisions.  The sorter never sees it; it only records
the drop id its camera (:meth:`FeederCamera.preview_tagged`) gives with each frame.

A dropped part does not land still: for ``settle_s`` it slides round towards its resting angle,
so the sorter must wait for it to stop.  When the platform has been empty for ``gap_s`` the next
part drops.  Time is the simulator's clock: the camera delivers a frame every ``1 / fps``
seconds of it, so on a virtual clock thousands of parts take no wall time beyond rendering.

The sim actuator (:class:`~classify.actuator_sim.SimActuator`, given :attr:`SimFeeder.world`)
removes the part when it fires and records the bin with the truth.  A part pushed into
``sorter.recirculate_bin`` (:mod:`classify.recirculate`) goes down that bin's chute back to the
feeder and is dropped again: the same physical part (same instance, so the same size and
colour), a new drop with a drop id of its own, a new pose drawn from the same poses and a new
angle.  ``return_after`` new parts drop before it comes back (0, the default: it is the next
drop, a chute that leads straight back onto the platform).  :attr:`Drop.part` is the physical
part, :attr:`Drop.passes` which pass this is; a part's final bin is the one its last drop went
to.  Faults for tests: ``camera.fail_next(n)`` and the actuator's ``jam_next()``;
:meth:`SimFeeder.clear_platform` is the operator taking a stuck part away.

Example::

    feeder = SimFeeder(settings, SimClock(0), seed=1)
    actuator = SimActuator(feeder.world, clock=feeder.clock)
    sorter = Sorter(feeder.camera, actuator, store, settings, feeder.clock)
    decisions = sorter.run_parts(100)
    truths = [feeder.drop(d.drop_id).label for d in decisions]
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from classify.rules import needs_sizes
from rig.camera_types import Exposure, Frame
from rig.config import CameraConfig, Settings
from rig.errors import CameraError
from rig.sim.camera import SimCamera
from rig.sim.catalogue import CATALOGUE, part_spec, trainable_labels
from rig.sim.clock import SimClock
from rig.sim.world import SimWorld

#: Platform sheet: plain white (sheet 1), like a sorter's white belt or tray.
DEFAULT_SHEET = 1
FPS = 30.0
IDLE_RESUME_S = 1.0  # a gap between frames longer than this means the stream was stopped
#: How fast a freshly dropped part still turns (degrees per second of settling left).
SETTLE_SPIN_DEG_S = 400.0
#: Frames the platform stays empty after the stream (re)starts, whatever the clock says: more
#: than the sorter's reference frames (classify.sorter.REFERENCE_FRAMES, 5), so a loaded
#: machine whose first frames render slowly still photographs an empty reference.
RESUME_HOLD_FRAMES = 10


@dataclass(frozen=True)
class Drop:
    """One part the feeder dropped: its label, instance, pose, resting angle and time.

    ``passes`` counts the times this physical part has been dropped (2 and more: it came back
    through the recirculation chute); ``drop_id`` is set for those re-drops."""

    index: int
    label: str
    instance: str
    pose: str
    angle: float
    t: float
    passes: int = 1
    drop_id: str | None = None

    @property
    def id(self) -> str:
        """The drop id the camera tags its frames with (unique per drop; a part's first drop
        has its instance id)."""
        return self.drop_id or self.instance

    @property
    def part(self) -> str:
        """The physical part (its instance id), the same on every pass."""
        return self.instance


class PlatformWorld(SimWorld):
    """The feeder's platform: it learns which bin the actuator pushed its part into."""

    def __init__(
        self,
        on_push: Callable[[int], None],
        angle_source: Callable[[], float],
        *,
        seed: int,
        clock: SimClock,
    ) -> None:
        super().__init__(angle_source, lambda: 1.0, seed=seed, clock=clock)
        self._on_push = on_push

    def push_into(self, bin: int) -> None:
        self._on_push(bin)


class SimFeeder:
    """Drops parts on a simulated platform; owns the platform's world and camera."""

    def __init__(
        self,
        settings: Settings,
        clock: SimClock | None = None,
        *,
        seed: int = 0,
        labels: list[str] | None = None,
        unknown_rate: float = 0.1,
        unknown: list[str] | None = None,
        gap_s: float = 0.2,
        settle_s: float = 0.2,
        fps: float = FPS,
        sheet: int = DEFAULT_SHEET,
        preview_size: tuple[int, int] | None = None,
        max_parts: int | None = None,
        return_after: int = 0,
    ) -> None:
        self.clock = clock or SimClock(settings.simulator.time_scale)
        self.labels = list(labels) if labels is not None else trainable_labels()
        for label in self.labels:
            part_spec(label)
        # NOTE: by default the parts flagged unknown; a benchmark names its own (any catalogue
        # part its model was not trained on).
        if unknown is None:
            unknown = [p.label for p in CATALOGUE.values() if p.unknown]
        for label in unknown:
            part_spec(label)
        self.unknown = list(unknown)
        self.unknown_rate = float(unknown_rate) if self.unknown else 0.0
        self.gap_s, self.settle_s = float(gap_s), float(settle_s)
        self.seed = int(seed)
        self.max_parts = max_parts
        self.return_after = int(return_after)
        self.recirculate_bin = settings.sorter.recirculate_bin
        #: Parts pushed into the recirculation bin, waiting to drop again (with the count of
        #: new parts dropped when they went down the chute).
        self._returns: deque[tuple[Drop, int]] = deque()
        self._new_parts = 0
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._drop: Drop | None = None
        self._empty_since = self.clock.now()
        self._hold = 0
        self.drops: list[Drop] = []
        self._by_id: dict[str, Drop] = {}
        self.world = PlatformWorld(self._pushed, self._angle, seed=seed, clock=self.clock)
        self.world.install_sheet(sheet)
        size = preview_size or settings.camera.preview_size
        sim_cfg, still = settings.simulator, size
        if sim_cfg.optics == "metric" or needs_sizes(settings.sorter.rules):
            # NOTE: size rules need parts at true scale under the sheet's printed marker, and
            # the sorter measures them on a full-resolution still (classify.sorter_measure).
            sim_cfg = sim_cfg.model_copy(update={"optics": "metric"})
            still = settings.camera.still_size
        cam_cfg = CameraConfig(driver="sim", still_size=still, preview_size=size)
        self.camera = FeederCamera(self, SimCamera(self.world, cam_cfg, sim_cfg), fps)

    # --- the world -------------------------------------------------------------------------------

    def _angle(self) -> float:
        drop = self._drop
        if drop is None:
            return 0.0
        left = drop.t + self.settle_s - self.clock.now()
        return drop.angle + SETTLE_SPIN_DEG_S * max(0.0, left)

    def _pushed(self, bin: int) -> None:
        """The actuator pushed the part on the platform into ``bin``; the recirculation bin's
        chute takes it back to the feeder."""
        with self._lock:
            part, drop = self.world.part, self._drop
            self.world.remove_part()
            if part is not None and drop is not None and bin == self.recirculate_bin:
                self._returns.append((drop, self._new_parts))

    @property
    def circulating(self) -> list[Drop]:
        """Parts in the return chute now (their last drop), not yet dropped again."""
        with self._lock:
            return [d for d, _ in self._returns]

    def on_platform(self) -> str | None:
        """The id of the drop on the platform now, or None when it is empty."""
        drop = self._drop
        return None if self.world.part is None or drop is None else drop.id

    def truth(self) -> str | None:
        """The label of the part on the platform now (the simulator knows), or None."""
        part = self.world.part
        return None if part is None else part.label

    def drop(self, drop_id: str | None) -> Drop:
        """The drop log's entry for ``drop_id`` (KeyError for an id this feeder never dropped)."""
        with self._lock:
            if drop_id is None or drop_id not in self._by_id:
                raise KeyError(f"drop {drop_id!r} is not in this feeder's drop log")
            return self._by_id[drop_id]

    def resume(self) -> None:
        """The stream starts again after a pause: wait ``gap_s`` before the next drop.

        NOTE: like a feeder that runs only while the sorter does.  Without it, a sorter started
        long after the feeder was built would photograph its "empty" reference with a part
        already dropped, and that part would then stay in the background forever.  The wait is
        also counted in frames (:data:`RESUME_HOLD_FRAMES`): on a loaded machine the first
        frames after a start render slowly (cold caches), ``gap_s`` of clock time passed within
        the reference's frames, a part dropped into it, and the sorter never saw it, nor any
        later part (the feeder waits for an empty platform).
        """
        with self._lock:
            if self.world.part is None:
                self._empty_since = self.clock.now()
                # NOTE: gap_s = 0 asks for a part at once (tests that script every frame).
                self._hold = RESUME_HOLD_FRAMES if self.gap_s > 0 else 0

    def tick(self) -> None:
        """Drop the next part when the platform has been empty for ``gap_s``."""
        now = self.clock.now()
        with self._lock:
            if self.world.part is not None:
                return
            if self._drop is not None:
                self._drop, self._empty_since = None, now
            if self._hold > 0:
                self._hold -= 1
                return
            if now - self._empty_since < self.gap_s:
                return
            out_of_parts = self.max_parts is not None and self._new_parts >= self.max_parts
            if out_of_parts and not self._returns:
                return
            self._drop_part(now, out_of_parts)

    def _drop_part(self, now: float, out_of_parts: bool = False) -> None:
        rng = self._rng
        returned = None
        if self._returns and (
            out_of_parts or self._new_parts - self._returns[0][1] >= self.return_after
        ):
            returned = self._returns.popleft()[0]
        if returned is None:
            pool = self.unknown if rng.random() < self.unknown_rate else self.labels
            label = pool[int(rng.integers(len(pool)))]
        else:
            label = returned.label
        spec = part_spec(label)
        pose = spec.poses[int(rng.integers(len(spec.poses)))]
        drop_id = f"feed-{self.seed}-{len(self.drops)}"
        angle = float(rng.uniform(0.0, 360.0))
        if returned is None:
            self._new_parts += 1
            drop = Drop(len(self.drops), label, drop_id, pose, angle, now)
        else:
            drop = Drop(len(self.drops), label, returned.instance, pose, angle, now,
                        returned.passes + 1, drop_id)  # fmt: skip
        self.world.load_part(drop.label, drop.instance, drop.pose)
        self._drop = drop
        self.drops.append(drop)
        self._by_id[drop.id] = drop

    def clear_platform(self) -> None:
        """The operator takes whatever is on the platform away (after a stuck part)."""
        with self._lock:
            self.world.remove_part()


class FeederCamera:
    """The platform camera: each preview frame first lets the feeder act, then renders.

    It models a camera streaming at ``fps``: a frame costs ``1 / fps`` of simulated time.
    ``fail_next(n)`` makes the next ``n`` frames raise CameraError.
    """

    def __init__(self, feeder: SimFeeder, camera: SimCamera, fps: float) -> None:
        self.feeder = feeder
        self.inner = camera
        self.period = 1.0 / float(fps)
        self.still_size = camera.still_size
        self.preview_size = camera.preview_size
        self._failures: list[str] = []
        self._lock = threading.Lock()
        # NOTE: None until the first frame: a stream that has never run starts like a resumed one.
        self._last: float | None = None
        camera.open()

    def fail_next(self, n: int = 1, message: str | None = None) -> None:
        text = message or "simulated camera failure: the preview stream timed out"
        with self._lock:
            self._failures.extend([text] * int(n))

    def preview(self) -> np.ndarray:
        return self.preview_tagged()[0]

    def preview_tagged(self) -> tuple[np.ndarray, str | None]:
        """A preview frame and the id of the drop on the platform when it was drawn.

        NOTE: the id is read just before the frame is drawn; should the actuator remove the
        part in between, the frame shows the platform empty and is never sorted, so the id
        of every sorted frame is that of the part it shows.
        """
        clock = self.feeder.clock
        if self._last is None or clock.now() - self._last > IDLE_RESUME_S:
            self.feeder.resume()
        clock.sleep(self.period)
        self._last = clock.now()
        with self._lock:
            if self._failures:
                raise CameraError(self._failures.pop(0))
        self.feeder.tick()
        drop_id = self.feeder.on_platform()
        return self.inner.preview(), drop_id

    def capture(self) -> Frame:
        return self.inner.capture()

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def meter_and_lock(self) -> Exposure:
        return self.inner.meter_and_lock()

    def unlock(self) -> None:
        self.inner.unlock()

    @property
    def locked(self) -> Exposure | None:
        return self.inner.locked

    def __enter__(self) -> FeederCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
