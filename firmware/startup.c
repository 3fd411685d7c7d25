/* Start-up for the `nas verify` harness on any Cortex-M core: the vector table, the reset
 * handler (copy .data, zero .bss, enable the FPU where the core has one), fault handlers that
 * report through semihosting, and the SysTick handler that extends the 24-bit counter used to
 * count instructions. */
#include <stdint.h>

#include "nas_config.h"
#include "semihost.h"

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
extern int main(void);

/* SysTick reloads: the upper bits of the instruction-count timer. */
volatile uint32_t nas_systick_wraps;

void Reset_Handler(void) __attribute__((noreturn));
void nas_fault_handler(void) __attribute__((noreturn));
void nas_systick_handler(void);

void Reset_Handler(void)
{
#if NAS_HAS_FPU
    /* CPACR: full access to coprocessors 10 and 11 (the FPU), before any float instruction. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    /* Volatile pointers keep GCC from turning the loops into memcpy/memset calls. */
    const volatile uint32_t *src = &__data_load;
    volatile uint32_t *dst = &__data_start;
    while (dst < &__data_end)
        *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;)
        *dst++ = 0;
    nas_exit(main());
}

void nas_fault_handler(void)
{
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    nas_puts("@nas fault");
    nas_hex(ipsr);
    nas_endl();
    nas_exit(3);
}

/* nas_systick_wraps++ in exactly 5 instructions, a count the host subtracts per reload. */
__asm__(".pushsection .text.nas_systick_handler,\"ax\",%progbits\n"
        ".syntax unified\n"
        ".thumb\n"
        ".balign 2\n"
        ".global nas_systick_handler\n"
        ".thumb_func\n"
        ".type nas_systick_handler, %function\n"
        "nas_systick_handler:\n"
        "   ldr r1, =nas_systick_wraps\n"
        "   ldr r0, [r1]\n"
        "   adds r0, r0, #1\n"
        "   str r0, [r1]\n"
        "   bx lr\n"
        ".ltorg\n"
        ".size nas_systick_handler, . - nas_systick_handler\n"
        ".popsection\n");

typedef void (*nas_vector)(void);

__attribute__((section(".isr_vector"), used)) const nas_vector nas_vectors[16] = {
    (nas_vector)&__stack_top, /* initial stack pointer */
    Reset_Handler,
    nas_fault_handler, /* NMI */
    nas_fault_handler, /* HardFault */
    nas_fault_handler, /* MemManage */
    nas_fault_handler, /* BusFault */
    nas_fault_handler, /* UsageFault */
    0,
    0,
    0,
    0,
    nas_fault_handler, /* SVCall */
    nas_fault_handler, /* DebugMonitor */
    0,
    nas_fault_handler, /* PendSV */
    nas_systick_handler,
};
