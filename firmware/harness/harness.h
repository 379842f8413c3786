/* simavr-pty: runs the partrig firmware in simavr and bridges its UART0 to a host pty.
 *
 * Shared state of the harness modules (bridge, probe, control, main). */
#ifndef PARTRIG_HARNESS_H
#define PARTRIG_HARNESS_H

#include <stdint.h>

#include "sim_avr.h"

/* --- bridge.c: UART0 <-> pty, with fault injection ------------------------------------- */
typedef struct {
    double corrupt_rx; /* probability per host line that one byte arrives flipped */
    double corrupt_tx; /* probability per firmware line that one byte arrives flipped */
    double drop_rx;    /* probability per byte host -> firmware that it is lost */
    double drop_tx;    /* probability per byte firmware -> host that it is lost */
    double lose_ok;    /* probability that a whole `ok...` line never reaches the host */
} faults_t;

typedef struct {
    uint64_t rx_bytes, tx_bytes;
    uint64_t corrupted_rx, corrupted_tx, dropped_rx, dropped_tx, lost_ok;
    uint64_t unplugs;
} bridge_stats_t;

extern faults_t faults;
extern bridge_stats_t bridge_stats;

int bridge_init(avr_t *avr, const char *link_path);
void bridge_after_reset(void);
/* Move bytes both ways; returns the number of bytes moved. */
int bridge_service(void);
/* Close the pty (the host sees the port vanish) and re-create it after `ms` milliseconds. */
void bridge_unplug(int ms);
/* fd to poll for host input, or -1 while unplugged or nobody has the port open. */
int bridge_poll_fd(void);
void bridge_close(void);
uint32_t rng_next(void);
void rng_seed(uint32_t seed);
double rng_unit(void);
double wall_now(void);

/* --- probe.c: pins the host cannot see ------------------------------------------------- */
int probe_init(avr_t *avr);
void probe_after_reset(void);
int64_t probe_steps(void);      /* signed X step pulses since start (DIR high = +1) */
uint64_t probe_edges(void);     /* all step pulses, for activity detection */
void probe_endstop_manual(int level);
/* Trip the endstop while (steps - at) mod period is in [0, width); period 0 = off. */
void probe_endstop_auto(int64_t at, int64_t width, int64_t period);
int probe_endstop_level(void);
int probe_motor_enabled(void);
/* Duty of a MOSFET output (D8, D9, D10) in [0, 1] from its timer's mode, TOP and compare
 * register (8- or 16-bit), or its pin level when PWM is off; -1 for any other pin. */
double probe_output_duty(int arduino_pin);
int probe_output_level(int arduino_pin); /* the duty scaled to 0..255; -1 otherwise */

/* --- control.c: the line protocol on stdin/stdout -------------------------------------- */
typedef struct {
    int realtime;
    int quit;
    int reset_requested;
} control_t;

extern control_t control;
void control_service(avr_t *avr);

#endif
