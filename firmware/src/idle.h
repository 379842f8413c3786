/* What the firmware does while it waits: read the serial line, honour emergencies, and send
 * `echo:busy: processing` keepalives during blocking commands. */
#ifndef PARTRIG_IDLE_H
#define PARTRIG_IDLE_H

#include <stdint.h>

extern uint8_t busy_interval_s; /* M113; 0 = no keepalives */

/* One round of background work; never executes queued commands. */
void idle(void);

/* Wait until every queued move has finished; with `busy` set, send keepalives meanwhile. */
void synchronize(uint8_t busy);

/* Mark a blocking command running (keepalives due) or finished. */
void busy_begin(void);
void busy_end(void);

/* M112: report and stop forever (until reset). */
void kill_forever(void) __attribute__((noreturn));

#endif
