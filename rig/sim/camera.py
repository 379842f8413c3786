"""SimCamera: renders what the rig's camera would see, in (simulated) real time.

What it models, and why:

* **The scene** from :class:`~rig.sim.world.SimWorld`: the installed sheet (fixed, it does not
  turn, so an empty reference frame is valid at every angle) or the bare table, and the loaded
  part drawn at the turntable's *actual* angle at mid-exposure, read from the simulated firmware.
  If the turntable is still moving the part is smeared by its travel during the exposure.
* **Exposure and readout time** (``simulator.exposure_ms``, 100 ms by default) on the simulated
  clock: the background and its noise are prepared in the first half, the angle is read at
  mid-exposure, the part is drawn in the second half, and the capture returns at the end.  On a
  virtual clock the same sequence costs no wall time.
* **Exposure control**: ``meter_and_lock`` chooses a shutter time and gain from the light level
  (as auto exposure would) and locks them.  While locked, frame brightness follows the light
  (dimming the ring darkens the frame); while unlocked, auto exposure compensates.
* **Manual settings** (``set_manual``, the Settings page): a fixed exposure and white balance
  that metering then returns instead of its own, and a focus; a white balance away from the
  metered one tints the frame and a focus away from the table (:data:`TABLE_DIOPTRES`) blurs
  it, so the page's live result shows what the operator chose.
* **Sensor noise** of ``simulator.noise`` 8-bit levels (Gaussian, from a precomputed field).
* **Ground truth** for tests: ``last_truth_mask`` (bool H x W) and ``Frame.meta["truth_box"]``.
* **Faults**: ``fail_next(n)`` makes the next ``n`` captures raise CameraError.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from rig.camera_types import Exposure, Frame
from rig.config import CameraConfig, SimConfig
from rig.errors import CameraError
from rig.sim.backdrop import BackdropCache, SensorNoise
from rig.sim.catalogue import part_model
from rig.sim.optics import MetricView, Optics
from rig.sim.render import Projection, View, render_part
from rig.sim.world import Scene, SimWorld

if TYPE_CHECKING:
    from rig.sim.clock import SimClock

#: Shutter time that gives a mid-grey exposure with the ring light fully on (gain 1).
BASE_EXPOSURE_US = 10_000
#: Longest shutter the simulated sensor uses before raising the gain (1/30 s).
MAX_SHUTTER_US = 33_333
MAX_GAIN = 8.0
#: Where the simulated lens is sharp: the table about 25 cm away (1 / 0.25 m).
TABLE_DIOPTRES = 4.0
#: Blur (Gaussian sigma, as a fraction of the frame width) per dioptre of focus error.
DEFOCUS_SIGMA_PER_DIOPTRE = 0.004
#: Room light that reaches the part with the ring light off (fraction of the ring at full).
AMBIENT_LIGHT = 0.12
#: White-balance gains (red, blue) under the ring's LEDs and under warm room light.
LED_GAINS, ROOM_GAINS = (1.95, 1.55), (1.45, 2.35)


def metric_optics(sim: SimConfig) -> Optics | None:
    """The metric camera ``simulator.optics = "metric"`` asks for, or None for the framed one."""
    if sim.optics != "metric":
        return None
    return Optics(height_mm=sim.camera_height_mm, k1=sim.lens_k1, paper=sim.sheet_paper)


def scene_radiance(light: float) -> float:
    """Relative light on the part at ring level ``light`` (1.0 = ring full on, plus the room)."""
    return AMBIENT_LIGHT + (1.0 - AMBIENT_LIGHT) * min(1.0, max(0.0, light))


def metered_exposure(light: float) -> Exposure:
    """What auto exposure and white balance settle on at ring level ``light``."""
    r = scene_radiance(light)
    wanted = BASE_EXPOSURE_US / r
    gain = min(MAX_GAIN, max(1.0, wanted / MAX_SHUTTER_US))
    shutter = round(min(MAX_SHUTTER_US, wanted / gain))
    led = (r - AMBIENT_LIGHT) / r
    gains = tuple(
        round(led * a + (1 - led) * b, 3) for a, b in zip(LED_GAINS, ROOM_GAINS, strict=True)
    )
    return Exposure(shutter, round(gain, 3), (gains[0], gains[1]), lux=round(600.0 * r, 1))


def frame_brightness(light: float, exposure: Exposure) -> float:
    """Relative frame brightness with this exposure at this light (1.0 = correctly exposed)."""
    collected = scene_radiance(light) * exposure.exposure_us * exposure.analogue_gain
    return collected / BASE_EXPOSURE_US


class SimCamera:
    """The simulated camera (see the module docstring).  Thread-safe."""

    def __init__(
        self,
        world: SimWorld,
        camera_config: CameraConfig | None = None,
        sim_config: SimConfig | None = None,
        *,
        clock: SimClock | None = None,
        sleep: Callable[[float], None] | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        cfg = camera_config or CameraConfig(driver="sim")
        sim = sim_config or SimConfig()
        self.world = world
        self.still_size: tuple[int, int] = (int(cfg.still_size[0]), int(cfg.still_size[1]))
        self.preview_size: tuple[int, int] = (int(cfg.preview_size[0]), int(cfg.preview_size[1]))
        self.exposure_s = sim.exposure_ms / 1000.0
        if clock is None and sleep is None and now is None:
            clock = getattr(world, "clock", None)
        self._now: Callable[[], float]
        self._sleep: Callable[[float], None]
        if clock is not None:
            self._now, self._sleep = clock.now, clock.sleep
        else:
            self._now = now or time.monotonic
            self._sleep = sleep or time.sleep
        self._noise = SensorNoise(sim.noise, seed=sim.seed)
        self._rng = np.random.default_rng(sim.seed + 7919)
        self._optics = metric_optics(sim)
        self._backdrops = BackdropCache(optics=self._optics)
        self._views: dict[tuple[int, int], Projection] = {}
        self._lock = threading.Lock()
        self._open = False
        self._locked: Exposure | None = None
        self._manual: Exposure | None = None
        self.focus_dioptres: float | None = None
        self._failures: list[str] = []
        self.captures = 0
        self.last_truth_mask: np.ndarray | None = None
        self.last_truth_box: tuple[int, int, int, int] | None = None
        self.last_render_s = 0.0

    # --- lifecycle --------------------------------------------------------------------------

    def open(self) -> None:
        """Ready the camera; prepares the noise field for the still size (seconds at 12 MP)."""
        self._noise.field(*self.still_size)
        self._open = True

    def close(self) -> None:
        """Release the caches; idempotent."""
        self._open = False
        self._backdrops = BackdropCache(optics=self._optics)
        self._noise = SensorNoise(self._noise.sigma, seed=self._noise._seed)

    def __enter__(self) -> SimCamera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if not self._open:
            raise CameraError("the simulated camera is closed; open it (or the rig) before use")

    # --- exposure ---------------------------------------------------------------------------

    @property
    def locked(self) -> Exposure | None:
        return self._locked

    @property
    def manual(self) -> Exposure | None:
        """The operator's fixed exposure and white balance, or None for automatic."""
        return self._manual

    def set_manual(self, exposure: Exposure | None, focus_dioptres: float | None = None) -> None:
        """Fix exposure and white balance (None: automatic again) and the focus (None: the
        table is sharp).  Metering returns the fixed values from now on."""
        self._manual = exposure
        self._locked = exposure if exposure is not None else None
        self.focus_dioptres = focus_dioptres

    def meter_and_lock(self) -> Exposure:
        self._check_open()
        exposure = self._manual or metered_exposure(self.world.light())
        self._locked = exposure
        return exposure

    def _apply_manual(self, image: np.ndarray, light: float) -> np.ndarray:
        """Tint by the manual white balance (relative to the metered one) and defocus blur."""
        manual = self._manual
        if manual is not None:
            auto = metered_exposure(light).colour_gains
            scale = np.array(
                [manual.colour_gains[0] / auto[0], 1.0, manual.colour_gains[1] / auto[1]],
                np.float32,
            )
            if not np.allclose(scale, 1.0):
                image = np.clip(image.astype(np.float32) * scale, 0, 255).astype(np.uint8)
        focus = self.focus_dioptres
        if focus is not None and abs(focus - TABLE_DIOPTRES) > 0.05:
            sigma = abs(focus - TABLE_DIOPTRES) * DEFOCUS_SIGMA_PER_DIOPTRE * image.shape[1]
            image = cv2.GaussianBlur(image, (0, 0), sigmaX=min(sigma, 40.0))
        return image

    def unlock(self) -> None:
        self._locked = self._manual

    def _exposure_now(self, light: float) -> tuple[Exposure, float]:
        locked = self._locked
        if locked is None:
            return metered_exposure(light), 1.0
        return locked, frame_brightness(light, locked)

    # --- faults -----------------------------------------------------------------------------

    def fail_next(self, n: int = 1, message: str | None = None) -> None:
        """Make the next ``n`` captures raise CameraError (a frontend timeout, by default)."""
        text = message or (
            "simulated camera failure: the camera frontend timed out; check the ribbon cable"
        )
        with self._lock:
            self._failures.extend([text] * int(n))

    # --- frames -----------------------------------------------------------------------------

    def capture(self) -> Frame:
        """A full-resolution still, taking the modelled exposure time on the simulated clock."""
        self._check_open()
        with self._lock:
            if self._failures:
                raise CameraError(self._failures.pop(0))
            self.captures += 1
        w, h = self.still_size
        scene, light = self.world.scene(), self.world.light()
        exposure, brightness = self._exposure_now(light)
        t0 = self._now()
        started = time.perf_counter()
        a_start = self.world.angle()
        background = self._backdrops.get(scene.sheet, w, h, brightness)
        offset = self._noise.offset(self._rng)
        image = self._noise.apply(background, offset, (w, h))
        self._sleep_until(t0 + self.exposure_s / 2)
        a_mid = self.world.angle()
        mid_started = time.perf_counter()
        travel = ((a_mid - a_start + 180.0) % 360.0) - 180.0
        mask, box = self._draw_part(image, background, scene, a_mid, brightness, offset, travel)
        done = time.perf_counter()
        self.last_render_s = (mid_started - started) + (done - mid_started)
        self._sleep_until(t0 + self.exposure_s)
        self.last_truth_mask, self.last_truth_box = mask, box
        image = self._apply_manual(image, light)
        meta: dict[str, Any] = {
            "sim": True,
            "angle_deg": a_mid,
            "travel_deg": 2 * travel,
            "light": light,
            "sheet": scene.sheet,
            "part": None if scene.part is None else vars(scene.part).copy(),
            "truth_box": box,
            "render_ms": round(self.last_render_s * 1000, 2),
        }
        return Frame(
            image=image,
            t=t0 + self.exposure_s / 2,
            exposure_us=exposure.exposure_us,
            analogue_gain=exposure.analogue_gain,
            colour_gains=exposure.colour_gains,
            lux=exposure.lux,
            meta=meta,
        )

    def preview(self) -> np.ndarray:
        """A preview-size RGB frame of the scene now (no exposure wait, no smear)."""
        self._check_open()
        w, h = self.preview_size
        scene, light = self.world.scene(), self.world.light()
        _, brightness = self._exposure_now(light)
        background = self._backdrops.get(scene.sheet, w, h, brightness)
        offset = self._noise.offset(self._rng)
        image = self._noise.apply(background, offset, (w, h))
        self._draw_part(image, background, scene, self.world.angle(), brightness, offset, 0.0)
        return self._apply_manual(image, light)

    def _draw_part(
        self,
        image: np.ndarray,
        background: np.ndarray,
        scene: Scene,
        angle: float,
        brightness: float,
        offset: tuple[int, int],
        half_travel_deg: float,
    ) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
        """Draw the loaded part into ``image``; returns the truth mask and its box (x, y, w, h)."""
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        if scene.part is None:
            return mask, None
        view = self._view(w, h)
        p = scene.part
        model = part_model(p.label, p.instance, p.pose)
        blur = 0.0
        if abs(half_travel_deg) > 1e-3:
            pts = np.concatenate([f.verts for s in model.solids for f in s.faces])
            radius_px = float(np.hypot(pts[:, 0], pts[:, 1]).max()) * view.px_per_mm
            blur = abs(np.radians(2 * half_travel_deg)) * radius_px
        drawn = render_part(model, angle, view, background, brightness=brightness, blur_px=blur)
        if drawn is None:
            return mask, None
        roi = drawn.roi
        image[roi.slices()] = self._noise.apply(drawn.pixels, offset, (w, h), at=(roi.x, roi.y))
        mask[roi.slices()] = drawn.mask
        ys, xs = np.nonzero(drawn.mask)
        if len(xs) == 0:
            return mask, None
        box = (roi.x + int(xs.min()), roi.y + int(ys.min()))
        return mask, (*box, int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))

    def _view(self, w: int, h: int) -> Projection:
        view = self._views.get((w, h))
        if view is None:
            if self._optics is not None:
                view = MetricView(self._optics.scaled(w, h))
            else:
                view = View.for_size(w, h)
            self._views[(w, h)] = view
        return view

    def _sleep_until(self, t: float) -> None:
        left = t - self._now()
        if left > 0:
            self._sleep(left)
