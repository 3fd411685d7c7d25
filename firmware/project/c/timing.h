/* Cycle counting around each inference: the DWT cycle counter where the core has one and it
 * runs, SysTick (24 bits, extended by its reload interrupt) otherwise. */
#ifndef NAS_TIMING_H
#define NAS_TIMING_H

#include <stdint.h>

/* Start the counter; returns its name ("DWT CYCCNT" or "SysTick"). */
const char *timing_init(void);
/* Core clock cycles since timing_init (wraps after 2^32 with the DWT, 2^56 with SysTick). */
uint64_t timing_cycles(void);

#endif
