/* Pin setup and the MOSFET outputs.  PWM runs only for levels strictly between 0 and 255:
 * full off and full on are plain pin levels, so an idle board keeps its timers stopped. */
#include "pins.h"

#include <avr/interrupt.h>
#include <util/atomic.h>

static uint8_t enabled;

void pins_init(void) {
    DDRF |= _BV(X_STEP_BIT) | _BV(X_DIR_BIT);
    PORTF &= (uint8_t)~(_BV(X_STEP_BIT) | _BV(X_DIR_BIT));
    DDRD |= _BV(PD7);
    PORTD |= _BV(PD7); /* motor off until the first move or M17 */
    DDRE &= (uint8_t)~_BV(PE5);
    PORTE |= _BV(PE5); /* pull-up */
    DDRH |= _BV(PH5) | _BV(PH6);
    PORTH &= (uint8_t)~(_BV(PH5) | _BV(PH6));
    DDRB |= _BV(PB4);
    PORTB &= (uint8_t)~_BV(PB4);
}

void motor_enable(uint8_t on) {
    enabled = on ? 1 : 0;
    if (on) PORTD &= (uint8_t)~_BV(PD7);
    else PORTD |= _BV(PD7);
}

uint8_t motor_enabled(void) { return enabled; }

uint8_t endstop_triggered(void) { return (PINE & _BV(PE5)) ? 1 : 0; }

/* Timer2 drives D9 (OC2B) and D10 (OC2A); Timer4 drives D8 (OC4C).  Fast PWM, /64 = 976 Hz. */
static void timer2_start(void) {
    TCCR2A |= _BV(WGM21) | _BV(WGM20);
    TCCR2B = _BV(CS22); /* timer 2's /64 */
}

static void timer4_start(void) {
    TCCR4A |= _BV(WGM40); /* 8-bit fast PWM (mode 5) */
    TCCR4B = _BV(WGM42) | _BV(CS41) | _BV(CS40);
}

static void timers_idle_check(void) {
    if (!(TCCR2A & (_BV(COM2A1) | _BV(COM2B1)))) TCCR2B = 0;
    if (!(TCCR4A & _BV(COM4C1))) TCCR4B = 0;
}

uint8_t output_set(uint8_t arduino_pin, uint8_t level) {
    uint8_t pwm = level != 0 && level != 255;
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        switch (arduino_pin) {
        case 8:
            if (pwm) {
                OCR4C = level;
                TCCR4A |= _BV(COM4C1);
                timer4_start();
            } else {
                TCCR4A &= (uint8_t)~_BV(COM4C1);
                if (level) PORTH |= _BV(PH5);
                else PORTH &= (uint8_t)~_BV(PH5);
            }
            break;
        case 9:
            if (pwm) {
                OCR2B = level;
                TCCR2A |= _BV(COM2B1);
                timer2_start();
            } else {
                TCCR2A &= (uint8_t)~_BV(COM2B1);
                if (level) PORTH |= _BV(PH6);
                else PORTH &= (uint8_t)~_BV(PH6);
            }
            break;
        case 10:
            if (pwm) {
                OCR2A = level;
                TCCR2A |= _BV(COM2A1);
                timer2_start();
            } else {
                TCCR2A &= (uint8_t)~_BV(COM2A1);
                if (level) PORTB |= _BV(PB4);
                else PORTB &= (uint8_t)~_BV(PB4);
            }
            break;
        default:
            return 0;
        }
        timers_idle_check();
    }
    return 1;
}
