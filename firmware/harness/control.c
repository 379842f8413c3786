/* The control channel: one command per line on stdin, one reply line on stdout.
 *
 *   steps?                 ok <signed X step pulses counted on PF0/PF1 since start>
 *   time?                  ok <simulated seconds>
 *   enabled?               ok 1|0        (X enable pin PD7 is low)
 *   endstop?               ok 1|0        (level driven on PE5)
 *   light? 8|9|10          ok 0..255     (PWM duty or pin level of that MOSFET)
 *   duty? 8|9|10           ok 0.00000..1.00000 (the same, unrounded, from OCR / TOP)
 *   pc?                    ok <program counter> state=<simavr cpu state>
 *   stats?                 ok rx=.. tx=.. corrupted_rx=.. corrupted_tx=.. dropped_rx=..
 *                             dropped_tx=.. lost_ok=.. unplugs=..
 *   reset                  avr_reset(), as a DTR pulse would
 *   endstop 0|1            drive the X-min endstop by hand
 *   endstop_at A W P       trip it while (steps - A) mod P < W (a switch on a turntable)
 *   fault NAME P           NAME: corrupt_rx corrupt_tx drop_rx drop_tx lose_ok; P in [0, 1]
 *   fault clear            all fault probabilities back to 0
 *   seed N                 seed the fault generator
 *   unplug MS              close the pty, re-create it MS milliseconds later
 *   realtime 0|1           keep simulated time equal to wall time (1) or run free (0)
 *   quit
 * Errors answer `err <what to fix>`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

control_t control;

static char buf[1024];
static size_t len;

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void reply(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static double *fault_named(const char *name) {
    if (!strcmp(name, "corrupt_rx")) return &faults.corrupt_rx;
    if (!strcmp(name, "corrupt_tx")) return &faults.corrupt_tx;
    if (!strcmp(name, "drop_rx")) return &faults.drop_rx;
    if (!strcmp(name, "drop_tx")) return &faults.drop_tx;
    if (!strcmp(name, "lose_ok")) return &faults.lose_ok;
    return NULL;
}

static void handle(avr_t *avr, char *line) {
    char cmd[64] = "", a[64] = "", b[64] = "", c[64] = "";
    int n = sscanf(line, "%63s %63s %63s %63s", cmd, a, b, c);
    if (n <= 0) return;
    if (!strcmp(cmd, "steps?")) {
        reply("ok %lld", (long long)probe_steps());
    } else if (!strcmp(cmd, "time?")) {
        reply("ok %.6f", (double)avr->cycle / (double)avr->frequency);
    } else if (!strcmp(cmd, "pc?")) {
        reply("ok 0x%x state=%d", avr->pc, avr->state);
    } else if (!strcmp(cmd, "enabled?")) {
        reply("ok %d", probe_motor_enabled());
    } else if (!strcmp(cmd, "endstop?")) {
        reply("ok %d", probe_endstop_level());
    } else if (!strcmp(cmd, "light?") && n >= 2) {
        int level = probe_output_level(atoi(a));
        if (level < 0) reply("err light? takes 8, 9 or 10");
        else reply("ok %d", level);
    } else if (!strcmp(cmd, "duty?") && n >= 2) {
        double duty = probe_output_duty(atoi(a));
        if (duty < 0) reply("err duty? takes 8, 9 or 10");
        else reply("ok %.5f", duty);
    } else if (!strcmp(cmd, "stats?")) {
        bridge_stats_t *s = &bridge_stats;
        reply("ok rx=%llu tx=%llu corrupted_rx=%llu corrupted_tx=%llu dropped_rx=%llu "
              "dropped_tx=%llu lost_ok=%llu unplugs=%llu",
              (unsigned long long)s->rx_bytes, (unsigned long long)s->tx_bytes,
              (unsigned long long)s->corrupted_rx, (unsigned long long)s->corrupted_tx,
              (unsigned long long)s->dropped_rx, (unsigned long long)s->dropped_tx,
              (unsigned long long)s->lost_ok, (unsigned long long)s->unplugs);
    } else if (!strcmp(cmd, "reset")) {
        control.reset_requested = 1;
        reply("ok");
    } else if (!strcmp(cmd, "endstop") && n >= 2) {
        probe_endstop_manual(atoi(a));
        reply("ok");
    } else if (!strcmp(cmd, "endstop_at") && n >= 4) {
        long long at = atoll(a), width = atoll(b), period = atoll(c);
        if (width <= 0 || period <= 0 || width >= period) {
            reply("err endstop_at needs 0 < width < period");
        } else {
            probe_endstop_auto(at, width, period);
            reply("ok");
        }
    } else if (!strcmp(cmd, "fault") && n >= 2 && !strcmp(a, "clear")) {
        memset(&faults, 0, sizeof faults);
        reply("ok");
    } else if (!strcmp(cmd, "fault") && n >= 3) {
        double *slot = fault_named(a);
        double p = atof(b);
        if (!slot) reply("err unknown fault %s (corrupt_rx corrupt_tx drop_rx drop_tx lose_ok)", a);
        else if (p < 0 || p > 1) reply("err fault probability must be in [0, 1]");
        else {
            *slot = p;
            reply("ok");
        }
    } else if (!strcmp(cmd, "seed") && n >= 2) {
        rng_seed((uint32_t)strtoul(a, NULL, 10));
        reply("ok");
    } else if (!strcmp(cmd, "unplug") && n >= 2) {
        bridge_unplug(atoi(a));
        reply("ok");
    } else if (!strcmp(cmd, "realtime") && n >= 2) {
        control.realtime = atoi(a) != 0;
        reply("ok");
    } else if (!strcmp(cmd, "quit")) {
        control.quit = 1;
        reply("ok");
    } else {
        reply("err unknown control command: %s", cmd);
    }
}

void control_service(avr_t *avr) {
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf + len, sizeof buf - 1 - len);
        if (n == 0) {
            control.quit = 1; /* our parent went away */
            return;
        }
        if (n < 0) return; /* EAGAIN */
        len += (size_t)n;
        char *nl;
        while ((nl = memchr(buf, '\n', len)) != NULL) {
            *nl = 0;
            handle(avr, buf);
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, buf + used, len - used);
            len -= used;
        }
        if (len >= sizeof buf - 1) len = 0; /* an absurdly long line: drop it */
    }
}
