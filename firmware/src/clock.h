/* A millisecond clock on Timer0 (CTC, 1 kHz): keepalives and G4 dwell. */
#ifndef PARTRIG_CLOCK_H
#define PARTRIG_CLOCK_H

#include <stdint.h>

void clock_init(void);
uint32_t millis(void);

#endif
