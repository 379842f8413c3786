/* Positions are int64 millionths of a unit and targets are always computed from the absolute
 * commanded position (target = round(X * steps_per_unit)), never by adding step deltas, so no
 * rounding error can accumulate however many moves run (contracts.md: "No drift"). */
#include "planner.h"

#include <math.h>

#include "config.h"
#include "idle.h"
#include "number.h"
#include "stepper.h"

#define MAX_STEPS 2000000000LL

motion_settings_t motion;

static int64_t pos_e6;
static int32_t pos_steps;

void planner_init(void) {
    motion.steps_per_unit_e6 = DEFAULT_STEPS_PER_UNIT_E6;
    motion.max_feed_ups = DEFAULT_MAX_FEED_UPS;
    motion.accel_ups2 = DEFAULT_ACCEL_UPS2;
    motion.travel_accel_ups2 = 0.0f;
    motion.feed_upm = DEFAULT_FEED_UPM;
    motion.relative = 0;
    pos_e6 = 0;
    pos_steps = 0;
}

uint8_t units_to_steps(int64_t x_e6, int32_t *steps) {
    uint8_t neg = x_e6 < 0;
    uint64_t ux = (uint64_t)(neg ? -x_e6 : x_e6);
    uint64_t spu = (uint64_t)motion.steps_per_unit_e6;
    uint64_t whole = ux / (uint64_t)E6, frac = ux % (uint64_t)E6;
    /* NOTE: split into whole and fractional units so every product stays below 2^63 for
     * |X| <= 1e5 units and steps per unit <= 10000 (1e5 * 1e10 and 1e6 * 1e10). */
    if (whole > 100000000ULL) return 0;
    uint64_t s_e6 = whole * spu + (frac * spu + (uint64_t)E6 / 2U) / (uint64_t)E6;
    uint64_t s = (s_e6 + (uint64_t)E6 / 2U) / (uint64_t)E6;
    if (s > (uint64_t)MAX_STEPS) return 0;
    *steps = neg ? -(int32_t)s : (int32_t)s;
    return 1;
}

static float steps_per_unit(void) { return (float)motion.steps_per_unit_e6 * 1.0e-6f; }

static void make_block(block_t *b, int32_t steps, float feed_ups, uint8_t flags) {
    float spu = steps_per_unit();
    float v = feed_ups < motion.max_feed_ups ? feed_ups : motion.max_feed_ups;
    float a = motion.accel_ups2;
    if (motion.travel_accel_ups2 > 0.0f && motion.travel_accel_ups2 < a) {
        a = motion.travel_accel_ups2;
    }
    float v_steps = v * spu;
    float a_steps = a * spu;
    if (a_steps < 1.0f) a_steps = 1.0f;
    if (a_steps > 4.0e6f) a_steps = 4.0e6f;
    float v_max = v_steps * 1000.0f;
    float limit = (float)STEP_TICK_HZ * 1000.0f;
    if (v_max > limit) v_max = limit;
    if (v_max < 1000.0f) v_max = 1000.0f; /* at least one step per second */
    float v_min = sqrtf(2.0f * a_steps) * 1000.0f; /* see stepper.c */
    if (v_min > v_max) v_min = v_max;
    b->steps = steps;
    b->v_max = (uint32_t)v_max;
    b->v_min = (uint32_t)v_min;
    b->accel = (uint32_t)a_steps;
    b->flags = flags;
}

static void push_block(const block_t *b) {
    while (!stepper_push(b)) idle();
}

uint8_t planner_move_to(int64_t x_e6, float feed_ups, uint8_t flags) {
    int32_t target;
    if (!units_to_steps(x_e6, &target)) return 0;
    int32_t delta = target - pos_steps;
    pos_e6 = x_e6;
    pos_steps = target;
    if (delta != 0) {
        block_t b;
        make_block(&b, delta, feed_ups, flags);
        push_block(&b);
    }
    return 1;
}

void planner_move_steps(int32_t steps, float feed_ups, uint8_t flags) {
    block_t b;
    make_block(&b, steps, feed_ups, flags);
    push_block(&b);
    pos_steps += steps;
}

int64_t planner_position_e6(void) { return pos_e6; }

int32_t planner_position_steps(void) { return pos_steps; }

uint8_t planner_set_position(int64_t x_e6) {
    int32_t steps;
    if (!units_to_steps(x_e6, &steps)) return 0;
    synchronize(0);
    pos_e6 = x_e6;
    pos_steps = steps;
    stepper_set_position(steps);
    return 1;
}

void planner_sync_to_stepper(void) {
    stepper_quick_stop();
    pos_steps = stepper_position();
    /* X = steps / steps_per_unit to a thousandth of a unit, in integers: steps * 1e9 fits
     * an int64 for any int32 step count. */
    int64_t x_e3 = (int64_t)pos_steps * 1000000000LL / motion.steps_per_unit_e6;
    pos_e6 = x_e3 * 1000LL;
}
