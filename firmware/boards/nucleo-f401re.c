/* Board support for the NUCLEO-F401RE (STM32F401RE), register level, no vendor HAL.
 * Written from RM0368 rev 5 (STM32F401xB/C/D/E reference manual): 6.3 RCC registers
 * (CR, PLLCFGR, CFGR, AHB1ENR, APB1ENR), 3.8.1 FLASH_ACR, 8.4 GPIO registers, 19.6 USART
 * registers; and UM1724 (STM32 Nucleo-64 boards) 6.8: USART2 on PA2/PA3 is the ST-LINK
 * virtual COM port.
 *
 * Clock: HSI 16 MHz -> PLL (M 16, N 336, P 4) = 84 MHz SYSCLK; AHB /1, APB1 /2 (42 MHz, its
 * maximum), APB2 /1; flash 2 wait states with prefetch and caches (Table 6 of RM0368: 2 WS
 * for 60 < HCLK <= 84 MHz at 2.7-3.6 V). Every wait on a ready flag is bounded: where the
 * PLL never locks (QEMU does not model the RCC) the core stays on HSI and says so. */
#include <stdint.h>

#include "board.h"
#include "nas_project.h"
#include "regs.h"

#define RCC 0x40023800u
#define RCC_CR REG(RCC + 0x00u)
#define RCC_PLLCFGR REG(RCC + 0x04u)
#define RCC_CFGR REG(RCC + 0x08u)
#define RCC_AHB1ENR REG(RCC + 0x30u)
#define RCC_APB1ENR REG(RCC + 0x40u)
#define FLASH_ACR REG(0x40023C00u)
#define GPIOA 0x40020000u
#define GPIOA_MODER REG(GPIOA + 0x00u)
#define GPIOA_OSPEEDR REG(GPIOA + 0x08u)
#define GPIOA_AFRL REG(GPIOA + 0x20u)
#define USART2 0x40004400u
#define USART2_SR REG(USART2 + 0x00u)
#define USART2_DR REG(USART2 + 0x04u)
#define USART2_BRR REG(USART2 + 0x08u)
#define USART2_CR1 REG(USART2 + 0x0Cu)

#define HSI_HZ 16000000u
#define PLL_M 16u
#define PLL_N 336u
#define PLL_P 4u
#define PLL_HZ (HSI_HZ / PLL_M * PLL_N / PLL_P)
_Static_assert(PLL_HZ == NAS_CLOCK_HZ, "the PLL settings must give the profile's clock_hz");

static uint32_t clock_hz = HSI_HZ;
static const char *clock_note = "HSI 16 MHz: the PLL did not lock";

static void clock_init(void)
{
    /* HSI is on after reset. PLL source HSI (PLLSRC = 0), Q = 7 (48 MHz domain unused). */
    RCC_PLLCFGR = PLL_M | (PLL_N << 6) | (((PLL_P / 2u) - 1u) << 16) | (7u << 24);
    RCC_CR |= 1u << 24; /* PLLON */
    if (!wait_set(&RCC_CR, 1u << 25, 1u << 25)) /* PLLRDY */
        return;
    FLASH_ACR = 2u | (1u << 8) | (1u << 9) | (1u << 10); /* 2 WS, PRFTEN, ICEN, DCEN */
    if (!wait_set(&FLASH_ACR, 0xFu, 2u))
        return;
    RCC_CFGR = (RCC_CFGR & ~((0xFu << 4) | (7u << 10) | (7u << 13) | 3u)) | (4u << 10); /* APB1 /2 */
    RCC_CFGR |= 2u; /* SW = PLL */
    if (!wait_set(&RCC_CFGR, 3u << 2, 2u << 2)) /* SWS = PLL */
        return;
    clock_hz = PLL_HZ;
    clock_note = "PLL from HSI";
}

static void uart_init(void)
{
    uint32_t pclk1 = clock_hz == PLL_HZ ? clock_hz / 2u : clock_hz;
    RCC_AHB1ENR |= 1u << 0;  /* GPIOAEN */
    RCC_APB1ENR |= 1u << 17; /* USART2EN */
    /* PA2 = USART2_TX: alternate function 7, high speed. */
    GPIOA_MODER = (GPIOA_MODER & ~(3u << 4)) | (2u << 4);
    GPIOA_OSPEEDR |= 3u << 4;
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFu << 8)) | (7u << 8);
    USART2_BRR = (pclk1 + NAS_UART_BAUD / 2u) / NAS_UART_BAUD; /* oversampling by 16 */
    USART2_CR1 = (1u << 13) | (1u << 3);                      /* UE, TE */
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
    wait_set(&USART2_SR, 1u << 7, 1u << 7); /* TXE */
    USART2_DR = (uint8_t)c;
}

void board_flush(void) { wait_set(&USART2_SR, 1u << 6, 1u << 6); /* TC */ }
