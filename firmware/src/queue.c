/* Line assembly and validation, following Marlin 2.1's queue.cpp behaviour:
 *
 *  - `N<n> <cmd>*<cs>`: n must be last+1 (else "Line Number is not Last Line Number+1"), the
 *    checksum must match (else "checksum mismatch"), a numbered line needs a checksum (else
 *    "No Checksum with line number").  Each error prints `Error:<msg>, Last Line: <k>`,
 *    flushes the receive buffer, then `Resend: <k+1>` and `ok`.
 *  - A line whose N equals the last accepted N is a duplicate: dropped without a reply.
 *  - `M110 N<n>` (numbered or not) sets the counter.
 *
 * One deliberate improvement over Marlin: when the flush cut a line in half, the rest of that
 * line is skipped up to its newline instead of being read as a new, garbled command. */
#include "queue.h"

#include <avr/pgmspace.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "number.h"
#include "stepper.h"
#include "uart.h"

static char slots[CMD_SLOTS][CMD_LEN];
static int32_t slot_line[CMD_SLOTS]; /* the N it came with, -1 for unnumbered lines */
static uint8_t q_head, q_count;

static char line[CMD_LEN];
static uint8_t line_len;
static uint8_t line_overflow;
static uint8_t in_comment;
static uint8_t skip_to_eol;

static int32_t last_line;

void queue_init(void) {
    q_head = q_count = 0;
    line_len = 0;
    line_overflow = in_comment = skip_to_eol = 0;
    last_line = 0;
}

void queue_set_last_line(int32_t n) { last_line = n; }

void queue_print_free(void) {
    UART_PUTS(" P");
    uart_print_u32(stepper_free_slots());
    UART_PUTS(" B");
    uart_print_u32((uint32_t)(CMD_SLOTS - q_count));
}

static void line_error(const char *msg_p) {
    UART_PUTS("Error:");
    uart_puts_p(msg_p);
    UART_PUTS(", Last Line: ");
    uart_print_i32(last_line);
    uart_newline();
    uint8_t last = '\n';
    if (uart_rx_flush(&last) && last != '\n' && last != '\r') skip_to_eol = 1;
    UART_PUTS("Resend: ");
    uart_print_i32(last_line + 1);
    uart_newline();
    UART_PUTS("ok");
    queue_print_free();
    uart_newline();
}

static void enqueue(const char *cmd, int32_t n) {
    uint8_t idx = (uint8_t)((q_head + q_count) % CMD_SLOTS);
    strncpy(slots[idx], cmd, CMD_LEN - 1);
    slots[idx][CMD_LEN - 1] = 0;
    slot_line[idx] = n;
    q_count++;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t')) *--end = 0;
    return s;
}

static void process_line(void) {
    line[line_len] = 0;
    char *text = trim(line);
    if (!*text) return;
    char *star = strrchr(text, '*');
    if (text[0] != 'N' && text[0] != 'n') {
        if (star) {
            line_error(PSTR("No Line Number with checksum"));
            return;
        }
        enqueue(text, -1);
        return;
    }
    uint8_t is_m110 = strstr_P(text, PSTR("M110")) != NULL;
    const char *npos = text;
    if (is_m110) {
        const char *n2 = strchr(strstr_P(text, PSTR("M110")) + 4, 'N');
        if (n2) npos = n2;
    }
    int32_t n = 0;
    parse_i32(npos + 1, &n);
    if (!is_m110) {
        if (n == last_line) return; /* a duplicate of the last accepted line: ignore it */
        if (n != last_line + 1) {
            line_error(PSTR("Line Number is not Last Line Number+1"));
            return;
        }
    }
    if (!star) {
        line_error(PSTR("No Checksum with line number"));
        return;
    }
    uint8_t cs = 0;
    for (const char *p = text; p < star; p++) cs ^= (uint8_t)*p;
    int32_t given = -1;
    if (line_overflow || !parse_i32(star + 1, &given) || given != cs) {
        line_error(PSTR("checksum mismatch"));
        return;
    }
    int32_t own_n = 0;
    parse_i32(text + 1, &own_n);
    last_line = n;
    *star = 0;
    char *cmd = text + 1;
    while (*cmd && *cmd != ' ') cmd++; /* skip "N<n>" */
    enqueue(trim(cmd), own_n);
}

void queue_read_serial(void) {
    while (q_count < CMD_SLOTS) {
        int16_t c = uart_read();
        if (c < 0) return;
        if (c == '\n' || c == '\r') {
            uint8_t skip = skip_to_eol;
            skip_to_eol = in_comment = 0; /* process_line() may set skip_to_eol again */
            if (!skip && line_len) process_line();
            line_len = 0;
            line_overflow = 0;
            continue;
        }
        if (skip_to_eol || in_comment) continue;
        if (c == ';') {
            in_comment = 1;
            continue;
        }
        if (line_len < CMD_LEN - 1) line[line_len++] = (char)c;
        else line_overflow = 1;
    }
}

const char *queue_front(void) { return q_count ? slots[q_head] : NULL; }

void queue_finish_front(uint8_t ok_sent) {
    if (!q_count) return;
    if (!ok_sent) {
        UART_PUTS("ok");
        if (slot_line[q_head] >= 0) {
            UART_PUTS(" N");
            uart_print_i32(slot_line[q_head]);
        }
        queue_print_free();
        uart_newline();
    }
    q_head = (uint8_t)((q_head + 1) % CMD_SLOTS);
    q_count--;
}
