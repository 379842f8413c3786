/* The step generator: a small ring of move blocks executed by the Timer1 interrupt with a
 * trapezoidal speed profile (each block starts and ends at rest). */
#ifndef PARTRIG_STEPPER_H
#define PARTRIG_STEPPER_H

#include <stdint.h>

#define BLOCK_HOMING 0x01 /* stop the block at once when the X-min endstop triggers */

typedef struct {
    int32_t steps;   /* signed: positive moves with DIR high */
    uint32_t v_max;  /* cruise rate, milli-steps per second */
    uint32_t v_min;  /* lowest braking rate, milli-steps per second */
    uint32_t accel;  /* steps/s^2, which is also milli-steps/s gained per millisecond */
    uint8_t flags;
} block_t;

void stepper_init(void);

/* Queue a block; returns 0 (and queues nothing) when the ring is full. */
uint8_t stepper_push(const block_t *block);
uint8_t stepper_free_slots(void);
uint8_t stepper_busy(void); /* a block is running or queued */

int32_t stepper_position(void);
void stepper_set_position(int32_t steps); /* only while not busy */

/* Was the last homing block stopped by the endstop?  Cleared by reading it. */
uint8_t stepper_take_endstop_hit(void);

/* Called from the RX interrupt by the emergency parser (and from the main loop). */
void stepper_quick_stop(void); /* stop stepping at once, drop queued blocks, keep the count */
void stepper_kill(void);       /* quick stop, then switch the motor off */

#endif
