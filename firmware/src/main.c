/* partrig turntable firmware: boot, then run queued commands one at a time, sleeping between
 * interrupts when there is nothing to do. */
#include <avr/interrupt.h>
#include <avr/sleep.h>
#include <avr/wdt.h>

#include "clock.h"
#include "commands.h"
#include "config.h"
#include "emergency.h"
#include "idle.h"
#include "pins.h"
#include "planner.h"
#include "queue.h"
#include "stepper.h"
#include "uart.h"

int main(void) {
    MCUSR = 0;
    wdt_disable();
    pins_init();
    uart_init();
    clock_init();
    stepper_init();
    planner_init();
    queue_init();
    sei();
    UART_PUTS("start\necho:partrig " FIRMWARE_VERSION " turntable firmware (RAMPS 1.4, X axis)\n");

    for (;;) {
        idle();
        const char *cmd = queue_front();
        if (cmd) {
            uint8_t ok_sent = command_execute(cmd);
            /* NOTE: an M112 that cut a blocking command short must be reported instead of
             * that command's ok: the host must never read "done" for a killed move. */
            if (emergency_killed) kill_forever();
            queue_finish_front(ok_sent);
            continue;
        }
        cli();
        if (!uart_rx_waiting() && !emergency_killed && !emergency_quickstop) {
            set_sleep_mode(SLEEP_MODE_IDLE);
            sleep_enable();
            sei();
            sleep_cpu();
            sleep_disable();
        }
        sei();
    }
}
