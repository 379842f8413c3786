/* Emergency parser: recognises `M112` (kill) and `M410` (quick stop) in the received byte
 * stream, with or without a line number, and acts at once from the RX interrupt.
 *
 * WHY not wait for the command queue: the queue may be stuck behind a blocking command (M400,
 * G28) or full of moves; an emergency stop that waits for them is no emergency stop.  Like
 * Marlin's, this parser does not check the checksum: stopping on a corrupted M112 is safe. */
#include "emergency.h"

#include "stepper.h"

volatile uint8_t emergency_killed;
volatile uint8_t emergency_quickstop;

enum { EP_START, EP_LINENO, EP_AFTER_N, EP_M_DIGITS, EP_IGNORE };

static uint8_t state = EP_START;
static uint16_t code;
static uint8_t digits;

static void fire(void) {
    if (digits == 0) return;
    if (code == 112) {
        stepper_kill();
        emergency_killed = 1;
    } else if (code == 410) {
        stepper_quick_stop();
        emergency_quickstop = 1;
    }
}

static void start_m(void) {
    code = 0;
    digits = 0;
    state = EP_M_DIGITS;
}

void emergency_feed(uint8_t c) {
    if (c == '\n' || c == '\r') {
        if (state == EP_M_DIGITS) fire();
        state = EP_START;
        return;
    }
    switch (state) {
    case EP_START:
        if (c == 'N' || c == 'n') state = EP_LINENO;
        else if (c == 'M' || c == 'm') start_m();
        else if (c != ' ') state = EP_IGNORE;
        break;
    case EP_LINENO:
        if (c == ' ') state = EP_AFTER_N;
        else if (!((c >= '0' && c <= '9') || c == '-')) state = EP_IGNORE;
        break;
    case EP_AFTER_N:
        if (c == 'M' || c == 'm') start_m();
        else if (c != ' ') state = EP_IGNORE;
        break;
    case EP_M_DIGITS:
        if (c >= '0' && c <= '9') {
            code = (uint16_t)(code * 10U + (uint16_t)(c - '0'));
            if (++digits > 4) state = EP_IGNORE;
        } else {
            if (c == ' ' || c == '*' || c == ';') fire();
            state = EP_IGNORE;
        }
        break;
    default:
        break;
    }
}
