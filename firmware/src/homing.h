/* G28 X: find the X-min endstop, back off, re-approach slowly, and call that X = 0. */
#ifndef PARTRIG_HOMING_H
#define PARTRIG_HOMING_H

#include <stdint.h>

/* Returns 1 when homed; 0 (after printing `Error:Homing Failed`) when the endstop was not
 * found within one turn, in which case the position is left where the motor stopped. */
uint8_t home_x(void);

#endif
