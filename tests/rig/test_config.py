"""The configuration file: validation names the key and what is allowed; show round-trips."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from rig.config import (
    CONFIG_ENV,
    apply_sim,
    dump_settings,
    load_settings,
    parse_settings,
)
from rig.errors import ConfigError


def test_no_file_means_every_default(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.source is None and s.sim is False
    assert s.web.host == "127.0.0.1" and s.serial.baud == 250000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"turntable": {"max_speed_deg_s": -5}}, "turntable.max_speed_deg_s: Input should be"),
        ({"web": {"port": 70000}}, "web.port: Input should be less than or equal to 65535"),
        ({"camera": {"driver": "webcam"}}, "camera.driver: must be one of"),
        ({"turntable": {"speed": 3}}, "turntable.speed: unknown key"),
        ({"serail": {}}, "serail: unknown key"),
        ({"sorter": {"confidence_threshold": "high"}}, "sorter.confidence_threshold"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key_and_what_is_allowed(raw, expected):
    with pytest.raises(ConfigError) as info:
        parse_settings(raw)
    assert expected in str(info.value)


def test_every_problem_is_listed_at_once(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_settings({"web": {"port": 0}, "lights": {"nope": 1}})
    text = str(info.value)
    assert "web.port" in text and "lights.nope" in text


def test_the_file_comes_from_the_argument_or_the_environment(tmp_path, monkeypatch):
    a = tmp_path / "a.toml"
    a.write_text("[web]\nport = 8123\n")
    b = tmp_path / "b.toml"
    b.write_text("[web]\nport = 8124\n")
    monkeypatch.setenv(CONFIG_ENV, str(b))
    assert load_settings(a).web.port == 8123
    assert load_settings().web.port == 8124
    assert load_settings().source == b


def test_a_missing_file_and_broken_toml_get_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match="does not exist; create it or unset PARTRIG_CONFIG"):
        load_settings()
    broken = tmp_path / "broken.toml"
    broken.write_text("[web\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)


def test_sim_switches_every_device_to_its_simulator(tmp_path: Path):
    path = tmp_path / "p.toml"
    path.write_text('[camera]\ndriver = "picamera2"\n[actuator]\ndriver = "gpio"\n')
    s = load_settings(path, sim=True)
    assert (s.sim, s.camera.driver, s.actuator.driver) == (True, "sim", "sim")
    real = load_settings(path)
    assert real.camera.driver == "picamera2" and apply_sim(real) is not real


def test_show_writes_toml_that_reads_back_to_the_same_settings():
    s = parse_settings(
        {
            "sorter": {"bins": {"brick-2x4-red": 1, "screw m4.5": 2}},
            "auth": {"trainer_keys": ['k"ey']},
            "web": {"accel_redirect": "/_partrig_snapshots"},
        }
    )
    text = dump_settings(s)
    again = parse_settings(tomllib.loads(text))
    assert again.model_dump() == s.model_dump()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"web": {"trusted_proxies": ["nginx"]}}, "web.trusted_proxies: Value error, 'nginx'"),
        ({"web": {"allowed_hosts": ["a b"]}}, "web.allowed_hosts: Value error, 'a b' is not"),
        ({"auth": {"login_attempts_per_min": 0}}, "auth.login_attempts_per_min: Input should"),
        ({"capture": {"max_shots": 0}}, "capture.max_shots: Input should be greater"),
    ],
)
def test_safety_limits_are_checked_naming_the_key(raw, expected):
    with pytest.raises(ConfigError) as info:
        parse_settings(raw)
    assert expected in str(info.value)


def test_safety_limits_have_their_documented_defaults():
    s = parse_settings({"web": {"trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]}})
    assert s.web.trusted_proxies == ["127.0.0.1", "10.0.0.0/8"]
    assert (s.web.max_body_kb, s.models.max_upload_mb, s.capture.max_shots) == (64, 160, 20000)
    assert (s.auth.login_attempts_per_min, s.auth.login_attempts_global_per_min) == (10, 30)
    assert s.auth.login_concurrency == 2 and parse_settings({}).web.trusted_proxies == []
