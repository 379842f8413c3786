"""Which firmware the harness runs is one setting, PARTRIG_FIRMWARE_ELF, checked at the edge."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

client = sys.modules["partrig_simavr_client"]  # loaded by path in conftest.py


def test_unset_means_partrigs_own_firmware(monkeypatch):
    monkeypatch.delenv(client.ELF_SETTING, raising=False)
    assert client.chosen_elf() is None


def test_a_missing_file_is_refused_naming_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(client.ELF_SETTING, str(tmp_path / "nope.elf"))
    with pytest.raises(client.HarnessError, match=r"PARTRIG_FIRMWARE_ELF=.*is not a file"):
        client.chosen_elf()


def test_a_hex_file_is_refused_as_not_an_elf(monkeypatch, tmp_path):
    hex_file = tmp_path / "Marlin.hex"
    hex_file.write_text(":100000000C94\n")
    monkeypatch.setenv(client.ELF_SETTING, str(hex_file))
    with pytest.raises(client.HarnessError, match="not an ELF file"):
        client.chosen_elf()


@pytest.mark.firmware
def test_build_returns_the_chosen_elf_and_tells_its_dialect(monkeypatch, firmware_build, tmp_path):
    ours, _ = firmware_build
    assert client.firmware_dialect(Path(ours)) in ("partrig", "marlin")
    other = tmp_path / "other.elf"
    other.write_bytes(b"\x7fELF" + b"\0" * 60 + b"FIRMWARE_NAME:Marlin bugfix-2.1.x")
    monkeypatch.setenv(client.ELF_SETTING, str(other))
    elf, harness = client.build()
    assert elf == other.resolve() and harness.is_file()
    assert client.firmware_dialect(elf) == "marlin"
    (tmp_path / "plain.elf").write_bytes(b"\x7fELF")
    assert client.firmware_dialect(tmp_path / "plain.elf") == "unknown"
