//! Board support for the 32F746G-DISCO (STM32F746NG), register level, no HAL: the same
//! sequence as `disco-f746ng.c`, written from RM0385 rev 8 (5.4 RCC, 4.1.4 PWR over-drive, 3.7.1
//! FLASH_ACR, 6.4 GPIO, 34.8 USART) and UM1907 (USART1 on PA9/PB7 is the ST-LINK virtual COM
//! port).
//!
//! Clock: HSI 16 MHz -> PLL (M 8, N 216, P 2) = 216 MHz in over-drive; APB1 /4, APB2 /2
//! (108 MHz, USART1's clock); flash 7 wait states with ART and prefetch. Every wait is bounded:
//! where the PLL never locks the core stays on HSI and says so.

use crate::project::{CLOCK_HZ, UART_BAUD};
use crate::regs::{modify, wait, write};
use crate::Clock;

const RCC: usize = 0x4002_3800;
const RCC_CR: usize = RCC;
const RCC_PLLCFGR: usize = RCC + 0x04;
const RCC_CFGR: usize = RCC + 0x08;
const RCC_AHB1ENR: usize = RCC + 0x30;
const RCC_APB1ENR: usize = RCC + 0x40;
const RCC_APB2ENR: usize = RCC + 0x44;
const PWR_CR1: usize = 0x4000_7000;
const PWR_CSR1: usize = 0x4000_7004;
const FLASH_ACR: usize = 0x4002_3C00;
const GPIOA: usize = 0x4002_0000;
const GPIOA_MODER: usize = GPIOA;
const GPIOA_OSPEEDR: usize = GPIOA + 0x08;
const GPIOA_AFRH: usize = GPIOA + 0x24;
const USART1: usize = 0x4001_1000;
const USART1_CR1: usize = USART1;
const USART1_BRR: usize = USART1 + 0x0C;
const USART1_ISR: usize = USART1 + 0x1C;
const USART1_TDR: usize = USART1 + 0x28;

const HSI_HZ: u32 = 16_000_000;
const PLL_M: u32 = 8;
const PLL_N: u32 = 216;
const PLL_P: u32 = 2;
const PLL_HZ: u32 = HSI_HZ / PLL_M * PLL_N / PLL_P;
const _: () = assert!(PLL_HZ == CLOCK_HZ, "the PLL settings must give the profile's clock_hz");

fn clock_init() -> Option<u32> {
    modify(RCC_APB1ENR, 0, 1 << 28); // PWREN
    write(RCC_PLLCFGR, PLL_M | (PLL_N << 6) | ((PLL_P / 2 - 1) << 16) | (9 << 24));
    modify(RCC_CR, 0, 1 << 24); // PLLON
    wait(RCC_CR, 1 << 25, 1 << 25).then_some(())?; // PLLRDY
    modify(PWR_CR1, 0, 1 << 16); // ODEN
    wait(PWR_CSR1, 1 << 16, 1 << 16).then_some(())?; // ODRDY
    modify(PWR_CR1, 0, 1 << 17); // ODSWEN
    wait(PWR_CSR1, 1 << 17, 1 << 17).then_some(())?; // ODSWRDY
    write(FLASH_ACR, 7 | (1 << 8) | (1 << 9)); // 7 WS, PRFTEN, ARTEN
    wait(FLASH_ACR, 0xF, 7).then_some(())?;
    modify(RCC_CFGR, (0xF << 4) | (7 << 10) | (7 << 13) | 3, (5 << 10) | (4 << 13));
    modify(RCC_CFGR, 0, 2); // SW = PLL
    wait(RCC_CFGR, 3 << 2, 2 << 2).then_some(())?; // SWS = PLL
    Some(PLL_HZ)
}

/// Clock to the profile's frequency, then the debug UART.
pub fn init() -> Clock {
    let clock = match clock_init() {
        Some(hz) => Clock { hz, note: "PLL from HSI, over-drive" },
        None => Clock { hz: HSI_HZ, note: "HSI 16 MHz: the PLL did not lock" },
    };
    let pclk2 = if clock.hz == PLL_HZ { clock.hz / 2 } else { clock.hz };
    modify(RCC_AHB1ENR, 0, 1); // GPIOAEN
    modify(RCC_APB2ENR, 0, 1 << 4); // USART1EN
    // PA9 = USART1_TX: alternate function 7, high speed.
    modify(GPIOA_MODER, 3 << 18, 2 << 18);
    modify(GPIOA_OSPEEDR, 0, 3 << 18);
    modify(GPIOA_AFRH, 0xF << 4, 7 << 4);
    write(USART1_BRR, (pclk2 + UART_BAUD / 2) / UART_BAUD);
    write(USART1_CR1, (1 << 3) | 1); // TE, UE
    clock
}

/// One byte out of the UART.
pub fn putc(b: u8) {
    wait(USART1_ISR, 1 << 7, 1 << 7); // TXE
    write(USART1_TDR, u32::from(b));
}

/// Wait until the UART has sent everything.
pub fn flush() {
    wait(USART1_ISR, 1 << 6, 1 << 6); // TC
}
