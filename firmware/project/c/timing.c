/* Cycle counting (see timing.h). The DWT (ARMv7-M Architecture Reference Manual C1.8: DEMCR
 * TRCENA, DWT_CTRL CYCCNTENA, DWT_CYCCNT; on the Cortex-M7 the DWT lock access register must
 * be unlocked first) counts every core clock cycle. Cores without one (Cortex-M0/M0+), and
 * emulators that do not model it, fall back to SysTick on the processor clock, which counts the
 * same cycles 2^24 at a time. */
#include "timing.h"

#include "nas_project.h"
#include "regs.h"

#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)
#define DWT_LAR REG(0xE0001FB0u)
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define SYST_RELOAD 0x00FFFFFFu
#define ICSR REG(0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26)

static int use_dwt;
static volatile uint32_t systick_wraps;
static uint32_t dwt_high, dwt_last;
static uint64_t systick_last;

void SysTick_Handler(void) { systick_wraps++; }

#if NAS_HAS_DWT
static int dwt_start(void)
{
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_LAR = 0xC5ACCE55u;
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;
    uint32_t a = DWT_CYCCNT;
    for (volatile int i = 0; i < 16; i++) {
    }
    return DWT_CYCCNT != a;
}
#endif

const char *timing_init(void)
{
#if NAS_HAS_DWT
    if (dwt_start()) {
        use_dwt = 1;
        return "DWT CYCCNT";
    }
#endif
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, interrupt on reload, enabled */
    /* The counter reads 0 until its first reload; counting from there would start 2^24 ahead. */
    for (int i = 0; i < 1000 && SYST_CVR == 0; i++) {
    }
    return "SysTick";
}

uint64_t timing_cycles(void)
{
    if (use_dwt) {
        /* Extend the 32-bit counter: called at least once per 2^32 cycles (51 s at 84 MHz). */
        uint32_t now = DWT_CYCCNT;
        if (now < dwt_last)
            dwt_high++;
        dwt_last = now;
        return ((uint64_t)dwt_high << 32) | now;
    }
    uint32_t wraps, value, pending;
    do {
        wraps = systick_wraps;
        value = SYST_CVR;
        pending = ICSR & ICSR_PENDSTSET;
    } while (wraps != systick_wraps);
    /* A reload whose interrupt has not run yet (it is pending): count it when the value was
     * read after the reload (still high), not when it was read just before (near 0). */
    if (pending && value > SYST_RELOAD / 2u)
        wraps++;
    uint64_t now = ((uint64_t)wraps << 24) + (SYST_RELOAD - value);
    /* Emulators derive the counter from their own clock and may reload it before the wrap's
     * interrupt is pending: never go back in time. */
    while (now < systick_last)
        now += 1u << 24;
    systick_last = now;
    return now;
}
