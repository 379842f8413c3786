/* Step generation in the Timer1 compare interrupt, at a fixed STEP_TICK_HZ.
 *
 * WHY a fixed-rate DDA instead of reprogramming the timer every step: the per-tick work is a
 * 32-bit add and a compare, the rate changes once per millisecond in whole integers
 * (v += accel, in milli-steps/s), and there is no division in the interrupt.  The step count
 * is exact by construction; only the timing is quantised to one tick (50 us).
 *
 * The ramp: accelerate from (almost) rest by `accel` every millisecond up to v_max, and start braking
 * as soon as the remaining steps are within the braking distance v^2 / (2 a), then keep
 * braking (re-accelerating on the 1 ms grid would overshoot the curve and end the move early).
 * Braking stops at the floor v_min = sqrt(2 a) steps/s, the speed one step before rest, so a
 * move never crawls.  Modelled: a 3200-step 360 deg/s, 720 deg/s^2 move is 0.3 % long. */
#include "stepper.h"

#include <avr/interrupt.h>
#include <avr/io.h>
#include <util/atomic.h>

#include "config.h"
#include "pins.h"

#define DDA_THRESHOLD (STEP_TICK_HZ * 1000UL) /* milli-steps per step, times ticks per s */
#define RING_MASK (PLANNER_SLOTS - 1)

static block_t ring[PLANNER_SLOTS];
static volatile uint8_t head, tail; /* main loop writes head, the ISR advances tail */

/* State of the running block, touched only by the ISR (or with interrupts off). */
static volatile uint8_t running;
static uint32_t remaining;
static uint32_t rate;  /* milli-steps per second */
static uint32_t accum; /* DDA accumulator */
static uint8_t ms_tick;
static int8_t direction;
static uint8_t braking; /* once braking starts it never turns back into accelerating */
static float inv_two_accel_e6; /* 1 / (2 a * 1e6): braking distance in steps from rate^2 */
static block_t current;

static volatile int32_t position;
static volatile uint8_t endstop_hit;

static void timer_start(void) {
    TCNT1 = 0;
    TIFR1 = _BV(OCF1A);
    TIMSK1 |= _BV(OCIE1A);
    TCCR1B = _BV(WGM12) | _BV(CS10); /* CTC on OCR1A, no prescaler */
}

static void timer_stop(void) {
    /* NOTE: stopping the clock, not just masking the interrupt, lets an idle board (and the
     * simulator) sleep undisturbed between moves. */
    TCCR1B = _BV(WGM12);
    TIMSK1 &= (uint8_t)~_BV(OCIE1A);
}

void stepper_init(void) {
    TCCR1A = 0;
    OCR1A = (uint16_t)(F_CPU / STEP_TICK_HZ - 1UL);
    timer_stop();
}

uint8_t stepper_free_slots(void) {
    /* one slot stays empty so a full ring differs from an empty one */
    return (uint8_t)(PLANNER_SLOTS - 1 - ((head - tail) & RING_MASK));
}

uint8_t stepper_busy(void) { return running || head != tail; }

uint8_t stepper_push(const block_t *block) {
    if (stepper_free_slots() == 0) return 0;
    ring[head] = *block;
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        head = (uint8_t)((head + 1) & RING_MASK);
        if (!(TIMSK1 & _BV(OCIE1A))) timer_start();
    }
    return 1;
}

int32_t stepper_position(void) {
    int32_t p;
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) { p = position; }
    return p;
}

void stepper_set_position(int32_t steps) {
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) { position = steps; }
}

uint8_t stepper_take_endstop_hit(void) {
    uint8_t hit;
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        hit = endstop_hit;
        endstop_hit = 0;
    }
    return hit;
}

void stepper_quick_stop(void) {
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        timer_stop();
        running = 0;
        tail = head;
    }
}

void stepper_kill(void) {
    stepper_quick_stop();
    motor_enable(0);
}

static uint8_t load_next_block(void) {
    if (tail == head) return 0;
    current = ring[tail];
    tail = (uint8_t)((tail + 1) & RING_MASK);
    if (current.steps == 0) return 0;
    direction = current.steps > 0 ? 1 : -1;
    remaining = (uint32_t)(current.steps > 0 ? current.steps : -current.steps);
    if (direction > 0) X_DIR_PORT |= _BV(X_DIR_BIT);
    else X_DIR_PORT &= (uint8_t)~_BV(X_DIR_BIT);
    /* start from (almost) rest: half a millisecond's worth of acceleration */
    rate = current.accel / 2U;
    if (rate < 1U) rate = 1U;
    if (rate > current.v_max) rate = current.v_max;
    accum = 0;
    ms_tick = 0;
    braking = 0;
    inv_two_accel_e6 = 1.0f / (2.0f * (float)current.accel * 1.0e6f);
    if (!motor_enabled()) motor_enable(1);
    running = 1;
    return 1;
}

static void update_rate(void) {
    float r = (float)rate;
    if (braking || (float)remaining <= r * r * inv_two_accel_e6) {
        braking = 1;
        rate = rate > current.v_min + current.accel ? rate - current.accel : current.v_min;
    } else if (rate < current.v_max) {
        rate = current.v_max - rate > current.accel ? rate + current.accel : current.v_max;
    }
}

ISR(TIMER1_COMPA_vect) {
    if (!running) {
        if (!load_next_block()) {
            if (tail == head) timer_stop();
            return;
        }
    }
    if ((current.flags & BLOCK_HOMING) && endstop_triggered()) {
        endstop_hit = 1;
        running = 0;
        return;
    }
    accum += rate;
    if (accum >= DDA_THRESHOLD) {
        accum -= DDA_THRESHOLD;
        X_STEP_PORT |= _BV(X_STEP_BIT);
        position += direction;
        remaining--;
        __builtin_avr_delay_cycles(16); /* >= 1 us pulse for A4988/DRV8825 drivers */
        X_STEP_PORT &= (uint8_t)~_BV(X_STEP_BIT);
        if (remaining == 0) {
            running = 0;
            return;
        }
    }
    if (++ms_tick >= TICKS_PER_MS) {
        ms_tick = 0;
        update_rate();
    }
}
