/* The planner: commanded position in exact fixed point, units <-> steps, and move blocks. */
#ifndef PARTRIG_PLANNER_H
#define PARTRIG_PLANNER_H

#include <stdint.h>

typedef struct {
    int64_t steps_per_unit_e6; /* M92 */
    float max_feed_ups;        /* M203, units/s */
    float accel_ups2;          /* M201, units/s^2 */
    float travel_accel_ups2;   /* M204 (0 = not set); the lower of M201/M204 applies */
    float feed_upm;            /* last F, units/min */
    uint8_t relative;          /* G91 */
} motion_settings_t;

extern motion_settings_t motion;

void planner_init(void);

/* round(x * steps_per_unit) for x in millionths of a unit; 0 if out of range. */
uint8_t units_to_steps(int64_t x_e6, int32_t *steps);

/* Queue a move of the X axis to x_e6 (absolute, millionths) at the given rate in units/s.
 * Blocks (servicing the serial line) while the block ring is full.  Returns 0 on a range
 * error, in which case nothing moved. */
uint8_t planner_move_to(int64_t x_e6, float feed_ups, uint8_t flags);

/* Queue a relative move of exactly `steps` (homing); the commanded position follows it. */
void planner_move_steps(int32_t steps, float feed_ups, uint8_t flags);

int64_t planner_position_e6(void);
int32_t planner_position_steps(void);

/* G92 / homing: the current position becomes x_e6 (waits for moves to finish first). */
uint8_t planner_set_position(int64_t x_e6);

/* After a quick stop: the commanded position becomes wherever the motor really stopped. */
void planner_sync_to_stepper(void);

#endif
