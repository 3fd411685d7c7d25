//! Memory-mapped register access for the board-support and timing code: volatile reads and
//! writes, read-modify-write, and the bounded wait on a ready flag that keeps every hardware
//! wait finite (where a flag never comes, e.g. an emulator that does not model the clock tree,
//! the caller carries on and says so).

use core::ptr::{read_volatile, write_volatile};

/// Polls of a ready flag before giving up (each a few cycles; a PLL locks in ~100 us).
const READY_POLLS: u32 = 200_000;

pub fn read(addr: usize) -> u32 {
    // SAFETY: callers pass the address of a register mapped on their chip (the board's
    // peripherals, or the core's debug and SysTick registers).
    unsafe { read_volatile(addr as *const u32) }
}

pub fn write(addr: usize, value: u32) {
    // SAFETY: as in `read`; the program is single-threaded, and the only interrupt (SysTick)
    // touches no register written here.
    unsafe { write_volatile(addr as *mut u32, value) }
}

pub fn modify(addr: usize, clear: u32, set: u32) {
    write(addr, (read(addr) & !clear) | set);
}

/// Whether `addr & mask` reached `value` within the bounded number of polls.
pub fn wait(addr: usize, mask: u32, value: u32) -> bool {
    (0..READY_POLLS).any(|_| read(addr) & mask == value)
}
