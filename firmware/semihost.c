/* ARM semihosting: `bkpt 0xAB` with the operation in r0 and its argument in r1. QEMU runs these
 * on the host with `-semihosting-config enable=on,target=native`. */
#include "semihost.h"

#define SYS_WRITE0 0x04u
#define SYS_EXIT 0x18u
#define SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static char nas_line[160];
static uint32_t nas_line_len;

static uint32_t nas_semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void nas_flush(void)
{
    nas_line[nas_line_len] = 0;
    nas_semihost(SYS_WRITE0, nas_line);
    nas_line_len = 0;
}

static void nas_putc(char c)
{
    if (nas_line_len + 1 >= sizeof nas_line)
        nas_flush();
    nas_line[nas_line_len++] = c;
}

void nas_puts(const char *s)
{
    while (*s)
        nas_putc(*s++);
}

void nas_hex(uint32_t v)
{
    static const char digits[16] = "0123456789abcdef";
    nas_putc(' ');
    for (int shift = 28; shift >= 0; shift -= 4)
        nas_putc(digits[(v >> shift) & 0xFu]);
}

void nas_endl(void)
{
    nas_putc('\n');
    nas_flush();
}

void nas_exit(int status)
{
    uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
    nas_semihost(SYS_EXIT_EXTENDED, block);
    /* A host without SYS_EXIT_EXTENDED: plain exit, then stop here. */
    nas_semihost(SYS_EXIT, (const void *)ADP_STOPPED_APPLICATION_EXIT);
    for (;;)
        __asm__ volatile("" ::: "memory");
}
