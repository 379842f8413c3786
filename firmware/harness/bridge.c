/* UART0 <-> host pty bridge with fault injection and "unplug".
 *
 * WHY not simavr's uart_pty part: it runs its own thread, always makes /tmp/simavr-uart0
 * (parallel tests would fight over it), and cannot corrupt, drop or unplug.  This bridge runs
 * in the simulation thread, so faults land at exact points in the byte stream.
 *
 * Debian's simavr 1.6 quirks handled here (see docs/firmware.md):
 *  - UDRE never comes back after the UART is enabled: watch writes to UCSR0B and set UDRE
 *    (raising its interrupt if enabled) whenever TXEN is set.
 *  - AVR_UART_FLAG_POLL_SLEEP slows the simulation ~200x: cleared with the set-flags ioctl
 *    (as is AVR_UART_FLAG_STDIO, whose console echo would pollute our control channel). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "avr_uart.h"
#include "harness.h"
#include "sim_interrupts.h"
#include "sim_io.h"

#define R_UCSR0A 0xC0
#define R_UCSR0B 0xC1
#define TXEN0_BIT 3
#define UDRIE0_BIT 5
#define UDRE0_BIT 5

#define RXQ_SIZE 4096
#define OUTBUF_SIZE 65536
#define TXLINE_MAX 256

faults_t faults;
bridge_stats_t bridge_stats;

static avr_t *avr;
static avr_uart_t *uart0;
static avr_irq_t *uart_in_irq, *uart_out_irq, *uart_xon_irq, *uart_xoff_irq;
static int xon = 1;

static char link_path[4096];
static int master_fd = -1;
static double replug_at = -1.0;

static uint8_t rxq[RXQ_SIZE];
static size_t rxq_head, rxq_len;
static int rx_line_pos, rx_corrupt_at = -1;

static uint8_t txline[TXLINE_MAX];
static size_t txline_len;
static uint8_t outbuf[OUTBUF_SIZE];
static size_t out_len;

static uint32_t rng_state = 0x2545F491u;

void rng_seed(uint32_t seed) { rng_state = seed ? seed : 0x2545F491u; }

uint32_t rng_next(void) {
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

double rng_unit(void) { return (double)rng_next() / 4294967296.0; }

double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint8_t corrupt_byte(uint8_t b) {
    uint8_t c;
    do {
        c = (uint8_t)(b ^ (1u << (rng_next() % 7u)));
    } while (c == '\n' || c == '\r');
    return c;
}

/* --- pty management ------------------------------------------------------------------- */

static int make_pty(void) {
    int master, slave;
    char name[256];
    struct termios tio;
    if (openpty(&master, &slave, name, NULL, NULL) < 0) return -1;
    if (tcgetattr(slave, &tio) == 0) {
        cfmakeraw(&tio);
        tcsetattr(slave, TCSANOW, &tio);
    }
    /* NOTE: close our slave end: the master then reports POLLHUP until the host opens the
     * port, which is how the bridge knows nobody is listening (bytes are then lost, as on
     * a real USB serial port that nobody has open). */
    close(slave);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", link_path, (int)getpid());
    unlink(tmp);
    if (symlink(name, tmp) < 0 || rename(tmp, link_path) < 0) {
        fprintf(stderr, "simavr-pty: cannot link %s -> %s: %s\n", link_path, name, strerror(errno));
        close(master);
        return -1;
    }
    master_fd = master;
    return 0;
}

static int host_present(void) {
    if (master_fd < 0) return 0;
    struct pollfd p = {.fd = master_fd, .events = POLLOUT};
    if (poll(&p, 1, 0) < 0) return 0;
    return !(p.revents & POLLHUP);
}

int bridge_poll_fd(void) { return host_present() ? master_fd : -1; }

void bridge_unplug(int ms) {
    if (master_fd >= 0) {
        close(master_fd);
        master_fd = -1;
    }
    unlink(link_path);
    out_len = 0;
    rxq_len = 0;
    bridge_stats.unplugs++;
    replug_at = wall_now() + (ms > 0 ? ms : 0) / 1000.0;
}

void bridge_close(void) {
    if (master_fd >= 0) close(master_fd);
    master_fd = -1;
    unlink(link_path);
}

/* --- firmware -> host ----------------------------------------------------------------- */

static void out_append(uint8_t b) {
    if (out_len < OUTBUF_SIZE) outbuf[out_len++] = b;
}

static void finish_tx_line(void) {
    if (txline_len == 0) return;
    int is_ok = txline_len >= 3 && txline[0] == 'o' && txline[1] == 'k' &&
                (txline[2] == '\n' || txline[2] == ' ');
    if (is_ok && faults.lose_ok > 0 && rng_unit() < faults.lose_ok) {
        bridge_stats.lost_ok++;
        txline_len = 0;
        return;
    }
    long corrupt_at = -1;
    if (faults.corrupt_tx > 0 && txline_len > 1 && rng_unit() < faults.corrupt_tx) {
        corrupt_at = (long)(rng_next() % (uint32_t)(txline_len - 1)); /* never the newline */
        bridge_stats.corrupted_tx++;
    }
    for (size_t i = 0; i < txline_len; i++) {
        uint8_t b = txline[i];
        if ((long)i == corrupt_at) b = corrupt_byte(b);
        if (faults.drop_tx > 0 && rng_unit() < faults.drop_tx) {
            bridge_stats.dropped_tx++;
            continue;
        }
        out_append(b);
    }
    txline_len = 0;
}

static void on_uart_output(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)param;
    bridge_stats.tx_bytes++;
    if (txline_len < TXLINE_MAX) txline[txline_len++] = (uint8_t)value;
    if (value == '\n' || txline_len == TXLINE_MAX) finish_tx_line();
}

static void flush_out(void) {
    if (!out_len) return;
    if (!host_present()) {
        out_len = 0; /* nobody listening: the bytes are gone, as on real hardware */
        return;
    }
    ssize_t n = write(master_fd, outbuf, out_len);
    if (n > 0) {
        memmove(outbuf, outbuf + n, out_len - (size_t)n);
        out_len -= (size_t)n;
    }
}

/* --- host -> firmware ----------------------------------------------------------------- */

static void feed_uart(void) {
    while (xon && rxq_len) {
        uint8_t b = rxq[rxq_head];
        rxq_head = (rxq_head + 1) % RXQ_SIZE;
        rxq_len--;
        avr_raise_irq(uart_in_irq, b);
    }
}

static void on_xon(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)value;
    (void)param;
    xon = 1;
    feed_uart();
}

static void on_xoff(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)value;
    (void)param;
    xon = 0;
}

static void rx_push(uint8_t b) {
    if (rx_line_pos == 0) {
        rx_corrupt_at = -1;
        if (faults.corrupt_rx > 0 && rng_unit() < faults.corrupt_rx) {
            rx_corrupt_at = (int)(rng_next() % 8u); /* framed lines are at least 8 bytes */
        }
    }
    if (b == '\n' || b == '\r') {
        rx_line_pos = 0;
    } else {
        if (rx_line_pos == rx_corrupt_at) {
            b = corrupt_byte(b);
            bridge_stats.corrupted_rx++;
        }
        rx_line_pos++;
    }
    if (faults.drop_rx > 0 && rng_unit() < faults.drop_rx) {
        bridge_stats.dropped_rx++;
        return;
    }
    if (rxq_len < RXQ_SIZE) {
        rxq[(rxq_head + rxq_len) % RXQ_SIZE] = b;
        rxq_len++;
    }
}

static int read_host(void) {
    if (master_fd < 0 || rxq_len > RXQ_SIZE / 2) return 0;
    uint8_t buf[512];
    ssize_t n = read(master_fd, buf, sizeof buf);
    if (n <= 0) return 0; /* EAGAIN, or EIO while no host has the port open */
    bridge_stats.rx_bytes += (uint64_t)n;
    for (ssize_t i = 0; i < n; i++) rx_push(buf[i]);
    return (int)n;
}

int bridge_service(void) {
    if (master_fd < 0 && replug_at >= 0 && wall_now() >= replug_at) {
        replug_at = -1.0;
        rx_line_pos = 0;
        if (make_pty() < 0) fprintf(stderr, "simavr-pty: replug failed\n");
    }
    int moved = read_host();
    feed_uart();
    size_t before = out_len;
    flush_out();
    return moved + (int)(before - out_len);
}

/* --- the UDRE quirk ------------------------------------------------------------------- */

static void on_ucsr0b_write(struct avr_t *a, avr_io_addr_t addr, uint8_t v, void *param) {
    (void)param;
    a->data[addr] = v;
    if (v & (1 << TXEN0_BIT)) {
        a->data[R_UCSR0A] |= (1 << UDRE0_BIT);
        if ((v & (1 << UDRIE0_BIT)) && uart0) avr_raise_interrupt(a, &uart0->udrc);
    }
}

static void clear_uart_flags(void) {
    uint32_t flags = 0;
    avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
    flags &= ~(uint32_t)(AVR_UART_FLAG_POLL_SLEEP | AVR_UART_FLAG_STDIO);
    avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
}

void bridge_after_reset(void) {
    clear_uart_flags();
    xon = 1;
    txline_len = 0;
}

int bridge_init(avr_t *a, const char *path) {
    avr = a;
    snprintf(link_path, sizeof link_path, "%s", path);
    for (avr_io_t *io = avr->io_port; io; io = io->next) {
        if (io->kind && strcmp(io->kind, "uart") == 0 && ((avr_uart_t *)io)->name == '0') {
            uart0 = (avr_uart_t *)io;
        }
    }
    uart_in_irq = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
    uart_out_irq = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT);
    uart_xon_irq = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON);
    uart_xoff_irq = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF);
    if (!uart0 || !uart_in_irq || !uart_out_irq || !uart_xon_irq || !uart_xoff_irq) {
        fprintf(stderr, "simavr-pty: this core has no UART0\n");
        return -1;
    }
    avr_irq_register_notify(uart_out_irq, on_uart_output, NULL);
    avr_irq_register_notify(uart_xon_irq, on_xon, NULL);
    avr_irq_register_notify(uart_xoff_irq, on_xoff, NULL);
    avr_register_io_write(avr, R_UCSR0B, on_ucsr0b_write, NULL);
    clear_uart_flags();
    return make_pty();
}
