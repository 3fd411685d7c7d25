//! ELF images as `nas verify` reads them: measured or refused.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = |origin, length| nas::elf::Region { origin, length };
    let _ = nas::elf::ElfImage::parse(data, r(0x0800_0000, 1 << 20), r(0x2000_0000, 1 << 18));
});
