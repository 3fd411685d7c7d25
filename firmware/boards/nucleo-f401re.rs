//! Board support for the NUCLEO-F401RE (STM32F401RE), register level, no HAL: the same
//! sequence as `nucleo-f401re.c`, written from RM0368 rev 5 (6.3 RCC, 3.8.1 FLASH_ACR, 8.4
//! GPIO, 19.6 USART) and UM1724 6.8 (USART2 on PA2/PA3 is the ST-LINK virtual COM port).
//!
//! Clock: HSI 16 MHz -> PLL (M 16, N 336, P 4) = 84 MHz; APB1 /2 (42 MHz); flash 2 wait
//! states, prefetch and caches. Every wait is bounded: where the PLL never locks (QEMU does not
//! model the RCC) the core stays on HSI and says so.

use crate::project::{CLOCK_HZ, UART_BAUD};
use crate::regs::{modify, wait, write};
use crate::Clock;

const RCC: usize = 0x4002_3800;
const RCC_CR: usize = RCC;
const RCC_PLLCFGR: usize = RCC + 0x04;
const RCC_CFGR: usize = RCC + 0x08;
const RCC_AHB1ENR: usize = RCC + 0x30;
const RCC_APB1ENR: usize = RCC + 0x40;
const FLASH_ACR: usize = 0x4002_3C00;
const GPIOA: usize = 0x4002_0000;
const GPIOA_MODER: usize = GPIOA;
const GPIOA_OSPEEDR: usize = GPIOA + 0x08;
const GPIOA_AFRL: usize = GPIOA + 0x20;
const USART2: usize = 0x4000_4400;
const USART2_SR: usize = USART2;
const USART2_DR: usize = USART2 + 0x04;
const USART2_BRR: usize = USART2 + 0x08;
const USART2_CR1: usize = USART2 + 0x0C;

const HSI_HZ: u32 = 16_000_000;
const PLL_M: u32 = 16;
const PLL_N: u32 = 336;
const PLL_P: u32 = 4;
const PLL_HZ: u32 = HSI_HZ / PLL_M * PLL_N / PLL_P;
const _: () = assert!(PLL_HZ == CLOCK_HZ, "the PLL settings must give the profile's clock_hz");

fn clock_init() -> Option<u32> {
    write(RCC_PLLCFGR, PLL_M | (PLL_N << 6) | ((PLL_P / 2 - 1) << 16) | (7 << 24));
    modify(RCC_CR, 0, 1 << 24); // PLLON
    wait(RCC_CR, 1 << 25, 1 << 25).then_some(())?; // PLLRDY
    write(FLASH_ACR, 2 | (1 << 8) | (1 << 9) | (1 << 10)); // 2 WS, PRFTEN, ICEN, DCEN
    wait(FLASH_ACR, 0xF, 2).then_some(())?;
    modify(RCC_CFGR, (0xF << 4) | (7 << 10) | (7 << 13) | 3, 4 << 10); // APB1 /2
    modify(RCC_CFGR, 0, 2); // SW = PLL
    wait(RCC_CFGR, 3 << 2, 2 << 2).then_some(())?; // SWS = PLL
    Some(PLL_HZ)
}

/// Clock to the profile's frequency, then the debug UART.
pub fn init() -> Clock {
    let clock = match clock_init() {
        Some(hz) => Clock { hz, note: "PLL from HSI" },
        None => Clock { hz: HSI_HZ, note: "HSI 16 MHz: the PLL did not lock" },
    };
    let pclk1 = if clock.hz == PLL_HZ { clock.hz / 2 } else { clock.hz };
    modify(RCC_AHB1ENR, 0, 1); // GPIOAEN
    modify(RCC_APB1ENR, 0, 1 << 17); // USART2EN
    // PA2 = USART2_TX: alternate function 7, high speed.
    modify(GPIOA_MODER, 3 << 4, 2 << 4);
    modify(GPIOA_OSPEEDR, 0, 3 << 4);
    modify(GPIOA_AFRL, 0xF << 8, 7 << 8);
    write(USART2_BRR, (pclk1 + UART_BAUD / 2) / UART_BAUD); // oversampling by 16
    write(USART2_CR1, (1 << 13) | (1 << 3)); // UE, TE
    clock
}

/// One byte out of the UART.
pub fn putc(b: u8) {
    wait(USART2_SR, 1 << 7, 1 << 7); // TXE
    write(USART2_DR, u32::from(b));
}

/// Wait until the UART has sent everything.
pub fn flush() {
    wait(USART2_SR, 1 << 6, 1 << 6); // TC
}
