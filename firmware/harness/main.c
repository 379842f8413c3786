/* simavr-pty: run firmware/build/partrig.elf on a simulated ATmega2560 at 16 MHz, with UART0
 * on a pty reachable through a symlink, pins probed, faults injectable.
 *
 *   simavr-pty [--realtime] [--seed N] FIRMWARE.elf LINK_PATH
 *
 * Prints `ready LINK_PATH` on stdout once the pty exists, then serves control.c's protocol.
 *
 * Pacing: free-running, the simulation goes as fast as the host CPU allows, except while
 * nothing happens (no serial bytes, no step pulses for 20 ms of simulated time): then it is
 * paced to wall time, so an idle board costs no CPU and G4 dwells last as long as they say.
 * With --realtime (or `realtime 1`) simulated time is kept equal to wall time always. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "avr_extint.h"
#include "sim_elf.h"

#define CPU_HZ 16000000UL
#define SLICE_CYCLES (CPU_HZ / 2000UL) /* 0.5 ms of simulated time between services */
#define IDLE_AFTER_CYCLES (CPU_HZ / 50UL)

/* NOTE: simavr's default sleep callback usleeps while the AVR sleeps; pacing is done here
 * instead, so the callback does nothing. */
static void no_sleep(avr_t *avr, avr_cycle_count_t how_long) {
    (void)avr;
    (void)how_long;
}

static void wait_for_input(double seconds) {
    struct pollfd fds[2];
    int n = 0;
    fds[n++] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
    int pty = bridge_poll_fd();
    if (pty >= 0) fds[n++] = (struct pollfd){.fd = pty, .events = POLLIN};
    struct timespec ts = {.tv_sec = (time_t)seconds,
                          .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    ppoll(fds, (nfds_t)n, &ts, NULL);
}

static void usage(void) {
    fprintf(stderr, "usage: simavr-pty [--realtime] [--seed N] FIRMWARE.elf LINK_PATH\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *elf = NULL, *link = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--realtime")) control.realtime = 1;
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) rng_seed((uint32_t)atol(argv[++i]));
        else if (!elf) elf = argv[i];
        else if (!link) link = argv[i];
        else usage();
    }
    if (!elf || !link) usage();
    signal(SIGPIPE, SIG_IGN);
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);

    /* NOTE: simavr prints "Loaded ..." on stdout while loading; stdout is our control
     * channel, so point it at stderr until the firmware is in. */
    fflush(stdout);
    int saved_stdout = dup(STDOUT_FILENO);
    dup2(STDERR_FILENO, STDOUT_FILENO);
    elf_firmware_t fw;
    memset(&fw, 0, sizeof fw);
    if (elf_read_firmware(elf, &fw) != 0) {
        fprintf(stderr, "simavr-pty: cannot read %s (build it with `make -C firmware`)\n", elf);
        return 1;
    }
    avr_t *avr = avr_make_mcu_by_name("atmega2560");
    if (!avr) {
        fprintf(stderr, "simavr-pty: this simavr has no atmega2560 core\n");
        return 1;
    }
    avr_init(avr);
    avr->log = 0;
    fw.frequency = CPU_HZ;
    avr_load_firmware(avr, &fw);
    avr->frequency = CPU_HZ;
    avr->sleep = no_sleep;
    /* NOTE: simavr polls every external-interrupt pin that sits low in "low level" sense mode
     * on every cycle (strict level triggering), even with the interrupt masked; the RAMPS
     * endstop inputs PE4/PE5 are INT4/INT5, so an idle board would cost 100 % CPU. */
    for (uint8_t i = 0; i < EXTINT_COUNT; i++) avr_extint_set_strict_lvl_trig(avr, i, 0);
    fflush(stdout);
    dup2(saved_stdout, STDOUT_FILENO);
    close(saved_stdout);
    if (bridge_init(avr, link) < 0 || probe_init(avr) < 0) return 1;
    printf("ready %s\n", link);
    fflush(stdout);

    double wall_base = wall_now();
    avr_cycle_count_t cyc_base = avr->cycle, last_activity = 0;
    uint64_t last_edges = 0, last_tx = 0;
    int was_paced = 0;
    while (!control.quit) {
        int paced = control.realtime || avr->cycle - last_activity > IDLE_AFTER_CYCLES;
        if (paced && !was_paced) {
            wall_base = wall_now();
            cyc_base = avr->cycle;
        }
        was_paced = paced;
        if (paced) {
            /* NOTE: never run ahead of the wall clock: wait (waking early for input, which is
             * queued and reaches the UART as simulated time catches up). */
            double target = wall_base + (double)(avr->cycle - cyc_base) / (double)CPU_HZ;
            double ahead = target - wall_now();
            if (ahead > 0) {
                wait_for_input(ahead);
                if (bridge_service()) last_activity = avr->cycle;
                control_service(avr);
                continue;
            }
        }
        avr_cycle_count_t end = avr->cycle + SLICE_CYCLES;
        for (int i = 0; avr->cycle < end && i < 40000; i++) {
            int state = avr_run(avr);
            if (state == cpu_Done || state == cpu_Crashed) {
                printf("event crashed state=%d pc=0x%x\n", state, avr->pc);
                fflush(stdout);
                bridge_close();
                return 3;
            }
        }
        int moved = bridge_service();
        if (moved || probe_edges() != last_edges || bridge_stats.tx_bytes != last_tx) {
            last_activity = avr->cycle;
            last_edges = probe_edges();
            last_tx = bridge_stats.tx_bytes;
        }
        control_service(avr);
        if (control.reset_requested) {
            control.reset_requested = 0;
            avr_reset(avr);
            bridge_after_reset();
            probe_after_reset();
            last_activity = avr->cycle;
        }
    }
    bridge_close();
    return 0;
}
