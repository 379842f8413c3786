/* Build-time constants of the partrig firmware: sizes, rates and the identity it reports.
 *
 * WHY one header: the host (rig/link.py) sizes its in-flight window from what M115 and the
 * ADVANCED_OK replies say, so these numbers are part of the protocol and live in one place. */
#ifndef PARTRIG_CONFIG_H
#define PARTRIG_CONFIG_H

#define FIRMWARE_VERSION "1.0"

#ifndef BAUD_RATE
#define BAUD_RATE 250000UL
#endif

/* Marlin's AVR defaults, so a host tuned for stock Marlin fits this firmware too. */
#define RX_BUFFER_SIZE 128 /* power of two */
#define TX_BUFFER_SIZE 128 /* power of two */
#define CMD_SLOTS 4        /* BUFSIZE */
#define CMD_LEN 96         /* MAX_CMD_SIZE */
#define PLANNER_SLOTS 8    /* power of two */

/* The step generator runs at a fixed rate (a DDA): one Timer1 compare match every
 * 1/STEP_TICK_HZ s may emit one step, so this is also the highest step rate. */
#define STEP_TICK_HZ 20000UL
#define TICKS_PER_MS (STEP_TICK_HZ / 1000UL)

/* Defaults until the host sends M92/M203/M201: 200 steps x 16 microsteps per 360 degrees. */
#define DEFAULT_STEPS_PER_UNIT_E6 8888889LL
#define DEFAULT_MAX_FEED_UPS 360.0f
#define DEFAULT_ACCEL_UPS2 720.0f
#define DEFAULT_FEED_UPM 21600.0f

/* Homing on the X-min endstop (units are degrees on a turntable). */
#define HOMING_FEED_UPS 60.0f   /* fast approach, capped by M203 */
#define HOMING_SLOW_DIVISOR 6   /* slow re-approach = fast / this */
#define HOMING_BACKOFF_UNITS 5  /* back off this far between approaches */
#define HOMING_RANGE_UNITS 378  /* one turn plus 5 %: give up after this */

#define BUSY_INTERVAL_DEFAULT_S 2

#endif
