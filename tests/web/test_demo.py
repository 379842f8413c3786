"""``partrig serve --demo DIR``: one configuration the page and the command line share."""

from __future__ import annotations

import stat

from rig.config import load_settings
from web.demo import DEMO_BINS, prepare_demo, usage
from web.security import role_for_key, verify_password


def test_the_demo_writes_its_configuration_once_and_a_fresh_password_each_start(tmp_path):
    first = prepare_demo(tmp_path / "demo-data")
    config = tmp_path / "demo-data" / "partrig.toml"
    assert first.config == config
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.env.stat().st_mode) == 0o600
    on_disk = load_settings(config)
    # NOTE: what the CLI reads through PARTRIG_CONFIG: the same folder, the simulated rig, keys
    assert on_disk.sim and on_disk.data.dir == (tmp_path / "demo-data").resolve()
    assert role_for_key(on_disk.auth, on_disk.auth.operator_keys[0]) == "operator"
    assert role_for_key(on_disk.auth, on_disk.auth.trainer_keys[0]) == "trainer"
    assert on_disk.sorter.bins == DEMO_BINS
    assert not on_disk.auth.operator_password_hash, "the password is never written down"
    assert verify_password(first.settings.auth.operator_password_hash, first.password)

    second = prepare_demo(tmp_path / "demo-data")
    assert second.settings.auth.operator_keys == first.settings.auth.operator_keys
    assert second.password != first.password
    env = first.env.read_text()
    assert f"export PARTRIG_CONFIG={config}" in env
    assert f"export PARTRIG_KEY={on_disk.auth.trainer_keys[0]}" in env


def test_the_demo_says_how_to_use_the_command_line_against_it(tmp_path):
    demo = prepare_demo(tmp_path / "d")
    text = usage(demo, "http://127.0.0.1:8000/")
    assert ".venv/bin/activate" in text and str(demo.env) in text
    assert "partrig dataset stats" in text
