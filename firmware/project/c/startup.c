/* Start-up: the vector table (core exceptions; the program uses no peripheral interrupts), the
 * reset handler (FPU on where the core has one, .data copied, .bss zeroed, then main) and a
 * fault handler that says so on the UART. */
#include <stdint.h>

#include "board.h"
#include "nas_project.h"

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
extern int main(void);
extern void SysTick_Handler(void);

void Reset_Handler(void) __attribute__((noreturn));
void Fault_Handler(void) __attribute__((noreturn));

void Reset_Handler(void)
{
#if NAS_HAS_FPU
    /* CPACR: full access to coprocessors 10 and 11 (the FPU), before any float instruction. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    const volatile uint32_t *src = &__data_load;
    volatile uint32_t *dst = &__data_start;
    while (dst < &__data_end)
        *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;)
        *dst++ = 0;
    main();
    for (;;)
        __asm__ volatile("wfi");
}

void Fault_Handler(void)
{
    static const char msg[] = "\r\nnas: fault\r\n";
    for (const char *p = msg; *p; p++)
        board_putc(*p);
    board_flush();
    for (;;) {
    }
}

typedef void (*vector)(void);

__attribute__((section(".isr_vector"), used)) const vector vectors[16] = {
    (vector)&__stack_top, /* initial stack pointer */
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0,
    0,
    0,
    0,
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMonitor */
    0,
    Fault_Handler, /* PendSV */
    SysTick_Handler,
};
