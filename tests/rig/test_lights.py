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
