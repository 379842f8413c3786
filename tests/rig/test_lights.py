"""Lights on both firmware dialects, on every MOSFET pin."""

from __future__ import annotations

import pytest

from rig.errors import GcodeError


@pytest.mark.parametrize("firmware", ["partrig", "marlin"])
@pytest.mark.parametrize("pin", ["D8", "D9", "D10"])
def test_lights_switch_and_dim_on_both_dialects(sim_rig, firmware, pin):
    rig = sim_rig(firmware, lights={"pin": pin, "level": 0.6})
    fw = rig.firmware_sim
    rig.lights.on()
    assert rig.lights.level == 0.6
    assert fw.light_level() == pytest.approx(round(0.6 * 255) / 255)
    rig.lights.set(0.25)
    assert fw.light_level() == pytest.approx(round(0.25 * 255) / 255)
    rig.lights.off()
    rig.clock.advance(0.1)  # off does not wait for Marlin's fan update (nothing shoots dark)
    assert fw.light_level() == 0 and rig.lights.level == 0


def test_marlin_uses_the_fan_command_on_d9_and_m42_i1_elsewhere(sim_rig):
    rig = sim_rig("marlin", lights={"pin": "D9"})
    assert rig.lights.command_for(1.0) == "M106 S255"
    assert rig.lights.command_for(0.0) == "M107"
    rig.lights.pin = 10
    assert rig.lights.command_for(0.5) == "M42 I1 P10 S128"


def test_our_firmware_uses_plain_m42(sim_rig):
    rig = sim_rig("partrig", lights={"pin": "D10"})
    assert rig.lights.command_for(1.0) == "M42 P10 S255"


def test_levels_outside_0_to_1_are_refused(sim_rig):
    rig = sim_rig()
    for bad in (-0.1, 1.5, float("nan"), "high"):
        with pytest.raises(GcodeError, match="0 to 1"):
            rig.lights.set(bad)  # type: ignore[arg-type]


def test_on_marlin_a_fan_change_is_on_the_pin_when_set_returns(sim_rig):
    # Marlin writes the fan PWM at 10 Hz: the level lands up to 100 ms after the ok.
    rig = sim_rig("marlin", lights={"pin": "D9", "level": 0.8})
    fw = rig.firmware_sim
    for level in (0.8, 0.3, 1.0):
        rig.lights.set(level)
        assert fw.light_level() == pytest.approx(round(level * 255) / 255)
    before = rig.clock.now()
    rig.lights.set(1.0)  # no change: nothing to wait for
    assert rig.clock.now() == before


def test_our_firmware_and_m42_apply_at_once_without_waiting(sim_rig):
    for firmware, pin in (("partrig", "D9"), ("marlin", "D8")):
        rig = sim_rig(firmware, lights={"pin": pin})
        before = rig.clock.now()
        rig.lights.set(0.5)
        assert rig.clock.now() == before
        assert rig.firmware_sim.light_level() == pytest.approx(128 / 255)


def test_without_the_wait_marlin_would_show_the_old_level(sim_rig):
    rig = sim_rig("marlin", lights={"pin": "D9"})
    rig.clock.advance(0.05)
    rig.lights.set(0.6, settle=False)
    assert rig.firmware_sim.light_level() == 0  # the still would be dark
    rig.lights.settle()
    assert rig.firmware_sim.light_level() == pytest.approx(153 / 255)
