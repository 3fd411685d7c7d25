/* Board support for the NUCLEO-G071RB (STM32G071RB), register level, no vendor HAL.
 * Written from RM0444 rev 5 (STM32G0x1 reference manual): 5.4 RCC registers (CR, CFGR,
 * PLLCFGR, IOPENR, APBENR1), 3.7.1 FLASH_ACR, 7.4 GPIO registers, 33.8 USART registers; and
 * UM2324 (STM32 Nucleo-64 boards with STM32G0 MCUs): USART2 on PA2/PA3 is the ST-LINK virtual
 * COM port.
 *
 * Clock: HSI16 -> PLL (M 1, N 8, R 2) = 64 MHz SYSCLK; AHB /1, APB /1 (USART2's clock);
 * flash 2 wait states with prefetch and instruction cache (3.3.4 of RM0444: 2 WS for
 * 48 < HCLK <= 64 MHz in range 1). Every wait on a ready flag is bounded: where the PLL never
 * locks the core stays on HSI16 and says so. */
#include <stdint.h>

#include "board.h"
#include "nas_project.h"
#include "regs.h"

#define RCC 0x40021000u
#define RCC_CR REG(RCC + 0x00u)
#define RCC_CFGR REG(RCC + 0x08u)
#define RCC_PLLCFGR REG(RCC + 0x0Cu)
#define RCC_IOPENR REG(RCC + 0x34u)
#define RCC_APBENR1 REG(RCC + 0x3Cu)
#define FLASH_ACR REG(0x40022000u)
#define GPIOA 0x50000000u
#define GPIOA_MODER REG(GPIOA + 0x00u)
#define GPIOA_OSPEEDR REG(GPIOA + 0x08u)
#define GPIOA_AFRL REG(GPIOA + 0x20u)
#define USART2 0x40004400u
#define USART2_CR1 REG(USART2 + 0x00u)
#define USART2_BRR REG(USART2 + 0x0Cu)
#define USART2_ISR REG(USART2 + 0x1Cu)
#define USART2_TDR REG(USART2 + 0x28u)

#define HSI_HZ 16000000u
#define PLL_M 1u
#define PLL_N 8u
#define PLL_R 2u
#define PLL_HZ (HSI_HZ / PLL_M * PLL_N / PLL_R)
_Static_assert(PLL_HZ == NAS_CLOCK_HZ, "the PLL settings must give the profile's clock_hz");

static uint32_t clock_hz = HSI_HZ;
static const char *clock_note = "HSI16: the PLL did not lock";

static void clock_init(void)
{
    /* PLLSRC = HSI16 (10), PLLM = /1 (000), PLLN = 8, PLLR = /2 (001) enabled. */
    RCC_PLLCFGR = 2u | ((PLL_M - 1u) << 4) | (PLL_N << 8) | (1u << 28) | ((PLL_R - 1u) << 29);
    RCC_CR |= 1u << 24; /* PLLON */
    if (!wait_set(&RCC_CR, 1u << 25, 1u << 25)) /* PLLRDY */
        return;
    FLASH_ACR = (FLASH_ACR & ~7u) | 2u | (1u << 8) | (1u << 9); /* 2 WS, PRFTEN, ICEN */
    if (!wait_set(&FLASH_ACR, 7u, 2u))
        return;
    RCC_CFGR = (RCC_CFGR & ~7u) | 2u; /* SW = PLLRCLK */
    if (!wait_set(&RCC_CFGR, 7u << 3, 2u << 3)) /* SWS */
        return;
    clock_hz = PLL_HZ;
    clock_note = "PLL from HSI16";
}

static void uart_init(void)
{
    RCC_IOPENR |= 1u << 0;   /* GPIOAEN */
    RCC_APBENR1 |= 1u << 17; /* USART2EN; its clock is PCLK after reset (CCIPR) */
    /* PA2 = USART2_TX: alternate function 1, high speed. */
    GPIOA_MODER = (GPIOA_MODER & ~(3u << 4)) | (2u << 4);
    GPIOA_OSPEEDR |= 3u << 4;
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFu << 8)) | (1u << 8);
    USART2_BRR = (clock_hz + NAS_UART_BAUD / 2u) / NAS_UART_BAUD; /* oversampling by 16 */
    USART2_CR1 = (1u << 3) | (1u << 0);                          /* TE, UE */
}

void board_init(void)
{
    clock_init();
    uart_init();
}

uint32_t board_clock_hz(void) { return clock_hz; }

const char *board_clock_note(void) { return clock_note; }

void board_putc(char c)
{
    wait_set(&USART2_ISR, 1u << 7, 1u << 7); /* TXE (TXFNF) */
    USART2_TDR = (uint8_t)c;
}

void board_flush(void) { wait_set(&USART2_ISR, 1u << 6, 1u << 6); /* TC */ }
