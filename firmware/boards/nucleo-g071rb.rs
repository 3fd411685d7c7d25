//! Board support for the NUCLEO-G071RB (STM32G071RB), register level, no HAL: the same
//! sequence as `nucleo-g071rb.c`, written from RM0444 rev 5 (5.4 RCC, 3.7.1 FLASH_ACR, 7.4 GPIO,
//! 33.8 USART) and UM2324 (USART2 on PA2/PA3 is the ST-LINK virtual COM port).
//!
//! Clock: HSI16 -> PLL (M 1, N 8, R 2) = 64 MHz; APB /1 (USART2's clock); flash 2 wait states,
//! prefetch and instruction cache. Every wait is bounded: where the PLL never locks the core
//! stays on HSI16 and says so.

use crate::project::{CLOCK_HZ, UART_BAUD};
use crate::regs::{modify, wait, write};
use crate::Clock;

const RCC: usize = 0x4002_1000;
const RCC_CR: usize = RCC;
const RCC_CFGR: usize = RCC + 0x08;
const RCC_PLLCFGR: usize = RCC + 0x0C;
const RCC_IOPENR: usize = RCC + 0x34;
const RCC_APBENR1: usize = RCC + 0x3C;
const FLASH_ACR: usize = 0x4002_2000;
const GPIOA: usize = 0x5000_0000;
const GPIOA_MODER: usize = GPIOA;
const GPIOA_OSPEEDR: usize = GPIOA + 0x08;
const GPIOA_AFRL: usize = GPIOA + 0x20;
const USART2: usize = 0x4000_4400;
const USART2_CR1: usize = USART2;
const USART2_BRR: usize = USART2 + 0x0C;
const USART2_ISR: usize = USART2 + 0x1C;
const USART2_TDR: usize = USART2 + 0x28;

const HSI_HZ: u32 = 16_000_000;
const PLL_M: u32 = 1;
const PLL_N: u32 = 8;
const PLL_R: u32 = 2;
const PLL_HZ: u32 = HSI_HZ / PLL_M * PLL_N / PLL_R;
const _: () = assert!(PLL_HZ == CLOCK_HZ, "the PLL settings must give the profile's clock_hz");

fn clock_init() -> Option<u32> {
    // PLLSRC = HSI16, PLLM = /1, PLLN = 8, PLLR = /2 enabled.
    write(RCC_PLLCFGR, 2 | ((PLL_M - 1) << 4) | (PLL_N << 8) | (1 << 28) | ((PLL_R - 1) << 29));
    modify(RCC_CR, 0, 1 << 24); // PLLON
    wait(RCC_CR, 1 << 25, 1 << 25).then_some(())?; // PLLRDY
    modify(FLASH_ACR, 7, 2 | (1 << 8) | (1 << 9)); // 2 WS, PRFTEN, ICEN
    wait(FLASH_ACR, 7, 2).then_some(())?;
    modify(RCC_CFGR, 7, 2); // SW = PLLRCLK
    wait(RCC_CFGR, 7 << 3, 2 << 3).then_some(())?; // SWS
    Some(PLL_HZ)
}

/// Clock to the profile's frequency, then the debug UART.
pub fn init() -> Clock {
    let clock = match clock_init() {
        Some(hz) => Clock { hz, note: "PLL from HSI16" },
        None => Clock { hz: HSI_HZ, note: "HSI16: the PLL did not lock" },
    };
    modify(RCC_IOPENR, 0, 1); // GPIOAEN
    modify(RCC_APBENR1, 0, 1 << 17); // USART2EN
    // PA2 = USART2_TX: alternate function 1, high speed.
    modify(GPIOA_MODER, 3 << 4, 2 << 4);
    modify(GPIOA_OSPEEDR, 0, 3 << 4);
    modify(GPIOA_AFRL, 0xF << 8, 1 << 8);
    write(USART2_BRR, (clock.hz + UART_BAUD / 2) / UART_BAUD);
    write(USART2_CR1, (1 << 3) | 1); // TE, UE
    clock
}

/// One byte out of the UART.
pub fn putc(b: u8) {
    wait(USART2_ISR, 1 << 7, 1 << 7); // TXE (TXFNF)
    write(USART2_TDR, u32::from(b));
}

/// Wait until the UART has sent everything.
pub fn flush() {
    wait(USART2_ISR, 1 << 6, 1 << 6); // TC
}
