/* The command queue: assembles received lines, checks line numbers and checksums with Marlin's
 * exact error replies, and holds up to CMD_SLOTS accepted commands. */
#ifndef PARTRIG_QUEUE_H
#define PARTRIG_QUEUE_H

#include <stdint.h>

void queue_init(void);

/* Move received bytes into the queue while it has room (called from idle()). */
void queue_read_serial(void);

/* The oldest accepted command (without N and checksum), or NULL when the queue is empty. */
const char *queue_front(void);

/* The command at the front has run: acknowledge it (unless `ok_sent`) and drop it. */
void queue_finish_front(uint8_t ok_sent);

/* M110: the next line must be n + 1. */
void queue_set_last_line(int32_t n);

/* The ADVANCED_OK tail: " P<planner free> B<command slots free>". */
void queue_print_free(void);

#endif
