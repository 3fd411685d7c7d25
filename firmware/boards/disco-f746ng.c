/* Board support for the 32F746G-DISCO (STM32F746NG), register level, no vendor HAL.
 * Written from RM0385 rev 8 (STM32F75xxx/74xxx reference manual): 5.4 RCC registers (CR,
 * PLLCFGR, CFGR, AHB1ENR, APB1ENR, APB2ENR), 4.1.4 PWR_CR1/CSR1 (over-drive), 3.7.1
 * FLASH_ACR, 6.4 GPIO registers, 34.8 USART registers; and UM1907 (32F746G-DISCO user
 * manual): USART1 on PA9 (TX) / PB7 (RX) is the ST-LINK virtual COM port.
 *
 * Clock: HSI 16 MHz -> PLL (M 8, N 216, P 2) = 216 MHz SYSCLK with the voltage regulator in
 * over-drive (required above 180 MHz); AHB /1, APB1 /4 (54 MHz), APB2 /2 (108 MHz, USART1's
 * clock); flash 7 wait states with the ART accelerator and prefetch (Table 5 of RM0385: 7 WS
 * for 210 < HCLK <= 216 MHz at 2.7-3.6 V). Every wait on a ready flag is bounded: where the
 * PLL never locks the core stays on HSI and says so. */
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
#define RCC_APB2ENR REG(RCC + 0x44u)
#define PWR_CR1 REG(0x40007000u)
#define PWR_CSR1 REG(0x40007004u)
#define FLASH_ACR REG(0x40023C00u)
#define GPIOA 0x40020000u
#define GPIOA_MODER REG(GPIOA + 0x00u)
#define GPIOA_OSPEEDR REG(GPIOA + 0x08u)
#define GPIOA_AFRH REG(GPIOA + 0x24u)
#define USART1 0x40011000u
#define USART1_CR1 REG(USART1 + 0x00u)
#define USART1_BRR REG(USART1 + 0x0Cu)
#define USART1_ISR REG(USART1 + 0x1Cu)
#define USART1_TDR REG(USART1 + 0x28u)

#define HSI_HZ 16000000u
#define PLL_M 8u
#define PLL_N 216u
#define PLL_P 2u
#define PLL_HZ (HSI_HZ / PLL_M * PLL_N / PLL_P)
_Static_assert(PLL_HZ == NAS_CLOCK_HZ, "the PLL settings must give the profile's clock_hz");

static uint32_t clock_hz = HSI_HZ;
static const char *clock_note = "HSI 16 MHz: the PLL did not lock";

static void clock_init(void)
{
    RCC_APB1ENR |= 1u << 28; /* PWREN */
    /* PLL from HSI (PLLSRC = 0), Q = 9 (48 MHz domain unused). */
    RCC_PLLCFGR = PLL_M | (PLL_N << 6) | (((PLL_P / 2u) - 1u) << 16) | (9u << 24);
    RCC_CR |= 1u << 24; /* PLLON */
    if (!wait_set(&RCC_CR, 1u << 25, 1u << 25)) /* PLLRDY */
        return;
    PWR_CR1 |= 1u << 16; /* ODEN */
    if (!wait_set(&PWR_CSR1, 1u << 16, 1u << 16)) /* ODRDY */
        return;
    PWR_CR1 |= 1u << 17; /* ODSWEN */
    if (!wait_set(&PWR_CSR1, 1u << 17, 1u << 17)) /* ODSWRDY */
        return;
    FLASH_ACR = 7u | (1u << 8) | (1u << 9); /* 7 WS, PRFTEN, ARTEN */
    if (!wait_set(&FLASH_ACR, 0xFu, 7u))
        return;
    /* AHB /1, APB1 /4 (PPRE1 = 101), APB2 /2 (PPRE2 = 100). */
    RCC_CFGR = (RCC_CFGR & ~((0xFu << 4) | (7u << 10) | (7u << 13) | 3u)) | (5u << 10) | (4u << 13);
    RCC_CFGR |= 2u; /* SW = PLL */
    if (!wait_set(&RCC_CFGR, 3u << 2, 2u << 2)) /* SWS = PLL */
        return;
    clock_hz = PLL_HZ;
    clock_note = "PLL from HSI, over-drive";
}

static void uart_init(void)
{
    uint32_t pclk2 = clock_hz == PLL_HZ ? clock_hz / 2u : clock_hz;
    RCC_AHB1ENR |= 1u << 0; /* GPIOAEN */
    RCC_APB2ENR |= 1u << 4; /* USART1EN; its clock is PCLK2 after reset (DCKCFGR2) */
    /* PA9 = USART1_TX: alternate function 7, high speed. */
    GPIOA_MODER = (GPIOA_MODER & ~(3u << 18)) | (2u << 18);
    GPIOA_OSPEEDR |= 3u << 18;
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFu << 4)) | (7u << 4);
    USART1_BRR = (pclk2 + NAS_UART_BAUD / 2u) / NAS_UART_BAUD; /* oversampling by 16 */
    USART1_CR1 = (1u << 3) | (1u << 0);                       /* TE, UE */
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
    wait_set(&USART1_ISR, 1u << 7, 1u << 7); /* TXE */
    USART1_TDR = (uint8_t)c;
}

void board_flush(void) { wait_set(&USART1_ISR, 1u << 6, 1u << 6); /* TC */ }
