//! Firmware: cross-compile the generated C kernel into a bare-metal image for a target, measure
//! flash and RAM from the ELF, and run it on an emulated Cortex-M (`nas verify`).
//!
//! The harness lives in `firmware/` (embedded in the binary): `startup.c` (vector table, reset
//! handler, FPU enable, fault and SysTick handlers), `semihost.c` (output and exit through ARM
//! semihosting), `main.c` (runs the kernel on embedded samples), and two tera templates, the
//! linker script and a configuration header, rendered from the target profile.
//!
//! What is compared with the cost model (whose estimate covers the model alone):
//! - **model flash** = the image's flash minus the harness's own output section `.harness`
//!   (vector table, start-up, semihosting, main and the embedded samples). It holds the weights,
//!   the kernel's code and constant tables, the runtime-library routines the kernel calls
//!   (soft-float on cores without an FPU) and alignment padding.
//! - **model RAM** = the image's RAM minus the harness's `.harness_bss` and the `.stack`
//!   reservation, plus the stack peak of one inference measured under QEMU (stack painting).
//!   That is the arena and anything else the kernel keeps in RAM, plus its stack.
//!
//! The image is linked for the chip's memory map and measured there. When the profile's
//! emulator has its memory elsewhere (`[emulator] flash_origin / ram_origin`), the same objects
//! are linked a second time at those addresses to run under QEMU.
//!
//! The Rust kernel goes into the same harness: the generated `no_std` crate, wrapped in a
//! generated staticlib (`firmware/rust/*.tera`) whose `#[no_mangle]` functions have the C
//! kernel's names and signatures (`model_infer`, `model_predict`) and whose `model_arena`
//! static is the arena, is built with `cargo build --release --target <toolchain.rust_target>`
//! (`-C target-cpu=<core>`, opt-level "s", fat LTO, one codegen unit, panic = abort) and linked
//! by arm-none-eabi-gcc in place of the C kernel's object. Its report has the same fields;
//! [`verify_langs`] builds both kernels concurrently and puts them side by side.

use crate::codegen::{self, Provenance};
use crate::elf::{ElfImage, Region, SymbolType};
use crate::emulate;
use crate::net::cost::{self, Cost};
use crate::net::plan;
use crate::net::Dtype;
use crate::net::NetSpec;
use crate::quant::QuantLowered;
use crate::target::{Limits, Target};
use crate::weights::Weights;
use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod breakdown;
mod harness;
mod link;
mod report;
mod rust_lib;
mod samples;
mod toolchain;
mod verify;

use breakdown::*;
pub use harness::*;
pub use link::*;
pub use report::*;
pub use rust_lib::*;
pub use samples::*;
pub use toolchain::*;
pub use verify::*;

/// The cross compiler.
pub const GCC: &str = "arm-none-eabi-gcc";
/// The name the kernel is generated under inside the firmware (`model_infer`, `model_arena`).
pub const KERNEL_NAME: &str = "model";
/// Flags every firmware object is compiled with, after the target's own `cflags`.
pub const COMMON_CFLAGS: &[&str] = &[
    "-Os",
    "-ffunction-sections",
    "-fdata-sections",
    "-ffp-contract=off",
];
/// Extra flags for the harness: warnings, and no loop-to-memcpy rewriting (no libc in it).
const HARNESS_CFLAGS: &[&str] = &["-Wall", "-Wextra", "-fno-tree-loop-distribute-patterns"];
/// Link flags after the target's `cflags`: no C runtime start files, newlib-nano should the
/// kernel need a libc routine (it does not today), unused sections dropped.
pub const LINK_FLAGS: &[&str] = &["-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections"];

/// Harness sources: (file name in the build directory, contents). Harness objects are named
/// `nas_harness_*.o`, which is how the linker script keeps them in sections of their own.
const HARNESS_SOURCES: &[(&str, &str)] = &[
    (
        "nas_harness_startup.c",
        include_str!("../../firmware/startup.c"),
    ),
    (
        "nas_harness_semihost.c",
        include_str!("../../firmware/semihost.c"),
    ),
    ("nas_harness_main.c", include_str!("../../firmware/main.c")),
    ("semihost.h", include_str!("../../firmware/semihost.h")),
];
const LINK_TEMPLATE: &str = include_str!("../../firmware/link.ld.tera");
const CONFIG_TEMPLATE: &str = include_str!("../../firmware/nas_config.h.tera");

/// Output sections of the harness (see `firmware/link.ld.tera`).
pub const HARNESS_FLASH_SECTIONS: &[&str] = &[".harness"];
pub const HARNESS_RAM_SECTIONS: &[&str] = &[".harness_bss", ".stack"];

// ---------------------------------------------------------------------------------------------
// Options and report
// ---------------------------------------------------------------------------------------------

/// The kernel's language inside the firmware (the harness is C either way).
pub use crate::codegen::Lang;

/// Which kernels `nas verify` builds into firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The C kernel only.
    C,
    /// The Rust kernel only (fails when the profile's `toolchain.rust_target` is not installed).
    Rust,
    /// Both, side by side; the C kernel only, with a note saying how to install the Rust target,
    /// when that target is not installed.
    #[default]
    Both,
}

/// How to verify.
#[derive(Debug, Clone)]
pub struct Options {
    pub samples: Samples,
    /// Run the firmware under QEMU (needs the profile's `[emulator]`).
    pub emulate: bool,
    /// QEMU wall-clock limit.
    pub timeout: Duration,
    /// Build here and keep the files; otherwise a temporary directory, removed afterwards.
    pub build_dir: Option<PathBuf>,
    /// The kernel to build into the firmware ([`verify`]; [`verify_langs`] sets it per kernel).
    pub lang: Lang,
    /// For [`Lang::Rust`]: a library built beforehand by [`build_rust_lib`] that holds this
    /// network (found by its constants); otherwise one is built for the network alone.
    pub rust_lib: Option<Arc<RustLib>>,
    /// Deploy in int8: the network quantized (calibrated) beforehand. `None`: float32.
    pub quant: Option<Arc<QuantLowered>>,
}

impl Options {
    pub fn new(samples: Samples) -> Options {
        Options {
            samples,
            emulate: true,
            timeout: Duration::from_secs(120),
            build_dir: None,
            lang: Lang::C,
            rust_lib: None,
            quant: None,
        }
    }

    /// The element type the kernel is deployed in.
    pub fn dtype(&self) -> Dtype {
        if self.quant.is_some() {
            Dtype::Int8
        } else {
            Dtype::F32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_messages_are_parsed() {
        let ld =
            "/usr/bin/arm-none-eabi-ld: chip.elf section `.bss' will not fit in region `RAM'\n\
                  /usr/bin/arm-none-eabi-ld: region `RAM' overflowed by 312004 bytes\n\
                  /usr/bin/arm-none-eabi-ld: region `FLASH' overflowed by 12 bytes\n\
                  collect2: error: ld returned 1 exit status\n";
        assert_eq!(
            parse_overflows(ld),
            vec![
                Overflow {
                    region: "RAM".into(),
                    bytes: 312_004
                },
                Overflow {
                    region: "FLASH".into(),
                    bytes: 12
                }
            ]
        );
        assert!(parse_overflows("undefined reference to `foo'").is_empty());
    }

    /// A profile name that slipped past the profile checks (built in code, not loaded) still
    /// cannot close a comment of the generated linker script, configuration header or Cargo
    /// manifest: the text goes through `codegen::comment_safe`.
    #[test]
    fn a_hostile_target_name_stays_inside_the_generated_comments() {
        let mut t = crate::target::resolve("stm32f401re").unwrap();
        t.name = "x */ int injected_symbol = 42; /* y\n[dependencies]".into();
        t.toolchain.rust_target = "t */ int other = 1; /*\nevil = 1".into();
        let r = |origin, length| Region { origin, length };
        let ld =
            linker_script(&t, "test", r(0x0800_0000, 524_288), r(0x2000_0000, 98_304)).unwrap();
        let spec = crate::net::NetSpec::smart_start(784, 12);
        let h = harness::config_header(&t, &spec, 3, Lang::C, "model").unwrap();
        let dir = tempfile::tempdir().unwrap();
        rust_lib::write_lib_crate_for_test(dir.path(), &t).unwrap();
        let toml = std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap();
        let lib = std::fs::read_to_string(dir.path().join("lib.rs")).unwrap();
        for (what, text) in [("link.ld", &ld), ("nas_config.h", &h), ("lib.rs", &lib)] {
            assert!(!text.contains("*/ int"), "{what}:\n{text}");
            assert!(!text.contains("\n[dependencies]\n"), "{what}:\n{text}");
        }
        assert!(!toml.contains("\nevil = 1"), "{toml}");
        assert_eq!(toml.matches("\n[dependencies]").count(), 1, "{toml}");
    }

    #[test]
    fn linker_script_comes_from_the_profile() {
        let t = crate::target::resolve("stm32f401re").unwrap();
        let r = |origin, length| Region { origin, length };
        let ld =
            linker_script(&t, "test", r(0x0800_0000, 524_288), r(0x2000_0000, 98_304)).unwrap();
        assert!(ld.contains("ORIGIN = 0x08000000, LENGTH = 524288"), "{ld}");
        assert!(ld.contains("ORIGIN = 0x20000000, LENGTH = 98304"), "{ld}");
        assert!(ld.contains(". = . + 4096;"), "{ld}");
    }

    #[test]
    fn synthetic_samples_are_deterministic() {
        let a = Samples::synthetic(5, 784);
        assert_eq!(a, Samples::synthetic(5, 784));
        assert_eq!(a.inputs.len(), 5);
        assert!(a.inputs.iter().all(|x| x.len() == 784));
        assert_eq!(a.inputs[2], vec![0; 784]);
        assert_ne!(a.inputs[0], a.inputs[4]);
        let c = samples_source(&a, 784);
        assert!(c.starts_with("/*") && c.contains("nas_samples[5][784]"));
    }

    #[test]
    fn rust_symbols_are_read() {
        assert_eq!(
            demangle("_ZN5model7weights7CONV0_W17h0123456789abcdefE"),
            "model::weights::CONV0_W"
        );
        assert_eq!(
            demangle("_ZN51_$LT$core..iter..StepBy$LT$I$GT$$u20$as$u20$Foo$GT$8try_fold17h0123456789abcdefE"),
            "_<core::iter::StepBy<I> as Foo>::try_fold"
        );
        assert_eq!(demangle("model_infer"), "model_infer");
        assert_eq!(demangle("_ZN3abc"), "abc");
        assert_eq!(demangle("_ZN99x"), "_ZN99x");
        assert!(is_rust_weight(
            "_ZN5model7weights7CONV0_W17h0123456789abcdefE",
            "model"
        ));
        assert!(is_rust_weight("_RNvNtCs1a2b_2k07weights6DENSE_W", "k0"));
        assert!(!is_rust_weight(
            "_ZN5model7weights7CONV0_W17h0123456789abcdefE",
            "k0"
        ));
        assert!(!is_rust_weight(
            "_ZN5model6conv1d17h0123456789abcdefE",
            "model"
        ));
    }

    #[test]
    fn rust_build_settings_come_from_the_profile() {
        let t = crate::target::resolve("stm32g071rb").unwrap();
        assert_eq!(rustflags(&t), ["-C", "target-cpu=cortex-m0plus"]);
        let spec = NetSpec::smart_start(784, 12);
        let h = config_header(&t, &spec, 3, Lang::Rust, "k1").unwrap();
        assert!(!h.contains("#include \"k1.h\""), "{h}");
        assert!(
            h.contains("void k1_infer(const uint8_t *input, float *logits);"),
            "{h}"
        );
        assert!(h.contains("#define NAS_PREDICT k1_predict"), "{h}");
        let h = config_header(&t, &spec, 3, Lang::C, "model").unwrap();
        assert!(h.contains("#include \"model.h\""), "{h}");
        let e = check_rust("thumbv7em-nas-missing-eabihf")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rustup target add thumbv7em-nas-missing-eabihf"),
            "{e}"
        );
    }

    #[test]
    fn unbounded_regions_do_not_overlap() {
        let f = unbounded(0x0800_0000, 0x2000_0000);
        assert_eq!(f.origin + f.length, 0x1800_0000);
        let r = unbounded(0x2000_0000, 0x0800_0000);
        assert_eq!(r.length, 0x1000_0000);
        let f0 = unbounded(0, 0x2000_0000);
        assert_eq!(f0.length, 0x1000_0000);
    }
}
