/* What main.c needs of a board: implemented once per board in board.c (copied by `nas export
 * --project c` from nas's firmware/boards/). */
#ifndef NAS_BOARD_H
#define NAS_BOARD_H

#include <stdint.h>

/* Core clock to the profile's frequency and the debug UART; returns whatever happens. */
void board_init(void);
/* The core clock actually running, in Hz, and how it was reached. */
uint32_t board_clock_hz(void);
const char *board_clock_note(void);
/* One byte out of the debug UART (blocking, with a bounded wait). */
void board_putc(char c);
/* Wait until the UART has sent everything. */
void board_flush(void);

#endif
