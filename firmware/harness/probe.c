/* Watches the X step/dir/enable pins and drives the X-min endstop input.
 *
 * WHY count on the pin: the firmware's own M114 Count could be wrong in the same way as the
 * code under test; pulses on PF0, signed by PF1, are what a real driver would have turned. */
#include <string.h>

#include "avr_ioport.h"
#include "harness.h"
#include "sim_irq.h"

static avr_t *avr;
static avr_irq_t *step_irq, *dir_irq, *endstop_irq;
static int dir_level;
static int64_t steps;
static uint64_t edges;
static int manual_level;
static int64_t auto_at, auto_width, auto_period;
static int driven_level = -1;

static void drive_endstop(void) {
    int level = manual_level;
    if (auto_period > 0) {
        int64_t rel = (steps - auto_at) % auto_period;
        if (rel < 0) rel += auto_period;
        level = rel < auto_width;
    }
    if (level != driven_level) {
        driven_level = level;
        /* NOTE: the "external" state is what simavr's port reads on an input with its
         * pull-up on; the IRQ alone is overwritten when the firmware writes PORTE. */
        avr_ioport_external_t ext = {.name = 'E', .mask = 1 << 5, .value = (level ? 1 : 0) << 5};
        avr_ioctl(avr, AVR_IOCTL_IOPORT_SET_EXTERNAL('E'), &ext);
        avr_raise_irq(endstop_irq, (uint32_t)level);
    }
}

static int step_level;

static void on_step(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)param;
    int level = value ? 1 : 0;
    int rising = level && !step_level;
    step_level = level; /* NOTE: our own copy: the order of notify vs. store is simavr's */
    if (rising) {
        steps += dir_level ? 1 : -1;
        edges++;
        if (auto_period > 0) drive_endstop();
    }
}

static void on_dir(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)param;
    dir_level = value ? 1 : 0;
}

int probe_init(avr_t *a) {
    avr = a;
    step_irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('F'), 0);
    dir_irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('F'), 1);
    endstop_irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('E'), 5);
    if (!step_irq || !dir_irq || !endstop_irq) return -1;
    avr_irq_register_notify(step_irq, on_step, NULL);
    avr_irq_register_notify(dir_irq, on_dir, NULL);
    drive_endstop();
    return 0;
}

void probe_after_reset(void) {
    dir_level = 0;
    step_level = 0;
    driven_level = -1;
    drive_endstop();
}

int64_t probe_steps(void) { return steps; }
uint64_t probe_edges(void) { return edges; }

void probe_endstop_manual(int level) {
    auto_period = 0;
    manual_level = level ? 1 : 0;
    drive_endstop();
}

void probe_endstop_auto(int64_t at, int64_t width, int64_t period) {
    auto_at = at;
    auto_width = width;
    auto_period = period;
    drive_endstop();
}

int probe_endstop_level(void) { return driven_level; }

/* ATmega2560 data-space addresses of the registers read below */
#define R_PORTB 0x25
#define R_PORTD 0x2B
#define R_PORTH 0x102
#define R_TCCR2A 0xB0
#define R_TCCR2B 0xB1
#define R_OCR2A 0xB3
#define R_OCR2B 0xB4
#define R_TCCR4A 0xA0
#define R_TCCR4B 0xA1
#define R_ICR4L 0xA6
#define R_OCR4AL 0xA8
#define R_OCR4CL 0xAC

int probe_motor_enabled(void) { return !(avr->data[R_PORTD] & (1 << 7)); }

static uint16_t reg16(uint16_t low) { return (uint16_t)(avr->data[low] | (avr->data[low + 1] << 8)); }

/* TOP of Timer4 for its waveform mode, or 0 when the mode generates no PWM.
 *
 * WHY all modes: partrig's firmware runs Timer4 in 8-bit fast PWM (mode 5, TOP 0xFF), Marlin
 * in a mode with ICR4 as TOP (1 kHz: TOP ~ 2000), so OCR4C alone, or its low byte, says
 * nothing about the duty. */
static uint16_t timer4_top(void) {
    uint8_t *d = avr->data;
    int wgm = (d[R_TCCR4A] & 3) | ((d[R_TCCR4B] >> 1) & 0x0C);
    switch (wgm) {
    case 1: case 5: return 0xFF;
    case 2: case 6: return 0x1FF;
    case 3: case 7: return 0x3FF;
    case 8: case 10: case 14: return reg16(R_ICR4L);
    case 9: case 11: case 15: return reg16(R_OCR4AL);
    default: return 0; /* normal, CTC: no PWM */
    }
}

/* TOP of Timer2 (8-bit): 0xFF, or OCR2A in modes 5 and 7; 0 when the mode is not PWM. */
static uint16_t timer2_top(void) {
    uint8_t *d = avr->data;
    int wgm = (d[R_TCCR2A] & 3) | ((d[R_TCCR2B] >> 1) & 0x04);
    switch (wgm) {
    case 1: case 3: return 0xFF;
    case 5: case 7: return d[R_OCR2A];
    default: return 0;
    }
}

/* Duty from a compare unit: COM 2 clears on match (duty OCR/TOP), COM 3 sets (1 - that). */
static double compare_duty(int com, uint16_t ocr, uint16_t top, int port_level) {
    if (com < 2 || top == 0) return port_level; /* pin is plain I/O, or no PWM mode */
    double duty = ocr >= top ? 1.0 : (double)ocr / (double)top;
    return com == 3 ? 1.0 - duty : duty;
}

double probe_output_duty(int pin) {
    uint8_t *d = avr->data;
    switch (pin) {
    case 8: /* OC4C = PH5 */
        return compare_duty((d[R_TCCR4A] >> 2) & 3, reg16(R_OCR4CL), timer4_top(),
                            (d[R_PORTH] >> 5) & 1);
    case 9: /* OC2B = PH6 */
        return compare_duty((d[R_TCCR2A] >> 4) & 3, d[R_OCR2B], timer2_top(),
                            (d[R_PORTH] >> 6) & 1);
    case 10: /* OC2A = PB4; with OCR2A as TOP it cannot also set a duty */
        return compare_duty((d[R_TCCR2A] >> 6) & 3, d[R_OCR2A],
                            (d[R_TCCR2B] & (1 << 3)) ? 0 : timer2_top(), (d[R_PORTB] >> 4) & 1);
    default:
        return -1.0;
    }
}

int probe_output_level(int pin) {
    double duty = probe_output_duty(pin);
    return duty < 0 ? -1 : (int)(duty * 255.0 + 0.5);
}
