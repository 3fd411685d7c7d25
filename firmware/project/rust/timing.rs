//! Cycle counting around each inference: the DWT cycle counter where the core has one and it
//! runs (ARMv7-M ARM C1.8: DEMCR.TRCENA, DWT_CTRL.CYCCNTENA; the Cortex-M7's lock access
//! register unlocked first), SysTick on the processor clock otherwise (Cortex-M0/M0+, and
//! emulators that do not model the DWT), extended past 24 bits by its reload interrupt.

use crate::project::HAS_DWT;
use crate::regs::{read, write};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;

const DEMCR: usize = 0xE000_EDFC;
const DWT_CTRL: usize = 0xE000_1000;
const DWT_CYCCNT: usize = 0xE000_1004;
const DWT_LAR: usize = 0xE000_1FB0;
const SYST_RELOAD: u32 = 0x00FF_FFFF;
const ICSR: usize = 0xE000_ED04;
const ICSR_PENDSTSET: u32 = 1 << 26;

static USE_DWT: AtomicBool = AtomicBool::new(false);
static SYSTICK_WRAPS: AtomicU32 = AtomicU32::new(0);
static DWT_HIGH: AtomicU32 = AtomicU32::new(0);
static DWT_LAST: AtomicU32 = AtomicU32::new(0);
// The last SysTick reading, in halves: 32-bit cores have no 64-bit atomics (one writer: main).
static LAST_HIGH: AtomicU32 = AtomicU32::new(0);
static LAST_LOW: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    // Load and store, not fetch_add: the Cortex-M0+ has no atomic read-modify-write, and this
    // handler is the counter's only writer.
    SYSTICK_WRAPS.store(SYSTICK_WRAPS.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

fn dwt_start() -> bool {
    write(DEMCR, read(DEMCR) | (1 << 24)); // TRCENA
    write(DWT_LAR, 0xC5AC_CE55);
    write(DWT_CYCCNT, 0);
    write(DWT_CTRL, read(DWT_CTRL) | 1);
    let a = read(DWT_CYCCNT);
    for _ in 0..16 {
        cortex_m::asm::nop();
    }
    read(DWT_CYCCNT) != a
}

/// Start the counter; its name.
pub fn init() -> &'static str {
    if HAS_DWT && dwt_start() {
        USE_DWT.store(true, Ordering::Relaxed);
        return "DWT CYCCNT";
    }
    // SAFETY: called once, before anything else uses SysTick.
    let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYST_RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
    // The counter reads 0 until its first reload; counting from there would start 2^24 ahead.
    for _ in 0..1000 {
        if cortex_m::peripheral::SYST::get_current() != 0 {
            break;
        }
    }
    "SysTick"
}

/// Core clock cycles since [`init`].
pub fn cycles() -> u64 {
    if USE_DWT.load(Ordering::Relaxed) {
        // Extended past 32 bits: called at least once per 2^32 cycles.
        let now = read(DWT_CYCCNT);
        if now < DWT_LAST.load(Ordering::Relaxed) {
            DWT_HIGH.store(DWT_HIGH.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        DWT_LAST.store(now, Ordering::Relaxed);
        return (u64::from(DWT_HIGH.load(Ordering::Relaxed)) << 32) | u64::from(now);
    }
    loop {
        let wraps = SYSTICK_WRAPS.load(Ordering::Relaxed);
        let value = cortex_m::peripheral::SYST::get_current();
        let pending = read(ICSR) & ICSR_PENDSTSET != 0;
        if wraps == SYSTICK_WRAPS.load(Ordering::Relaxed) {
            // A reload whose interrupt has not run yet (it is pending): count it when the value
            // was read after the reload (still high), not when read just before (near 0).
            let wraps = wraps + u32::from(pending && value > SYST_RELOAD / 2);
            let mut now = (u64::from(wraps) << 24) + u64::from(SYST_RELOAD - value);
            // Emulators derive the counter from their own clock and may reload it before the
            // wrap's interrupt is pending: never go back in time.
            let last = (u64::from(LAST_HIGH.load(Ordering::Relaxed)) << 32)
                | u64::from(LAST_LOW.load(Ordering::Relaxed));
            while now < last {
                now += 1 << 24;
            }
            LAST_HIGH.store((now >> 32) as u32, Ordering::Relaxed);
            LAST_LOW.store(now as u32, Ordering::Relaxed);
            return now;
        }
    }
}
