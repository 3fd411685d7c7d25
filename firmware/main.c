/* The `nas verify` harness: run the generated kernel on the embedded samples and report through
 * semihosting, one line per fact, each starting with "@nas". All numbers are hex.
 *
 *   @nas start <samples> <input_len> <classes>
 *   @nas cal <n1> <t> <t'> <n2> <t> <t'> <t> <t'>     instruction-count calibration
 *   @nas out <index> <t> <t'> <logit bits>...          one inference per sample
 *   @nas predict <class of sample 0>
 *   @nas stack <bytes>                                 stack peak of one inference
 *   @nas end
 *
 * <t> <t'> are the timer readings (64 bits each, as two words) before and after: spin(n1),
 * spin(n2), nothing, and each inference. Instructions are counted with SysTick under QEMU's
 * `-icount`: the virtual clock advances a fixed time per instruction, so SysTick ticks are
 * proportional to instructions executed. The host derives ticks per instruction from the two
 * spins (2 instructions per iteration), subtracts the cost of reading the timer (the empty
 * bracket) and the SysTick handler's 5 instructions per reload (bits 24 and up of a reading).
 */
#include <stdint.h>

#include "nas_config.h"
#include "semihost.h"

extern const uint8_t nas_samples[NAS_SAMPLES][NAS_INPUT_LEN];
extern volatile uint32_t nas_systick_wraps;
extern uint32_t __stack_bottom;

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_RELOAD 0x00FFFFFFu
#define STACK_PAINT 0xC5AC5AC5u

static float nas_logits[NAS_CLASSES];

/* Ticks since the timer started: reloads × 2^24 + the down-counter's progress. */
static uint64_t nas_now(void)
{
    uint32_t wraps, value;
    do {
        wraps = nas_systick_wraps;
        value = SYST_CVR;
    } while (wraps != nas_systick_wraps);
    return ((uint64_t)wraps << 24) + (SYST_RELOAD - value);
}

/* Exactly 2 × n instructions in the loop (n ≥ 1) plus the return, the same on every Thumb core. */
void nas_spin(uint32_t n);
__asm__(".pushsection .text.nas_spin,\"ax\",%progbits\n"
        ".syntax unified\n"
        ".thumb\n"
        ".balign 2\n"
        ".thumb_func\n"
        ".type nas_spin, %function\n"
        "nas_spin:\n"
        "1: subs r0, r0, #1\n"
        "   bne 1b\n"
        "   bx lr\n"
        ".size nas_spin, . - nas_spin\n"
        ".popsection\n");

static void nas_report(uint64_t t)
{
    nas_hex((uint32_t)(t >> 32));
    nas_hex((uint32_t)t);
}

static void nas_calibrate(void)
{
    const uint32_t n1 = 1000u, n2 = 101000u;
    uint64_t t[6];
    t[0] = nas_now();
    nas_spin(n1);
    t[1] = nas_now();
    t[2] = nas_now();
    nas_spin(n2);
    t[3] = nas_now();
    t[4] = nas_now();
    t[5] = nas_now();
    nas_puts("@nas cal");
    nas_hex(n1);
    nas_report(t[0]);
    nas_report(t[1]);
    nas_hex(n2);
    nas_report(t[2]);
    nas_report(t[3]);
    nas_report(t[4]);
    nas_report(t[5]);
    nas_endl();
}

/* Stack peak of one inference: paint the free stack below this frame, run, find the lowest
 * word that changed. SysTick is stopped so no exception frame lands on the stack. */
__attribute__((noinline)) static uint32_t nas_stack_peak(const uint8_t *input)
{
    volatile uint32_t *p;
    uint32_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (p = &__stack_bottom; (uint32_t)p < sp; p++)
        *p = STACK_PAINT;
    NAS_INFER(input, nas_logits);
    for (p = &__stack_bottom; (uint32_t)p < sp && *p == STACK_PAINT; p++) {
    }
    return sp - (uint32_t)p;
}

int main(void)
{
    nas_puts("@nas start");
    nas_hex(NAS_SAMPLES);
    nas_hex(NAS_INPUT_LEN);
    nas_hex(NAS_CLASSES);
    nas_endl();

    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, interrupt on reload, enabled */

    nas_calibrate();
    for (uint32_t i = 0; i < NAS_SAMPLES; i++) {
        uint64_t a = nas_now();
        NAS_INFER(nas_samples[i], nas_logits);
        uint64_t b = nas_now();
        nas_puts("@nas out");
        nas_hex(i);
        nas_report(a);
        nas_report(b);
        for (uint32_t c = 0; c < NAS_CLASSES; c++) {
            union {
                float f;
                uint32_t u;
            } bits = {nas_logits[c]};
            nas_hex(bits.u);
        }
        nas_endl();
    }
    SYST_CSR = 0u;

    nas_puts("@nas predict");
    nas_hex((uint32_t)NAS_PREDICT(nas_samples[0]));
    nas_endl();

    nas_puts("@nas stack");
    nas_hex(nas_stack_peak(nas_samples[0]));
    nas_endl();

    nas_puts("@nas end");
    nas_endl();
    return 0;
}
