/* Homing on the X-min endstop, the way Marlin does it: a fast approach, a short back-off and a
 * slow re-approach, so the zero is where the switch trips at low speed (repeatable to a step).
 *
 * WHY a limit of one turn: on a turntable the switch passes once per revolution; a longer
 * search means the switch or its wiring is broken, and the motor must not spin forever. */
#include "homing.h"

#include "config.h"
#include "idle.h"
#include "number.h"
#include "pins.h"
#include "planner.h"
#include "stepper.h"
#include "uart.h"

static int32_t units_steps(int32_t units) {
    int32_t steps = 0;
    units_to_steps((int64_t)units * E6, &steps);
    return steps;
}

static uint8_t approach(float feed_ups, int32_t units) {
    stepper_take_endstop_hit();
    planner_move_steps(-units_steps(units), feed_ups, BLOCK_HOMING);
    synchronize(1);
    return stepper_take_endstop_hit();
}

static uint8_t fail(void) {
    planner_sync_to_stepper();
    UART_PUTS("Error:Homing Failed\n");
    return 0;
}

uint8_t home_x(void) {
    float fast = HOMING_FEED_UPS < motion.max_feed_ups ? HOMING_FEED_UPS : motion.max_feed_ups;
    float slow = fast / HOMING_SLOW_DIVISOR;
    busy_begin();
    synchronize(1);
    if (endstop_triggered()) {
        /* already on the switch: leave it first so the approach sees a clean edge */
        planner_move_steps(units_steps(2 * HOMING_BACKOFF_UNITS), fast, 0);
        synchronize(1);
        if (endstop_triggered()) {
            busy_end();
            return fail();
        }
    }
    uint8_t ok = approach(fast, HOMING_RANGE_UNITS);
    if (ok) {
        planner_move_steps(units_steps(HOMING_BACKOFF_UNITS), fast, 0);
        synchronize(1);
        ok = approach(slow, 2 * HOMING_BACKOFF_UNITS);
    }
    busy_end();
    if (!ok) return fail();
    planner_sync_to_stepper();
    planner_set_position(0);
    return 1;
}
