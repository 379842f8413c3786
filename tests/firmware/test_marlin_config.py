"""firmware/marlin/config.ini: the option list applies as Marlin's script reads it, and names
every option partrig needs from stock Marlin.

The full Marlin build cannot run here (Marlin's source is not in this repository); it was
verified by hand (docs/firmware.md records the commit and the result).  These tests check the
list itself and firmware/marlin/apply_config.py, which applies it for the Makefile route.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from rig.config import SerialConfig, TurntableConfig

ROOT = Path(__file__).resolve().parents[2]
INI = ROOT / "firmware" / "marlin" / "config.ini"

_spec = importlib.util.spec_from_file_location(
    "partrig_marlin_apply_config", ROOT / "firmware" / "marlin" / "apply_config.py"
)
assert _spec is not None and _spec.loader is not None
apply_config = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = apply_config
_spec.loader.exec_module(apply_config)


@pytest.fixture(scope="module")
def options() -> dict[str, str]:
    """The options Marlin's configuration script would apply from config.ini, by name."""
    pairs = apply_config.selected_options(apply_config.read_ini(INI))
    names = [name.upper() for name, _ in pairs]
    assert len(names) == len(set(names)), "an option is listed twice"
    return {name.upper(): value for name, value in pairs}


def array(value: str) -> list[str]:
    match = re.fullmatch(r"\{\s*(.*?)\s*\}", value)
    assert match, f"{value!r} is not a {{ ... }} array"
    return [v.strip() for v in match[1].split(",")]


def test_ini_use_config_applies_every_section_of_the_list():
    cp = apply_config.read_ini(INI)
    listed = sum(
        1
        for section in cp.sections()
        if section.startswith("config:")
        for key, _ in cp.items(section)
        if not key.startswith("ini_")
    )
    assert listed > 30
    assert len(apply_config.selected_options(cp)) == listed


def test_ini_use_config_base_would_apply_nothing(tmp_path):
    # the shipped list once said `base`: Marlin then applies only [config:base]
    ini = tmp_path / "config.ini"
    ini.write_text(
        INI.read_text().replace("ini_use_config           = all", "ini_use_config = base")
    )
    assert apply_config.selected_options(apply_config.read_ini(ini)) == []


def test_no_value_carries_an_inline_comment():
    # PlatformIO's reader and configparser's differ on inline comments: keep them on own lines
    for section_items in apply_config.read_ini(INI).items():
        for key, value in section_items[1].items():
            assert "#" not in value and ";" not in value, f"{key} = {value!r}"


REQUIRED = {
    "MOTHERBOARD": "BOARD_RAMPS_14_EFB",
    "SERIAL_PORT": "0",
    "EXTRUDERS": "0",
    "TEMP_SENSOR_0": "0",
    "TEMP_SENSOR_BED": "0",
    "PIDTEMP": "off",
    "PREVENT_COLD_EXTRUSION": "off",
    "THERMAL_PROTECTION_HOTENDS": "off",
    "THERMAL_PROTECTION_BED": "off",
    "THERMAL_PROTECTION_CHAMBER": "off",
    "MIN_SOFTWARE_ENDSTOPS": "off",
    "MAX_SOFTWARE_ENDSTOPS": "off",
    "MANUAL_X_HOME_POS": "0",
    "X_HOME_DIR": "-1",
    "USE_XMIN_PLUG": "on",
    "EEPROM_SETTINGS": "off",
    "DEFAULT_STEPPER_DEACTIVE_TIME": "0",
    "MIN_STEPS_PER_SEGMENT": "1",
    "NO_WORKSPACE_OFFSETS": "on",
    "DIRECT_PIN_CONTROL": "on",
    "EMERGENCY_PARSER": "on",
    "ADVANCED_OK": "on",
    "HOST_KEEPALIVE_FEATURE": "on",
}


@pytest.mark.parametrize(("name", "value"), sorted(REQUIRED.items()))
def test_the_list_sets_every_option_partrig_needs(options, name, value):
    assert options.get(name) == value


def test_three_axes_and_no_extruder_element_in_every_per_axis_array(options):
    # EXTRUDERS 0 leaves X, Y, Z: a fourth (E) element, or a missing one, fails the build
    for name in (
        "AXIS_RELATIVE_MODES",
        "DEFAULT_AXIS_STEPS_PER_UNIT",
        "DEFAULT_MAX_FEEDRATE",
        "DEFAULT_MAX_ACCELERATION",
    ):
        assert len(array(options[name])) == 3, name
    assert array(options["AXIS_RELATIVE_MODES"]) == ["false"] * 3


def test_motion_defaults_match_partrigs_default_turntable(options):
    table = TurntableConfig()
    assert float(array(options["DEFAULT_AXIS_STEPS_PER_UNIT"])[0]) == pytest.approx(
        table.steps_per_degree, abs=1e-6
    )
    assert float(array(options["DEFAULT_MAX_FEEDRATE"])[0]) >= table.max_speed_deg_s
    assert float(array(options["DEFAULT_MAX_ACCELERATION"])[0]) >= table.accel_deg_s2
    assert int(options["BAUDRATE"]) == SerialConfig().baud


def test_home_is_zero_and_the_homing_search_is_bounded_to_one_and_a_half_turns(options):
    lo, hi = float(options["X_MIN_POS"]), float(options["X_MAX_POS"])
    assert lo <= float(options["MANUAL_X_HOME_POS"]) == 0 <= hi
    assert float(options["X_BED_SIZE"]) <= hi - lo  # Marlin's static_assert
    # Marlin searches 1.5 x the axis length: at least a full turn finds a switch anywhere,
    # and a missing switch fails the home within two turns
    assert 360 <= 1.5 * (hi - lo) <= 720


HEADER = """\
#define MOTHERBOARD BOARD_RAMPS_14_EFB
#define EXTRUDERS 1
#define PIDTEMP          // See the PID Tuning Guide
//#define MANUAL_X_HOME_POS 0
#define X_MIN_POS 0
"""
ADV = """\
#define AXIS_RELATIVE_MODES { false, false, false, false }
//#define EMERGENCY_PARSER
#define MIN_STEPS_PER_SEGMENT 6   // stock
"""


def marlin_tree(tmp_path: Path) -> Path:
    folder = tmp_path / "Marlin"
    folder.mkdir()
    (folder / "Configuration.h").write_text(HEADER)
    (folder / "Configuration_adv.h").write_text(ADV)
    return tmp_path


def test_apply_config_rewrites_the_headers_as_marlins_script_does(tmp_path):
    tree = marlin_tree(tmp_path)
    report = apply_config.apply_options(
        [
            ("extruders", "0"),
            ("pidtemp", "off"),
            ("manual_x_home_pos", "0"),
            ("x_min_pos", "-5"),
            ("axis_relative_modes", "{ false, false, false }"),
            ("emergency_parser", "on"),
            ("min_steps_per_segment", "1"),
        ],
        apply_config.marlin_folder(tree),
    )
    assert len(report) == 7
    assert (tree / "Marlin" / "Configuration.h").read_text() == (
        "#define MOTHERBOARD BOARD_RAMPS_14_EFB\n"
        "#define EXTRUDERS 0\n"
        "//#define PIDTEMP          // See the PID Tuning Guide\n"
        "#define MANUAL_X_HOME_POS 0\n"
        "#define X_MIN_POS -5\n"
    )
    assert (tree / "Marlin" / "Configuration_adv.h").read_text() == (
        "#define AXIS_RELATIVE_MODES { false, false, false }\n"
        "#define EMERGENCY_PARSER\n"
        "#define MIN_STEPS_PER_SEGMENT 1   // stock\n"
    )


def test_apply_config_refuses_a_name_the_headers_lack_and_writes_nothing(tmp_path):
    tree = marlin_tree(tmp_path)
    with pytest.raises(apply_config.ConfigIniError, match="NO_SUCH_OPTION"):
        apply_config.apply_options(
            [("extruders", "0"), ("no_such_option", "on")], apply_config.marlin_folder(tree)
        )
    assert (tree / "Marlin" / "Configuration.h").read_text() == HEADER


def test_apply_config_command_line_applies_the_shipped_list_or_names_what_is_missing(
    tmp_path, capsys
):
    tree = marlin_tree(tmp_path)
    assert apply_config.main([str(tree)]) == 2  # the mini headers lack most of the list
    assert "not defined in Configuration.h" in capsys.readouterr().err
    assert (tree / "Marlin" / "Configuration.h").read_text() == HEADER
