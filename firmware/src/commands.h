/* The G-code commands the partrig host uses (a Marlin subset). */
#ifndef PARTRIG_COMMANDS_H
#define PARTRIG_COMMANDS_H

#include <stdint.h>

/* Run one command; returns 1 if it already printed its own `ok` line (M105). */
uint8_t command_execute(const char *cmd);

#endif
