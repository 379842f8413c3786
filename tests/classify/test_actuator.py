"""The actuator drivers: the simulator's record, and the GPIO driver against a recording fake."""

from __future__ import annotations

import pytest

from classify.actuator import Actuator, open_actuator
from classify.actuator_gpio import GpioActuator, servo_duty
from classify.actuator_sim import SimActuator
from rig.config import ActuatorConfig, Settings, apply_sim
from rig.errors import ActuatorError, ConfigError
from rig.sim.clock import SimClock
from rig.sim.world import SimWorld


class FakeGPIO:
    """Records every pin change with the (fake) time, as gpiozero's MockFactory does."""

    BCM, OUT, HIGH, LOW = "BCM", "OUT", 1, 0

    def __init__(self) -> None:
        self.t = 0.0
        self.events: list[tuple[float, str, object, object]] = []
        self.fail_output = False

    def sleep(self, s: float) -> None:
        self.t += s

    def setwarnings(self, flag: bool) -> None:
        pass

    def setmode(self, mode: str) -> None:
        self.events.append((self.t, "mode", mode, None))

    def setup(self, pin: int, direction: str, initial: int | None = None) -> None:
        self.events.append((self.t, "setup", pin, initial))

    def output(self, pin: int, value: int) -> None:
        if self.fail_output and value == self.HIGH:
            raise RuntimeError("pin busy")
        self.events.append((self.t, "out", pin, value))

    def cleanup(self, pins: list[int]) -> None:
        self.events.append((self.t, "cleanup", tuple(pins), None))

    def PWM(self, pin: int, hz: float) -> FakePWM:
        return FakePWM(self, pin, hz)


class FakePWM:
    def __init__(self, gpio: FakeGPIO, pin: int, hz: float) -> None:
        self.gpio, self.pin, self.hz = gpio, pin, hz

    def start(self, duty: float) -> None:
        self.gpio.events.append((self.gpio.t, "pwm", self.pin, round(duty, 3)))

    def ChangeDutyCycle(self, duty: float) -> None:
        self.gpio.events.append((self.gpio.t, "pwm", self.pin, round(duty, 3)))

    def stop(self) -> None:
        self.gpio.events.append((self.gpio.t, "pwm_stop", self.pin, None))


def _world() -> SimWorld:
    clock = SimClock(0)
    world = SimWorld(lambda: 0.0, lambda: 1.0, clock=clock)
    world.install_sheet(1)
    return world


def test_sim_actuator_records_time_bin_and_truth_and_removes_the_part() -> None:
    world = _world()
    world.clock.advance(2.5)  # type: ignore[union-attr]
    world.load_part("brick-2x4-red", "a")
    with SimActuator(world, clock=world.clock) as actuator:
        assert isinstance(actuator, Actuator)
        actuator.fire(3)
        actuator.fire(0)  # nothing on the platform any more
    assert actuator.firings == [(2.5, 3, "brick-2x4-red"), (2.5, 0, None)]
    assert world.part is None
    with pytest.raises(ActuatorError, match="closed"):
        actuator.fire(1)


def test_sim_actuator_faults_fail_or_leave_the_part_stuck() -> None:
    world = _world()
    actuator = SimActuator(world)
    world.load_part("nut-m6-brass", "a")
    actuator.fail_next()
    with pytest.raises(ActuatorError, match="air pressure"):
        actuator.fire(1)
    assert actuator.firings == [] and world.part is not None
    actuator.jam_next()
    actuator.fire(1)
    assert world.part is not None and len(actuator.firings) == 1
    actuator.fire(1)
    assert world.part is None
    with pytest.raises(ActuatorError, match="bin 16 does not exist"):
        actuator.fire(16)


def test_valve_pulses_its_bins_pin_for_pulse_ms_then_closes_everything() -> None:
    gpio = FakeGPIO()
    config = ActuatorConfig(driver="gpio", kind="valve", pins=[5, 6, 13], pulse_ms=40)
    actuator = GpioActuator(config, gpio=gpio, sleep=gpio.sleep)
    gpio.events.clear()
    actuator.fire(2)
    actuator.fire(0)
    assert gpio.events == [
        (0.0, "out", 13, 1),
        (pytest.approx(0.04), "out", 13, 0),
        (pytest.approx(0.04), "out", 5, 1),
        (pytest.approx(0.08), "out", 5, 0),
    ]
    with pytest.raises(ActuatorError, match="bin 3 does not exist"):
        actuator.fire(3)
    gpio.events.clear()
    actuator.close()
    actuator.close()  # idempotent
    assert [e[1:] for e in gpio.events] == [
        ("out", 5, 0), ("out", 6, 0), ("out", 13, 0), ("cleanup", (5, 6, 13), None)
    ]  # fmt: skip
    with pytest.raises(ActuatorError, match="closed"):
        actuator.fire(0)


def test_valve_goes_low_even_when_the_wait_is_interrupted() -> None:
    gpio = FakeGPIO()

    def interrupted(_s: float) -> None:
        raise KeyboardInterrupt

    config = ActuatorConfig(driver="gpio", kind="valve", pins=[5, 6])
    actuator = GpioActuator(config, gpio=gpio, sleep=interrupted)
    gpio.events.clear()
    with pytest.raises(KeyboardInterrupt):
        actuator.fire(1)
    assert [e[1:] for e in gpio.events] == [("out", 6, 1), ("out", 6, 0)]


def test_a_gpio_failure_is_an_actuator_error() -> None:
    gpio = FakeGPIO()
    actuator = GpioActuator(ActuatorConfig(driver="gpio", pins=[5, 6]), gpio=gpio, sleep=gpio.sleep)
    gpio.fail_output = True
    with pytest.raises(ActuatorError, match="firing bin 1 failed"):
        actuator.fire(1)


def test_servo_gate_turns_to_the_bins_angle() -> None:
    gpio = FakeGPIO()
    config = ActuatorConfig(
        driver="gpio", kind="servo", servo_pin=18, servo_angles=[90, 0, 180], pulse_ms=300
    )
    actuator = GpioActuator(config, gpio=gpio, sleep=gpio.sleep)
    actuator.fire(2)
    actuator.close()
    pwm = [e for e in gpio.events if e[1].startswith("pwm")]
    assert pwm == [
        (0.0, "pwm", 18, 7.5),  # parked at the review bin's angle
        (0.0, "pwm", 18, 12.5),
        (pytest.approx(0.3), "pwm_stop", 18, None),
    ]
    assert servo_duty(0) == pytest.approx(2.5) and servo_duty(180) == pytest.approx(12.5)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ActuatorConfig(driver="gpio", kind="valve"), "actuator.pins is empty"),
        (ActuatorConfig(driver="gpio", pins=[5, 5]), "distinct BCM pins"),
        (ActuatorConfig(driver="gpio", pins=[5], review_bin=1), "actuator.review_bin 1"),
        (ActuatorConfig(driver="gpio", kind="servo"), "servo_angles is empty"),
        (ActuatorConfig(driver="gpio", kind="servo", servo_angles=[200]), "within 0..180"),
    ],
)
def test_bad_actuator_configuration_names_the_key(config: ActuatorConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GpioActuator(config, gpio=FakeGPIO())


def test_open_actuator_picks_the_simulator_with_sim_and_explains_missing_gpio() -> None:
    world = _world()
    assert isinstance(open_actuator(apply_sim(Settings()), world), SimActuator)
    settings = Settings()
    settings.actuator.pins = [5, 6]
    try:
        import RPi.GPIO  # type: ignore[import-not-found]  # noqa: F401
    except (ImportError, RuntimeError):
        with pytest.raises(ActuatorError, match=r"RPi\.GPIO is not available"):
            open_actuator(settings)
    else:  # pragma: no cover - only on a Pi
        pytest.skip("RPi.GPIO is installed here: the missing-library message cannot be shown")
