"""The harness reads a MOSFET output's duty from the timer as the firmware set it up.

Marlin runs Timer4 (D8) with ICR4 as TOP at 1 kHz, partrig's firmware runs it in 8-bit fast
PWM: each case below is a tiny AVR program that sets the timers exactly so and then idles,
built with avr-gcc into the test's folder and run in the harness.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.firmware

PROGRAM = r"""
#include <avr/io.h>
int main(void) {
    DDRH |= _BV(PH5) | _BV(PH6);
    DDRB |= _BV(PB4);
    PORTB |= _BV(PB4);                 /* D10: plain output, high */
    ICR4 = T4_ICR;
    OCR4C = T4_OCR;
    TCCR4A = T4_TCCR4A;
    TCCR4B = T4_TCCR4B;
    OCR2B = T2_OCR;
    TCCR2A = T2_TCCR2A;
    TCCR2B = _BV(CS22);
    for (;;) {}
}
"""

# (name, -D defines, expected duty on D8, on D9, on D10)
CASES = [
    # Marlin: fast PWM with ICR4 as TOP (mode 14), /8 -> 1 kHz; 50 % is OCR4C 1000 of 1999.
    (
        "marlin_fast_icr_half",
        {
            "T4_ICR": 1999,
            "T4_OCR": 1000,
            "T4_TCCR4A": "_BV(COM4C1)|_BV(WGM41)",
            "T4_TCCR4B": "_BV(WGM43)|_BV(WGM42)|_BV(CS41)",
            "T2_OCR": 76,
            "T2_TCCR2A": "_BV(COM2B1)|_BV(WGM20)",
        },
        1000 / 1999,
        76 / 255,
        1.0,
    ),
    # Phase-correct PWM with ICR4 as TOP (mode 10), inverting: OCR 250 of 1000 is 75 % on.
    (
        "phase_correct_icr_inverting",
        {
            "T4_ICR": 1000,
            "T4_OCR": 250,
            "T4_TCCR4A": "_BV(COM4C1)|_BV(COM4C0)|_BV(WGM41)",
            "T4_TCCR4B": "_BV(WGM43)|_BV(CS41)",
            "T2_OCR": 200,
            "T2_TCCR2A": "_BV(COM2B1)|_BV(WGM21)|_BV(WGM20)",
        },
        0.75,
        200 / 255,
        1.0,
    ),
    # partrig's firmware: 8-bit fast PWM (mode 5), OCR4C 128, ICR4 left at whatever it holds.
    (
        "partrig_fast_8bit",
        {
            "T4_ICR": 40000,
            "T4_OCR": 128,
            "T4_TCCR4A": "_BV(COM4C1)|_BV(WGM40)",
            "T4_TCCR4B": "_BV(WGM42)|_BV(CS41)|_BV(CS40)",
            "T2_OCR": 3,
            "T2_TCCR2A": "_BV(COM2B1)|_BV(WGM21)|_BV(WGM20)",
        },
        128 / 255,
        3 / 255,
        1.0,
    ),
]


def build_program(tmp_path: Path, defines: dict[str, object]) -> Path:
    source = tmp_path / "pwm.c"
    source.write_text(PROGRAM)
    elf = tmp_path / "pwm.elf"
    flags = [f"-D{k}={v}" for k, v in defines.items()]
    cmd = ["avr-gcc", "-mmcu=atmega2560", "-Os", *flags, str(source), "-o", str(elf)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return elf


@pytest.mark.parametrize(("name", "defines", "d8", "d9", "d10"), CASES, ids=[c[0] for c in CASES])
def test_the_harness_reads_the_duty_from_the_timers_mode_top_and_16_bit_compare(
    start_board, tmp_path, name, defines, d8, d9, d10
):
    if shutil.which("avr-gcc") is None:
        pytest.skip("avr-gcc missing")
    board = start_board(build_program(tmp_path, defines), tmp_path / "tty")
    deadline = time.monotonic() + 10
    while board.sim_time() < 0.01 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert board.duty(8) == pytest.approx(d8, abs=1e-4)
    assert board.duty(9) == pytest.approx(d9, abs=1e-4)
    assert board.duty(10) == pytest.approx(d10, abs=1e-4)
    # light? is the same duty on the 0..255 scale partrig's M42 S uses
    assert board.light(8) == round(d8 * 255)
    assert board.light(9) == round(d9 * 255)
