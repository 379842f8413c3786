/* Number parsing for G-code words, without floating point for positions.
 *
 * WHY fixed point: avr-gcc's double is a 32-bit float (7 significant digits), so X100000.125
 * would lose its fraction and steps would drift.  Positions are kept as int64 millionths. */
#ifndef PARTRIG_NUMBER_H
#define PARTRIG_NUMBER_H

#include <stdint.h>

#define E6 1000000LL

/* Parse a decimal like "-12.5" at s into millionths (rounded); 0 if there is no number. */
uint8_t parse_e6(const char *s, int64_t *out);
/* Parse an integer (an optional sign and digits); 0 if there is none. */
uint8_t parse_i32(const char *s, int32_t *out);

/* The value after word `letter` in a command ("G1 X90 F600", 'X' -> "90 F600"), skipping the
 * command code itself; NULL if the word is absent. */
const char *word(const char *cmd, char letter);

#endif
