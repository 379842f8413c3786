/* RAMPS 1.4 pin assignments and the small outputs: motor enable, X-min endstop, MOSFET PWM.
 *
 *   X step  D54 = PF0     X dir  D55 = PF1 (high = positive)     X enable  D38 = PD7, low = on
 *   X-min endstop D3 = PE5 (pull-up on; HIGH = triggered, like Marlin's default)
 *   MOSFETs D8 = PH5 (OC4C), D9 = PH6 (OC2B, the fan/light), D10 = PB4 (OC2A) */
#ifndef PARTRIG_PINS_H
#define PARTRIG_PINS_H

#include <avr/io.h>
#include <stdint.h>

#define X_STEP_PORT PORTF
#define X_STEP_BIT PF0
#define X_DIR_PORT PORTF
#define X_DIR_BIT PF1

void pins_init(void);

void motor_enable(uint8_t on);
uint8_t motor_enabled(void);

uint8_t endstop_triggered(void);

/* Set a MOSFET output (Arduino pin 8, 9 or 10) to 0..255; returns 0 for any other pin. */
uint8_t output_set(uint8_t arduino_pin, uint8_t level);

#endif
