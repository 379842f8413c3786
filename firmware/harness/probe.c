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
#define R_TCCR2A 0xB0
#define R_OCR2A 0xB3
#define R_OCR2B 0xB4
#define R_TCCR4A 0xA0
#define R_OCR4CL 0xAC
#define R_PORTH 0x102

int probe_motor_enabled(void) { return !(avr->data[R_PORTD] & (1 << 7)); }

int probe_output_level(int pin) {
    uint8_t *d = avr->data;
    switch (pin) {
    case 8:
        if (d[R_TCCR4A] & (1 << 3)) return d[R_OCR4CL]; /* COM4C1 */
        return (d[R_PORTH] & (1 << 5)) ? 255 : 0;
    case 9:
        if (d[R_TCCR2A] & (1 << 5)) return d[R_OCR2B]; /* COM2B1 */
        return (d[R_PORTH] & (1 << 6)) ? 255 : 0;
    case 10:
        if (d[R_TCCR2A] & (1 << 7)) return d[R_OCR2A]; /* COM2A1 */
        return (d[R_PORTB] & (1 << 4)) ? 255 : 0;
    default:
        return -1;
    }
}
