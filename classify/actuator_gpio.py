"""GpioActuator: air valves (one per bin) or a servo gate, driven with RPi.GPIO.

Two kinds, chosen by ``actuator.kind``:

* ``valve``: each bin has a solenoid valve on a BCM pin (``actuator.pins``, in bin order);
  firing bin *b* drives its pin high for ``actuator.pulse_ms`` and low again, so an air jet
  blows the part into that bin.  The pin goes low even when the wait is interrupted.
* ``servo``: one gate servo on ``actuator.servo_pin`` (50 Hz PWM); firing bin *b* turns the gate
  to ``actuator.servo_angles[b]`` and waits ``actuator.pulse_ms`` for it to get there, so the
  part slides into that bin.

Why RPi.GPIO is imported inside the class: the package must import on any machine (CI, the
trainer's GPU box); only building this driver needs the library.  On a Pi 5, ``rpi-lgpio``
provides the same module.  Tests pass a recording fake as ``gpio``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from classify.actuator_types import bin_count, check_bin, check_config
from rig.config import ActuatorConfig
from rig.errors import ActuatorError

SERVO_HZ = 50.0
#: Servo pulse widths (ms) at 0 and 180 degrees, the common hobby-servo range.
SERVO_MIN_MS, SERVO_MAX_MS = 0.5, 2.5


def servo_duty(angle_deg: float) -> float:
    """PWM duty cycle in per cent for a gate angle (0.5 ms at 0 degrees, 2.5 ms at 180)."""
    pulse_ms = SERVO_MIN_MS + (SERVO_MAX_MS - SERVO_MIN_MS) * float(angle_deg) / 180.0
    return pulse_ms * SERVO_HZ / 10.0  # pulse / period (20 ms) * 100 %


def _import_gpio() -> Any:
    try:
        import RPi.GPIO as gpio
    except (ImportError, RuntimeError) as exc:
        raise ActuatorError(
            f"RPi.GPIO is not available ({exc}): install it on the Pi (pip install RPi.GPIO,"
            " or rpi-lgpio on a Pi 5), or set actuator.driver = 'sim'"
        ) from None
    return gpio


class GpioActuator:
    """The real actuator; ``gpio`` defaults to the RPi.GPIO module (imported here)."""

    def __init__(
        self,
        config: ActuatorConfig,
        *,
        gpio: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        check_config(config)
        self.config = config
        self._gpio = gpio if gpio is not None else _import_gpio()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pwm: Any = None
        self._closed = False
        self.bins = bin_count(config)
        g = self._gpio
        try:
            g.setwarnings(False)
            g.setmode(g.BCM)
            if config.kind == "valve":
                for pin in config.pins:
                    g.setup(pin, g.OUT, initial=g.LOW)
            else:
                g.setup(config.servo_pin, g.OUT)
                self._pwm = g.PWM(config.servo_pin, SERVO_HZ)
                self._pwm.start(servo_duty(config.servo_angles[config.review_bin]))
        except (RuntimeError, ValueError, OSError) as exc:
            raise ActuatorError(
                f"cannot set up the actuator's GPIO pins ({exc}): check actuator.pins /"
                " actuator.servo_pin and that this user may use /dev/gpiomem"
            ) from None

    def fire(self, bin: int) -> None:
        """Push the part into ``bin``; ActuatorError if the pins could not be driven."""
        b = check_bin(bin, self.bins)
        with self._lock:
            if self._closed:
                raise ActuatorError("the actuator is closed; restart the sorter")
            try:
                if self.config.kind == "valve":
                    self._pulse(self.config.pins[b])
                else:
                    self._pwm.ChangeDutyCycle(servo_duty(self.config.servo_angles[b]))
                    self._sleep(self.config.pulse_ms / 1000.0)
            except (RuntimeError, ValueError, OSError) as exc:
                raise ActuatorError(f"firing bin {b} failed ({exc}); check the wiring") from None

    def _pulse(self, pin: int) -> None:
        g = self._gpio
        g.output(pin, g.HIGH)
        try:
            self._sleep(self.config.pulse_ms / 1000.0)
        finally:
            # NOTE: fail safe: a valve left open empties the air tank and blows every part away.
            g.output(pin, g.LOW)

    def rest(self) -> None:
        """Every valve low (closed); the gate stays where it is.  For the e-stop."""
        if self._closed or self.config.kind != "valve":
            return
        g = self._gpio
        for pin in self.config.pins:
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                g.output(pin, g.LOW)

    def close(self) -> None:
        """Every valve low, the servo's PWM stopped, the pins released; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            g = self._gpio
            pins = list(self.config.pins) if self.config.kind == "valve" else []
            for pin in pins:
                with contextlib.suppress(RuntimeError, ValueError, OSError):
                    g.output(pin, g.LOW)
            if self._pwm is not None:
                self._pwm.stop()
                pins = [self.config.servo_pin]
            g.cleanup(pins)

    def __enter__(self) -> GpioActuator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
