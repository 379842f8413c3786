/* UART0 driver: 128-byte receive ring filled by the RX interrupt, transmit ring drained by the
 * data-register-empty interrupt.
 *
 * WHY the emergency parser is called from the RX interrupt: M112 and M410 must act while the
 * main loop is blocked in a long command (M400, G28), exactly like Marlin's EMERGENCY_PARSER. */
#include "uart.h"

#include <avr/interrupt.h>
#include <avr/io.h>
#include <util/atomic.h>

#include "config.h"
#include "emergency.h"

static volatile uint8_t rx_buf[RX_BUFFER_SIZE];
static volatile uint8_t rx_head, rx_tail;
static volatile uint8_t tx_buf[TX_BUFFER_SIZE];
static volatile uint8_t tx_head, tx_tail;

void uart_init(void) {
    /* NOTE: U2X with UBRR = (F_CPU/4/baud - 1)/2, as Marlin computes it: exact for 250000 at
     * 16 MHz (UBRR 7), where the classic /16 formula is not. */
    uint16_t ubrr = (uint16_t)(((F_CPU / 4UL / BAUD_RATE) - 1UL) / 2UL);
    UCSR0A = _BV(U2X0);
    UBRR0H = (uint8_t)(ubrr >> 8);
    UBRR0L = (uint8_t)ubrr;
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00); /* 8N1 */
    UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
}

ISR(USART0_RX_vect) {
    uint8_t status = UCSR0A;
    uint8_t c = UDR0;
    if (status & (_BV(FE0) | _BV(DOR0))) {
        /* A framing error or overrun means the byte is garbage; keep it so the line fails its
         * checksum and the host re-sends, instead of silently shortening the line. */
        c = '?';
    }
    emergency_feed(c);
    uint8_t next = (uint8_t)((rx_head + 1) & (RX_BUFFER_SIZE - 1));
    if (next != rx_tail) {
        rx_buf[rx_head] = c;
        rx_head = next;
    }
}

ISR(USART0_UDRE_vect) {
    if (tx_head == tx_tail) {
        UCSR0B &= (uint8_t)~_BV(UDRIE0);
        return;
    }
    UDR0 = tx_buf[tx_tail];
    tx_tail = (uint8_t)((tx_tail + 1) & (TX_BUFFER_SIZE - 1));
}

int16_t uart_read(void) {
    if (rx_head == rx_tail) return -1;
    uint8_t c = rx_buf[rx_tail];
    rx_tail = (uint8_t)((rx_tail + 1) & (RX_BUFFER_SIZE - 1));
    return c;
}

uint8_t uart_rx_waiting(void) {
    return (uint8_t)((rx_head - rx_tail) & (RX_BUFFER_SIZE - 1));
}

uint8_t uart_rx_flush(uint8_t *last) {
    uint8_t dropped = 0;
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        while (rx_tail != rx_head) {
            *last = rx_buf[rx_tail];
            rx_tail = (uint8_t)((rx_tail + 1) & (RX_BUFFER_SIZE - 1));
            dropped++;
        }
    }
    return dropped;
}

void uart_putc(char c) {
    uint8_t next = (uint8_t)((tx_head + 1) & (TX_BUFFER_SIZE - 1));
    while (next == tx_tail) {
        /* wait for the UDRE interrupt to make room */
    }
    tx_buf[tx_head] = (uint8_t)c;
    tx_head = next;
    UCSR0B |= _BV(UDRIE0);
}

void uart_puts(const char *s) {
    while (*s) uart_putc(*s++);
}

void uart_puts_p(const char *s) {
    char c;
    while ((c = (char)pgm_read_byte(s++)) != 0) uart_putc(c);
}

void uart_print_u32(uint32_t v) {
    char digits[10];
    uint8_t n = 0;
    do {
        digits[n++] = (char)('0' + (v % 10U));
        v /= 10U;
    } while (v);
    while (n) uart_putc(digits[--n]);
}

void uart_print_i32(int32_t v) {
    if (v < 0) {
        uart_putc('-');
        uart_print_u32((uint32_t)(-(v + 1)) + 1U);
    } else {
        uart_print_u32((uint32_t)v);
    }
}

void uart_print_fixed(int64_t value_e6, uint8_t decimals) {
    static const uint32_t scale[7] = {1000000UL, 100000UL, 10000UL, 1000UL, 100UL, 10UL, 1UL};
    if (decimals > 6) decimals = 6;
    uint32_t unit = scale[decimals]; /* how many 1e-6 steps make one printed digit */
    uint64_t mag = (uint64_t)(value_e6 < 0 ? -value_e6 : value_e6);
    mag = (mag + unit / 2U) / unit; /* rounded, in units of 10^-decimals */
    uint32_t denom = 1;
    for (uint8_t i = 0; i < decimals; i++) denom *= 10U;
    if (value_e6 < 0 && mag != 0) uart_putc('-');
    uart_print_u32((uint32_t)(mag / denom));
    if (decimals) {
        uart_putc('.');
        uint32_t frac = (uint32_t)(mag % denom);
        for (uint32_t d = denom / 10U; d; d /= 10U) {
            uart_putc((char)('0' + (frac / d) % 10U));
        }
    }
}

void uart_newline(void) { uart_putc('\n'); }

void uart_flush_tx(void) {
    while (tx_head != tx_tail) {
    }
}
