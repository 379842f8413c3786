/* The emergency parser: watches received bytes (inside the RX interrupt) for M112 and M410. */
#ifndef PARTRIG_EMERGENCY_H
#define PARTRIG_EMERGENCY_H

#include <stdint.h>

/* Set from the RX interrupt; the main loop reports and finishes the job. */
extern volatile uint8_t emergency_killed;    /* M112 seen: motor already stopped and off */
extern volatile uint8_t emergency_quickstop; /* M410 seen: steps already stopped */

void emergency_feed(uint8_t c);

#endif
