/* ARM semihosting for the `nas verify` harness: text output and exit with a status code. */
#ifndef NAS_SEMIHOST_H
#define NAS_SEMIHOST_H

#include <stdint.h>

/* Append text / a space and a 32-bit value in hex (8 digits) to the output line. Everything
 * is printed in hex: decimal would need a division, a libgcc call on ARMv6-M. */
void nas_puts(const char *s);
void nas_hex(uint32_t v);
/* End the line and send it to the host (SYS_WRITE0). */
void nas_endl(void);
/* Stop the emulator with an exit status (SYS_EXIT_EXTENDED). */
void nas_exit(int status) __attribute__((noreturn));

#endif
