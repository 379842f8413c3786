#include "idle.h"

#include <avr/interrupt.h>
#include <avr/sleep.h>

#include "clock.h"
#include "config.h"
#include "emergency.h"
#include "pins.h"
#include "planner.h"
#include "queue.h"
#include "stepper.h"
#include "uart.h"

uint8_t busy_interval_s = BUSY_INTERVAL_DEFAULT_S;

static uint8_t busy_depth;
static uint32_t busy_last_ms;

void busy_begin(void) {
    if (busy_depth++ == 0) busy_last_ms = millis();
}

void busy_end(void) {
    if (busy_depth) busy_depth--;
}

void kill_forever(void) {
    stepper_kill();
    output_set(8, 0);
    output_set(9, 0);
    output_set(10, 0);
    UART_PUTS("Error:Printer halted. kill() called!\n");
    uart_flush_tx();
    /* NOTE: stay alive (interrupts on, so the message drains and the board still answers a
     * programmer) but ignore everything: only a reset brings the firmware back, as on Marlin. */
    for (;;) {
        set_sleep_mode(SLEEP_MODE_IDLE);
        sleep_mode();
    }
}

void idle(void) {
    if (emergency_killed) kill_forever();
    if (emergency_quickstop) {
        emergency_quickstop = 0;
        planner_sync_to_stepper();
    }
    queue_read_serial();
    if (busy_depth && busy_interval_s) {
        uint32_t now = millis();
        if (now - busy_last_ms >= (uint32_t)busy_interval_s * 1000UL) {
            busy_last_ms = now;
            UART_PUTS("echo:busy: processing\n");
        }
    }
}

void synchronize(uint8_t busy) {
    if (busy) busy_begin();
    while (stepper_busy()) {
        idle();
        /* NOTE: sleep until the next interrupt (a step tick, a byte, the 1 ms clock) instead of
         * spinning; on the bench this also lets simavr skip idle cycles. */
        cli();
        if (stepper_busy() && !uart_rx_waiting() && !emergency_killed && !emergency_quickstop) {
            set_sleep_mode(SLEEP_MODE_IDLE);
            sleep_enable();
            sei();
            sleep_cpu();
            sleep_disable();
        }
        sei();
    }
    if (busy) busy_end();
}
