/* Memory-mapped register access for the board-support and timing code, and the bounded wait
 * on a ready flag that keeps every hardware wait finite (where a flag never comes, e.g. an
 * emulator that does not model the clock tree, the caller carries on and says so). */
#ifndef NAS_REGS_H
#define NAS_REGS_H

#include <stdint.h>

#define REG(addr) (*(volatile uint32_t *)(addr))

/* Polls of a ready flag before giving up (each a few cycles; a PLL locks in ~100 us). */
#define READY_POLLS 200000u

/* 1 when (*reg & mask) reached value within READY_POLLS polls, else 0. */
static inline int wait_set(volatile uint32_t *reg, uint32_t mask, uint32_t value)
{
    for (uint32_t i = 0; i < READY_POLLS; i++)
        if ((*reg & mask) == value)
            return 1;
    return 0;
}

#endif
