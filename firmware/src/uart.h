/* UART0 (the RAMPS board's USB serial): interrupt-driven receive and transmit rings. */
#ifndef PARTRIG_UART_H
#define PARTRIG_UART_H

#include <avr/pgmspace.h>
#include <stdint.h>

void uart_init(void);

/* Next received byte, or -1 when none is waiting. */
int16_t uart_read(void);
uint8_t uart_rx_waiting(void);

/* Discard everything received but not yet read; returns how many bytes were dropped and
 * stores the last dropped byte in *last (unchanged when nothing was dropped). */
uint8_t uart_rx_flush(uint8_t *last);

/* Blocking writes (they wait for room in the transmit ring; never call from an ISR). */
void uart_putc(char c);
void uart_puts(const char *s);
void uart_puts_p(const char *s); /* from flash */
void uart_print_i32(int32_t v);
void uart_print_u32(uint32_t v);
/* A value scaled by 1e6 printed with `decimals` (0..6) decimals, rounded half away from 0. */
void uart_print_fixed(int64_t value_e6, uint8_t decimals);
void uart_newline(void);
void uart_flush_tx(void);

#define UART_PUTS(s) uart_puts_p(PSTR(s))

#endif
