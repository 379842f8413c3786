/* Command dispatch.  Every handler validates its own words; a bad value is reported with an
 * `echo:` line saying what to fix and the command still gets its `ok`, so the host never
 * stalls on a typo (Marlin behaves the same way). */
#include "commands.h"

#include <avr/pgmspace.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "homing.h"
#include "idle.h"
#include "number.h"
#include "pins.h"
#include "planner.h"
#include "queue.h"
#include "stepper.h"
#include "uart.h"

static void echo_error(const char *msg_p) {
    UART_PUTS("echo:");
    uart_puts_p(msg_p);
    uart_newline();
}

static uint8_t positive_float(const char *cmd, char letter, float *out) {
    const char *w = word(cmd, letter);
    int64_t v;
    if (!w) return 0;
    if (!parse_e6(w, &v) || v <= 0) {
        echo_error(PSTR("value must be a positive number"));
        return 0;
    }
    *out = (float)v * 1.0e-6f;
    return 1;
}

static void cmd_move(const char *cmd) {
    float f;
    if (positive_float(cmd, 'F', &f)) motion.feed_upm = f;
    const char *w = word(cmd, 'X');
    if (!w) return;
    int64_t x;
    if (!parse_e6(w, &x)) {
        echo_error(PSTR("G1 X needs a number"));
        return;
    }
    if (motion.relative) x += planner_position_e6();
    if (!planner_move_to(x, motion.feed_upm / 60.0f, 0)) {
        echo_error(PSTR("X out of range: |X * steps per unit| must stay below 2e9 steps"));
    }
}

static void cmd_dwell(const char *cmd) {
    int32_t ms = 0, s = 0;
    const char *w;
    if ((w = word(cmd, 'P'))) parse_i32(w, &ms);
    if ((w = word(cmd, 'S'))) parse_i32(w, &s);
    uint32_t total = (uint32_t)(ms > 0 ? ms : 0) + (uint32_t)(s > 0 ? s : 0) * 1000UL;
    synchronize(1);
    busy_begin();
    uint32_t start = millis();
    while (millis() - start < total) idle();
    busy_end();
}

static void cmd_set_position(const char *cmd) {
    const char *w = word(cmd, 'X');
    int64_t x;
    if (!w) return;
    if (!parse_e6(w, &x) || !planner_set_position(x)) {
        echo_error(PSTR("G92 X needs a number within range"));
    }
}

static void cmd_report_position(void) {
    UART_PUTS("X:");
    uart_print_fixed(planner_position_e6(), 2);
    UART_PUTS(" Y:0.00 Z:0.00 E:0.00 Count X:");
    uart_print_i32(stepper_position());
    UART_PUTS(" Y:0 Z:0\n");
}

static void cmd_firmware_info(void) {
    UART_PUTS("FIRMWARE_NAME:partrig " FIRMWARE_VERSION
              " (ATmega2560 RAMPS 1.4 turntable) SOURCE_CODE_URL:partrig/firmware"
              " PROTOCOL_VERSION:1.0 MACHINE_TYPE:turntable EXTRUDER_COUNT:0"
              " AXIS_COUNT:1\n");
    UART_PUTS("Cap:SERIAL_XON_XOFF:0\nCap:EEPROM:0\nCap:AUTOREPORT_TEMP:0\n"
              "Cap:ADVANCED_OK:1\nCap:EMERGENCY_PARSER:1\nCap:X_MIN_ENDSTOP:1\n"
              "Cap:QUICK_STOP:1\nCap:HOST_ACTION_COMMANDS:0\n");
}

static void cmd_steps_per_unit(const char *cmd) {
    const char *w = word(cmd, 'X');
    int64_t v;
    if (!w) {
        UART_PUTS("echo:M92 X");
        uart_print_fixed(motion.steps_per_unit_e6, 6);
        uart_newline();
        return;
    }
    if (!parse_e6(w, &v) || v <= 0 || v > 10000LL * E6) {
        echo_error(PSTR("M92 X must be between 0 and 10000 steps per unit"));
        return;
    }
    synchronize(0);
    /* keep the commanded position in units; the step position follows the new scale */
    motion.steps_per_unit_e6 = v;
    planner_set_position(planner_position_e6());
}

static void cmd_output(uint8_t pin, const char *cmd, int32_t fallback) {
    int32_t level = fallback;
    const char *w = word(cmd, 'S');
    if (w) parse_i32(w, &level);
    if (level < 0 || level > 255) {
        echo_error(PSTR("S must be 0..255"));
        return;
    }
    if (!output_set(pin, (uint8_t)level)) {
        echo_error(PSTR("M42 P must be 8, 9 or 10 (the RAMPS MOSFET outputs)"));
    }
}

static void cmd_m42(const char *cmd) {
    int32_t pin = -1;
    const char *w = word(cmd, 'P');
    if (w) parse_i32(w, &pin);
    cmd_output(pin >= 0 && pin < 256 ? (uint8_t)pin : 0, cmd, 0);
}

static void cmd_unknown(const char *cmd) {
    UART_PUTS("echo:Unknown command: \"");
    uart_puts(cmd);
    UART_PUTS("\"\n");
}

static uint8_t cmd_m(int32_t code, const char *cmd) {
    float f;
    int32_t n;
    const char *w;
    switch (code) {
    case 17: motor_enable(1); break;
    case 18:
    case 84: synchronize(0); motor_enable(0); break;
    case 42: cmd_m42(cmd); break;
    case 92: cmd_steps_per_unit(cmd); break;
    case 105: UART_PUTS("ok T:0.00 /0.00\n"); return 1;
    case 106: cmd_output(9, cmd, 255); break;
    case 107: output_set(9, 0); break;
    case 110:
        if ((w = word(cmd, 'N')) && parse_i32(w, &n)) queue_set_last_line(n);
        break;
    case 112: kill_forever();
    case 113:
        if ((w = word(cmd, 'S')) && parse_i32(w, &n) && n >= 0 && n <= 60) busy_interval_s = (uint8_t)n;
        break;
    case 114: cmd_report_position(); break;
    case 115: cmd_firmware_info(); break;
    case 119:
        UART_PUTS("Reporting endstop status\nx_min: ");
        if (endstop_triggered()) UART_PUTS("TRIGGERED\n");
        else UART_PUTS("open\n");
        break;
    case 201: if (positive_float(cmd, 'X', &f)) motion.accel_ups2 = f; break;
    case 203: if (positive_float(cmd, 'X', &f)) motion.max_feed_ups = f; break;
    case 204:
        if (positive_float(cmd, 'S', &f) || positive_float(cmd, 'T', &f)) motion.travel_accel_ups2 = f;
        break;
    case 400: synchronize(1); break;
    case 410: planner_sync_to_stepper(); break;
    case 999: break; /* no stop() state here; after M112 only a reset helps */
    default: cmd_unknown(cmd); break;
    }
    return 0;
}

static uint8_t cmd_g(int32_t code, const char *cmd) {
    switch (code) {
    case 0:
    case 1: cmd_move(cmd); break;
    case 4: cmd_dwell(cmd); break;
    case 28:
        /* "G28" and "G28 X" home X; a build without the switch never sees G28 from partrig */
        home_x();
        break;
    case 90: motion.relative = 0; break;
    case 91: motion.relative = 1; break;
    case 92: cmd_set_position(cmd); break;
    default: cmd_unknown(cmd); break;
    }
    return 0;
}

uint8_t command_execute(const char *cmd) {
    char letter = cmd[0];
    int32_t code;
    if (letter >= 'a' && letter <= 'z') letter = (char)(letter - 'a' + 'A');
    if ((letter != 'G' && letter != 'M') || !parse_i32(cmd + 1, &code) || cmd[1] < '0' ||
        cmd[1] > '9') {
        cmd_unknown(cmd);
        return 0;
    }
    return letter == 'G' ? cmd_g(code, cmd) : cmd_m(code, cmd);
}
