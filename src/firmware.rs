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

use crate::arch::NetSpec;
use crate::codegen::{self, Provenance};
use crate::cost::{self, Cost};
use crate::elf::{ElfImage, Region, SymbolType};
use crate::emulate;
use crate::plan;
use crate::quant::{Dtype, QuantLowered};
use crate::target::Target;
use crate::weights::Weights;
use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        include_str!("../firmware/startup.c"),
    ),
    (
        "nas_harness_semihost.c",
        include_str!("../firmware/semihost.c"),
    ),
    ("nas_harness_main.c", include_str!("../firmware/main.c")),
    ("semihost.h", include_str!("../firmware/semihost.h")),
];
const LINK_TEMPLATE: &str = include_str!("../firmware/link.ld.tera");
const CONFIG_TEMPLATE: &str = include_str!("../firmware/nas_config.h.tera");

/// Output sections of the harness (see `firmware/link.ld.tera`).
pub const HARNESS_FLASH_SECTIONS: &[&str] = &[".harness"];
pub const HARNESS_RAM_SECTIONS: &[&str] = &[".harness_bss", ".stack"];

// ---------------------------------------------------------------------------------------------
// Samples
// ---------------------------------------------------------------------------------------------

/// The inputs embedded in the firmware.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    /// Where they come from, for the report.
    pub source: String,
    pub inputs: Vec<Vec<u8>>,
    /// Their classes, when known.
    pub labels: Option<Vec<u8>>,
}

impl Samples {
    /// `n` deterministic synthetic byte sequences of length `len`: a pseudo-random one, a ramp,
    /// all zeros, all 0xFF, then more pseudo-random ones.
    pub fn synthetic(n: usize, len: usize) -> Samples {
        let mut state: u32 = 0x2545_f491;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        };
        let inputs = (0..n)
            .map(|i| match i {
                1 => (0..len).map(|j| j as u8).collect(),
                2 => vec![0; len],
                3 => vec![0xff; len],
                _ => (0..len).map(|_| next()).collect(),
            })
            .collect();
        Samples {
            source: format!(
                "{n} synthetic byte sequences (random, ramp, zeros, 0xff; no --data given)"
            ),
            inputs,
            labels: None,
        }
    }

    /// Up to `n` samples of a dataset directory's test split, spread over the classes (the first
    /// samples of each class in file order).
    pub fn from_dir(dir: &Path, n: usize) -> Result<Samples> {
        let splits = crate::data::load_dir(dir, &crate::data::LoadOptions::default())
            .with_context(|| format!("cannot read test samples from {}", dir.display()))?;
        let test = &splits.test;
        ensure!(
            !test.is_empty(),
            "the test split of {} is empty",
            dir.display()
        );
        let per_class = n.div_ceil(test.classes.max(1)).max(1);
        let head = test.stratified_head(per_class);
        // Interleave the classes so that a small n still covers several of them.
        let mut by_class: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
        for (i, &l) in head.labels.iter().enumerate() {
            by_class.entry(l).or_default().push(i);
        }
        let mut idx = Vec::new();
        for round in 0..per_class {
            for v in by_class.values() {
                if let Some(&i) = v.get(round) {
                    idx.push(i);
                }
            }
        }
        idx.truncate(n);
        Ok(Samples {
            source: format!(
                "{} test samples of {} (`{}`)",
                idx.len(),
                dir.display(),
                test.name
            ),
            inputs: idx.iter().map(|&i| head.sample(i).to_vec()).collect(),
            labels: Some(idx.iter().map(|&i| head.labels[i]).collect()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Options and report
// ---------------------------------------------------------------------------------------------

/// The language of the kernel inside the firmware. The harness is C either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// The generated C kernel, compiled with arm-none-eabi-gcc.
    C,
    /// The generated no_std Rust crate, built by cargo as a staticlib behind C entry points.
    Rust,
}

impl Lang {
    pub fn label(self) -> &'static str {
        match self {
            Lang::C => "C",
            Lang::Rust => "Rust",
        }
    }
}

/// Which kernels `nas verify` builds into firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LangChoice {
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

/// A memory region the linker could not fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overflow {
    /// `FLASH` or `RAM`.
    pub region: String,
    pub bytes: u64,
}

/// The cost model's figures for the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub flash_bytes: u64,
    pub ram_bytes: u64,
    pub weights_bytes: u64,
    pub code_bytes: u64,
    pub arena_bytes: u64,
    pub stack_bytes: u64,
}

/// Model and chip limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    pub max_flash_bytes: u64,
    pub max_ram_bytes: u64,
    pub chip_flash_bytes: u64,
    pub chip_ram_bytes: u64,
}

/// A named symbol and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SymbolSize {
    pub name: String,
    pub bytes: u64,
}

/// Where the image's bytes go, from the symbol table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    /// Weight and bias tables (`model_*_w`, `model_*_b`).
    pub weights_bytes: u64,
    pub weights: Vec<SymbolSize>,
    /// The `model_arena` symbol.
    pub arena_bytes: u64,
    /// Functions of the kernel's object file.
    pub kernel_code_bytes: u64,
    pub kernel_functions: Vec<SymbolSize>,
    /// Other read-only data of the kernel (layer descriptors).
    pub kernel_const_bytes: u64,
    /// Other RAM data of the kernel.
    pub kernel_ram_bytes: u64,
    /// Routines from libgcc / libc the kernel pulls in (soft-float on cores without an FPU).
    pub runtime_bytes: u64,
    pub runtime_functions: Vec<SymbolSize>,
    /// Model flash not covered by a symbol (alignment padding).
    pub unattributed_flash_bytes: u64,
    /// The harness: `.harness` (vector table, start-up, main, semihosting, samples) ...
    pub harness_flash_bytes: u64,
    /// ... its `.harness_bss` ...
    pub harness_ram_bytes: u64,
    /// ... and the `.stack` reservation (the profile's `toolchain.stack_bytes`).
    pub stack_reserved_bytes: u64,
}

/// The model's measured footprint (see the module documentation for the definitions).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    pub flash_bytes: u64,
    pub ram_bytes: u64,
    /// Model flash minus weights: code, constant tables, runtime routines, padding.
    pub code_bytes: u64,
    /// Stack of one inference: measured under QEMU, else the cost model's constant.
    pub stack_bytes: u64,
    pub stack_measured: bool,
    /// (estimate − measured) / measured, in percent.
    pub flash_error_pct: f64,
    pub ram_error_pct: f64,
}

/// One sample whose QEMU logits differ from the host reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    pub index: usize,
    pub classes_differing: usize,
    pub max_abs_diff: f64,
}

/// What the firmware computed under QEMU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Emulation {
    pub machine: String,
    /// The image that ran: the chip's, or a relink at the emulator's addresses.
    pub image: String,
    pub command: String,
    pub samples_source: String,
    pub samples: usize,
    /// Samples whose logits equal the host reference bit for bit.
    pub bit_exact: usize,
    pub mismatches: Vec<Mismatch>,
    /// `model_predict` on sample 0 agrees with the argmax of the reference.
    pub predict_agrees: bool,
    /// Samples the reference classifies as labelled (when labels are known).
    pub correct: Option<usize>,
    /// Instructions of each inference (the `model_infer` call).
    pub instructions: Vec<u64>,
    /// Median over the samples.
    pub instructions_per_inference: u64,
    pub executed_macs: u64,
    pub instructions_per_mac: f64,
    pub ticks_per_instruction: f64,
    pub stack_peak_bytes: Option<u64>,
    pub wall_seconds: f64,
}

/// Everything `nas verify` found out about one kernel's firmware.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The kernel's language.
    pub lang: Lang,
    /// The element type it computes in.
    pub dtype: Dtype,
    /// Its name: the prefix of its symbols (`NAME_infer`, `NAME_arena`).
    pub kernel: String,
    pub target: String,
    pub core: String,
    pub fpu: bool,
    pub network: String,
    pub layers: usize,
    pub executed_macs: u64,
    /// The C compiler (of the kernel and the harness, or of the harness alone).
    pub compiler: String,
    pub cflags: Vec<String>,
    /// How the Rust kernel was built (Rust only).
    pub rust: Option<RustBuild>,
    pub build_dir: Option<PathBuf>,
    pub estimate: Estimate,
    pub limits: Limits,
    /// Whether the image linked for the chip's memory map.
    pub links_for_chip: bool,
    pub overflows: Vec<Overflow>,
    /// The image linked for the chip (or, when it overflows, for unbounded memory, to measure).
    pub image: ElfImage,
    pub breakdown: Breakdown,
    pub measured: Measured,
    pub emulation: Option<Emulation>,
    /// Why there is no emulation.
    pub emulation_skipped: Option<String>,
    /// Budgets or regions the model breaks, as sentences.
    pub violations: Vec<String>,
    /// The model fits the chip and its budgets.
    pub fits: bool,
    /// It fits, and the emulated outputs (if run) equal the host reference.
    pub ok: bool,
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

/// A build directory: the caller's, kept, or a temporary one removed on drop.
#[derive(Debug)]
struct BuildDir {
    path: PathBuf,
    keep: bool,
}

impl BuildDir {
    fn new(requested: Option<&Path>) -> Result<BuildDir> {
        let (path, keep) = match requested {
            Some(p) => (p.to_path_buf(), true),
            None => {
                static COUNTER: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let p = std::env::temp_dir()
                    .join(format!("nas-verify-{}-{n}-{nanos}", std::process::id()));
                (p, false)
            }
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(BuildDir { path, keep })
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<()> {
    let p = dir.join(name);
    std::fs::write(&p, contents).with_context(|| format!("cannot write {}", p.display()))
}

/// Check that the cross compiler runs.
pub fn check_toolchain() -> Result<()> {
    let out = Command::new(GCC)
        .arg("--version")
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {GCC} ({e}); {}", emulate::INSTALL_HINT))?;
    ensure!(
        out.status.success(),
        "{GCC} --version failed; {}",
        emulate::INSTALL_HINT
    );
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Run a toolchain command in `dir`; its stderr on failure.
fn run_tool(dir: &Path, args: &[String]) -> Result<std::result::Result<(), String>> {
    let out = Command::new(GCC)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {GCC} ({e}); {}", emulate::INSTALL_HINT))?;
    if out.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(String::from_utf8_lossy(&out.stderr).into_owned()))
    }
}

// ---------------------------------------------------------------------------------------------
// The Rust kernel: a staticlib behind C entry points
// ---------------------------------------------------------------------------------------------

const RUST_CARGO_TEMPLATE: &str = include_str!("../firmware/rust/Cargo.toml.tera");
const RUST_LIB_TEMPLATE: &str = include_str!("../firmware/rust/lib.rs.tera");
/// The package of the generated staticlib (`lib<name>.a`).
pub const RUST_LIB_CRATE: &str = "nas_fw_kernels";
/// `[profile.release]` of the staticlib: what a firmware release build uses.
pub const RUST_PROFILE: &[&str] = &[
    "opt-level = \"s\"",
    "panic = \"abort\"",
    "lto = true",
    "codegen-units = 1",
    "debug = false",
    "incremental = false",
];

/// How to get a Rust target's standard library.
pub fn rust_install_hint(rust_target: &str) -> String {
    format!("install it with `rustup target add {rust_target}`")
}

/// The Rust toolchain `nas verify` builds the Rust kernel with.
#[derive(Debug, Clone)]
pub struct RustTools {
    /// `rustc --version`.
    pub rustc: String,
}

fn rust_command(tool: &str) -> Command {
    let mut c = Command::new(tool);
    // Deterministic builds: the caller's flags, target and profile overrides do not apply.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k == "RUSTFLAGS"
            || k == "CARGO_ENCODED_RUSTFLAGS"
            || k == "CARGO_TARGET_DIR"
            || k.starts_with("CARGO_BUILD_")
            || k.starts_with("CARGO_PROFILE_")
        {
            c.env_remove(k.as_ref());
        }
    }
    c
}

/// Check that cargo and rustc run and that the standard library of `rust_target` is installed.
/// The error says how to install what is missing.
pub fn check_rust(rust_target: &str) -> Result<RustTools> {
    let no_rust = |e: String| {
        anyhow::anyhow!(
            "cannot build the Rust kernel: {e}; install Rust with rustup (https://rustup.rs), then {}",
            rust_install_hint(rust_target)
        )
    };
    let run = |tool: &str, args: &[&str]| -> Result<String> {
        let out = rust_command(tool)
            .args(args)
            .output()
            .map_err(|e| no_rust(format!("cannot run {tool} ({e})")))?;
        if !out.status.success() {
            return Err(no_rust(format!(
                "`{tool} {}` failed: {}",
                args.join(" "),
                tail(&String::from_utf8_lossy(&out.stderr), 5)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    run("cargo", &["--version"])?;
    let rustc = run("rustc", &["--version"])?;
    let sysroot = PathBuf::from(run("rustc", &["--print", "sysroot"])?);
    let lib = sysroot.join("lib/rustlib").join(rust_target).join("lib");
    let has_core = std::fs::read_dir(&lib).is_ok_and(|d| {
        d.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("libcore-") && n.ends_with(".rlib")
        })
    });
    ensure!(
        has_core,
        "the Rust target {rust_target} is not installed for {rustc} (no core library in {}): {}",
        lib.display(),
        rust_install_hint(rust_target)
    );
    Ok(RustTools { rustc })
}

/// rustc's code-generation flags for a profile: `-C target-cpu=` the profile's core (GCC's
/// `-mcpu` names are LLVM's for Cortex-M), so that the Rust kernel is tuned for the core the C
/// kernel is compiled for. (LLVM's cortex-m7 also assumes a double-precision FPU; the kernel
/// does single-precision arithmetic only, so that changes no instruction on an FPv5-SP core.)
pub fn rustflags(target: &Target) -> Vec<String> {
    vec!["-C".to_string(), format!("target-cpu={}", target.core)]
}

/// How the Rust kernel of a report was built.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RustBuild {
    pub rust_target: String,
    /// `rustc --version`.
    pub rustc: String,
    pub rustflags: Vec<String>,
    /// The staticlib's `[profile.release]`.
    pub profile: Vec<String>,
    pub library: PathBuf,
    /// Kernels in the library (one unless it was shared between verifications).
    pub kernels_in_library: usize,
    /// Wall time of `cargo build`.
    pub build_seconds: f64,
}

/// A network to build into a Rust firmware library.
#[derive(Debug, Clone, Copy)]
pub struct RustKernel<'a> {
    /// Crate name and symbol prefix (`NAME_infer`, `NAME_arena`); sanitised.
    pub name: &'a str,
    pub spec: &'a NetSpec,
    pub weights: &'a Weights,
    /// Deploy in int8 (the network quantized); `None`: float32.
    pub quant: Option<&'a QuantLowered>,
}

/// A built Rust firmware library: one staticlib holding one or more generated kernels, each
/// behind C entry points named like the C kernel's. Linked into the C harness by [`verify`].
#[derive(Debug)]
pub struct RustLib {
    /// The target profile it was built for.
    pub target: String,
    pub build: RustBuild,
    /// (name, fingerprint of the network's constants) of each kernel.
    kernels: Vec<(String, u64)>,
    /// Symbols the library's own code defines (not `compiler_builtins`).
    kernel_symbols: BTreeSet<String>,
    /// Keeps a temporary build directory alive as long as the library.
    _dir: BuildDir,
}

impl RustLib {
    /// Names of the kernels it holds.
    pub fn kernel_names(&self) -> Vec<&str> {
        self.kernels.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The kernel built from exactly these constants.
    fn find(&self, lowered: &codegen::Lowered, quant: Option<&QuantLowered>) -> Option<&str> {
        let f = match quant {
            Some(q) => fingerprint_int8(q),
            None => fingerprint(lowered),
        };
        self.kernels
            .iter()
            .find(|(_, g)| *g == f)
            .map(|(n, _)| n.as_str())
    }
}

/// A hash of a lowered network: plan and constants, bit for bit.
fn fingerprint(lowered: &codegen::Lowered) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{:?}", lowered.plan).hash(&mut h);
    for l in &lowered.layers {
        for v in l.weights.iter().chain(&l.bias) {
            v.to_bits().hash(&mut h);
        }
        l.weights.len().hash(&mut h);
    }
    h.finish()
}

/// A hash of a quantized network: plan and int8 constants.
fn fingerprint_int8(q: &QuantLowered) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{:?}", q.plan).hash(&mut h);
    for l in &q.layers {
        l.weights.hash(&mut h);
        l.bias.hash(&mut h);
        l.multiplier.hash(&mut h);
        l.shift.hash(&mut h);
        l.output.zero_point.hash(&mut h);
        l.output.scale.to_bits().hash(&mut h);
    }
    h.finish()
}

/// Generate the kernels' crates and the staticlib wrapping them in `dir` (a temporary
/// directory when `None`), and build it with `cargo build --release --target` for the
/// profile's `toolchain.rust_target`. The cargo target directory is `dir/target`.
pub fn build_rust_lib(
    target: &Target,
    kernels: &[RustKernel],
    dir: Option<&Path>,
) -> Result<RustLib> {
    ensure!(!kernels.is_empty(), "no kernels to build");
    let rust_target = target.toolchain.rust_target.clone();
    let tools = check_rust(&rust_target)?;
    let mut dir = BuildDir::new(dir)?;
    match build_rust_lib_in(&dir.path, target, kernels, &tools) {
        Ok((build, names, kernel_symbols)) => Ok(RustLib {
            target: target.name.clone(),
            build,
            kernels: names,
            kernel_symbols,
            _dir: dir,
        }),
        Err(e) => {
            dir.keep = true;
            Err(e.context(format!("build files kept in {}", dir.path.display())))
        }
    }
}

type BuiltLib = (RustBuild, Vec<(String, u64)>, BTreeSet<String>);

fn build_rust_lib_in(
    d: &Path,
    target: &Target,
    kernels: &[RustKernel],
    tools: &RustTools,
) -> Result<BuiltLib> {
    let rust_target = &target.toolchain.rust_target;
    let mut names: Vec<(String, u64)> = Vec::new();
    let mut ctx_kernels = Vec::new();
    for k in kernels {
        let name = codegen::sanitize_identifier(k.name)?;
        ensure!(
            name != RUST_LIB_CRATE && !names.iter().any(|(n, _)| *n == name),
            "kernel name {name} is used twice"
        );
        let lowered = codegen::lower_weights(k.spec, k.weights)?;
        let dtype = if k.quant.is_some() {
            Dtype::Int8
        } else {
            Dtype::F32
        };
        let estimate = cost::cost_as(&lowered.plan, target, &target.limits(), dtype);
        let note = Provenance {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            source: "nas verify".into(),
            target: Some(target.name.clone()),
            footprint: Some(estimate.clone()),
        };
        let files = match k.quant {
            Some(q) => crate::quant::export::generate_rust_int8(k.spec, q, &name, &note)?,
            None => codegen::generate_rust(k.spec, k.weights, &name, &note)?,
        };
        codegen::write_files(&files, &d.join(&name))?;
        let mut c = BTreeMap::new();
        c.insert("name", name.clone());
        c.insert("crate_name", name.clone());
        c.insert("arena_bytes", estimate.arena_bytes.to_string());
        // The float crates also take inputs already scaled to [0, 1].
        c.insert("infer_f32", (k.quant.is_none()).to_string());
        ctx_kernels.push(c);
        names.push((
            name,
            match k.quant {
                Some(q) => fingerprint_int8(q),
                None => fingerprint(&lowered),
            },
        ));
    }
    let mut ctx = tera::Context::new();
    ctx.insert("target", &target.name);
    ctx.insert("rust_target", rust_target);
    ctx.insert("crate_name", RUST_LIB_CRATE);
    ctx.insert("kernels", &ctx_kernels);
    ctx.insert("profile", RUST_PROFILE);
    write(
        d,
        "Cargo.toml",
        &tera::Tera::one_off(RUST_CARGO_TEMPLATE, &ctx, false)
            .context("internal: rendering firmware/rust/Cargo.toml.tera")?,
    )?;
    write(
        d,
        "lib.rs",
        &tera::Tera::one_off(RUST_LIB_TEMPLATE, &ctx, false)
            .context("internal: rendering firmware/rust/lib.rs.tera")?,
    )?;

    let flags = rustflags(target);
    let d = std::path::absolute(d).with_context(|| format!("resolving {}", d.display()))?;
    let target_dir = d.join("target");
    let manifest = d.join("Cargo.toml");
    let args: Vec<&std::ffi::OsStr> = vec![
        "build".as_ref(),
        "--release".as_ref(),
        "--offline".as_ref(),
        "--quiet".as_ref(),
        "--target".as_ref(),
        rust_target.as_ref(),
        "--manifest-path".as_ref(),
        manifest.as_ref(),
        "--target-dir".as_ref(),
        target_dir.as_ref(),
    ];
    // Run from this process's directory, as `check_rust` did: rustup picks the same toolchain.
    let start = Instant::now();
    let out = rust_command("cargo")
        .args(&args)
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"))
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run cargo ({e})"))?;
    let build_seconds = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "building the Rust kernel failed (cargo {} with rustflags {}):\n{}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            flags.join(" "),
            tail(&String::from_utf8_lossy(&out.stderr), 30)
        );
    }
    let library = target_dir
        .join(rust_target)
        .join("release")
        .join(format!("lib{RUST_LIB_CRATE}.a"));
    let data = std::fs::read(&library)
        .with_context(|| format!("cargo built no library {}", library.display()))?;
    let members = crate::elf::archive_members(&data)
        .with_context(|| format!("reading {}", library.display()))?;
    let kernel_symbols: BTreeSet<String> = members
        .into_iter()
        .filter(|m| !m.name.starts_with("compiler_builtins"))
        .flat_map(|m| m.symbols)
        .collect();
    for (name, _) in &names {
        ensure!(
            kernel_symbols.contains(&format!("{name}_infer"))
                && kernel_symbols.contains(&format!("{name}_arena")),
            "internal: {} does not define {name}_infer and {name}_arena",
            library.display()
        );
    }
    let build = RustBuild {
        rust_target: rust_target.clone(),
        rustc: tools.rustc.clone(),
        rustflags: flags,
        profile: RUST_PROFILE.iter().map(|s| s.to_string()).collect(),
        library,
        kernels_in_library: names.len(),
        build_seconds,
    };
    Ok((build, names, kernel_symbols))
}

/// Whether a symbol of a Rust kernel crate `krate` is one of its weight tables: a static of its
/// `weights` module (the mangled path holds `<len>krate` and `7weights`, legacy and v0 alike).
fn is_rust_weight(symbol: &str, krate: &str) -> bool {
    symbol.contains(&format!("{}{krate}", krate.len())) && symbol.contains("7weights")
}

/// A readable name for a mangled Rust symbol (legacy `_ZN…E` mangling: the path without the
/// hash); other names unchanged.
pub fn demangle(symbol: &str) -> String {
    let Some(mut rest) = symbol.strip_prefix("_ZN") else {
        return symbol.to_string();
    };
    let mut parts: Vec<String> = Vec::new();
    while let Some(c) = rest.chars().next() {
        if c == 'E' {
            break;
        }
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(n) = digits.parse::<usize>() else {
            return symbol.to_string();
        };
        rest = &rest[digits.len()..];
        if rest.len() < n {
            return symbol.to_string();
        }
        let part = &rest[..n];
        rest = &rest[n..];
        let is_hash = part.len() == 17
            && part.starts_with('h')
            && part[1..].chars().all(|c| c.is_ascii_hexdigit());
        if !is_hash {
            parts.push(
                part.replace("$LT$", "<")
                    .replace("$GT$", ">")
                    .replace("$u20$", " ")
                    .replace("$RF$", "&")
                    .replace("$C$", ",")
                    .replace("..", "::"),
            );
        }
    }
    if parts.is_empty() {
        symbol.to_string()
    } else {
        parts.join("::")
    }
}

/// Render the linker script for a memory map.
pub fn linker_script(target: &Target, purpose: &str, flash: Region, ram: Region) -> Result<String> {
    let mut ctx = tera::Context::new();
    ctx.insert("target", &target.name);
    ctx.insert("purpose", purpose);
    ctx.insert("flash_origin", &format!("{:#010x}", flash.origin));
    ctx.insert("flash_length", &flash.length);
    ctx.insert("ram_origin", &format!("{:#010x}", ram.origin));
    ctx.insert("ram_length", &ram.length);
    ctx.insert("stack_bytes", &target.toolchain.stack_bytes);
    tera::Tera::one_off(LINK_TEMPLATE, &ctx, false)
        .context("internal: rendering firmware/link.ld.tera")
}

/// The harness's configuration: the kernel's entry points (`NAME_infer`, `NAME_predict`), from
/// the generated C header or declared for the Rust staticlib.
fn config_header(
    target: &Target,
    spec: &NetSpec,
    samples: usize,
    lang: Lang,
    kernel: &str,
) -> Result<String> {
    let mut ctx = tera::Context::new();
    ctx.insert("target", &target.name);
    ctx.insert("kernel_lang", lang.label());
    ctx.insert(
        "model_header",
        &match lang {
            Lang::C => format!("{kernel}.h"),
            Lang::Rust => String::new(),
        },
    );
    ctx.insert("infer_fn", &format!("{kernel}_infer"));
    ctx.insert("predict_fn", &format!("{kernel}_predict"));
    ctx.insert("input_len", &(spec.input_len * spec.input_channels));
    ctx.insert("classes", &spec.classes);
    ctx.insert("samples", &samples);
    ctx.insert("has_fpu", &u8::from(target.fpu));
    tera::Tera::one_off(CONFIG_TEMPLATE, &ctx, false)
        .context("internal: rendering firmware/nas_config.h.tera")
}

/// The embedded samples as C (data only).
fn samples_source(samples: &Samples, len: usize) -> String {
    let mut s = String::from("/* Test samples embedded by `nas verify`. Generated; do not edit. */\n#include <stdint.h>\n\n");
    let _ = writeln!(
        s,
        "const uint8_t nas_samples[{}][{len}] = {{",
        samples.inputs.len()
    );
    for x in &samples.inputs {
        s.push_str("    {");
        for (i, chunk) in x.chunks(24).enumerate() {
            if i > 0 {
                s.push_str("\n     ");
            }
            let line: Vec<String> = chunk.iter().map(|b| b.to_string()).collect();
            s.push_str(&line.join(", "));
            s.push(',');
        }
        s.push_str("},\n");
    }
    s.push_str("};\n");
    s
}

/// `region `RAM' overflowed by 1234 bytes` lines of ld's output.
pub fn parse_overflows(ld_stderr: &str) -> Vec<Overflow> {
    let mut v: Vec<Overflow> = Vec::new();
    for line in ld_stderr.lines() {
        let Some(i) = line.find("region `") else {
            continue;
        };
        let rest = &line[i + "region `".len()..];
        let Some(end) = rest.find('\'') else { continue };
        let region = rest[..end].to_string();
        let Some(j) = rest.find("overflowed by ") else {
            continue;
        };
        let num: String = rest[j + "overflowed by ".len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if let Ok(bytes) = num.parse() {
            if !v.iter().any(|o| o.region == region) {
                v.push(Overflow { region, bytes });
            }
        }
    }
    v
}

struct Linked {
    elf: PathBuf,
    flash: Region,
    ram: Region,
}

/// Link the objects for a memory map. `Ok(Err(overflows, stderr))` when regions overflow.
fn link(
    dir: &Path,
    target: &Target,
    objects: &[String],
    stem: &str,
    purpose: &str,
    flash: Region,
    ram: Region,
) -> Result<std::result::Result<Linked, (Vec<Overflow>, String)>> {
    let script = format!("{stem}.ld");
    write(dir, &script, &linker_script(target, purpose, flash, ram)?)?;
    let elf = format!("{stem}.elf");
    let mut args: Vec<String> = target.toolchain.cflags.clone();
    args.extend(LINK_FLAGS.iter().map(|s| s.to_string()));
    args.extend([
        "-T".into(),
        script,
        format!("-Wl,-Map={stem}.map"),
        "-o".into(),
        elf.clone(),
    ]);
    args.extend(objects.iter().cloned());
    match run_tool(dir, &args)? {
        Ok(()) => Ok(Ok(Linked {
            elf: dir.join(elf),
            flash,
            ram,
        })),
        Err(stderr) => {
            let overflows = parse_overflows(&stderr);
            if overflows.is_empty() {
                let hint = if stderr.contains("nano.specs") {
                    format!("\n{}", emulate::INSTALL_HINT)
                } else {
                    String::new()
                };
                bail!(
                    "linking the firmware failed ({GCC} {}):\n{}{hint}",
                    args.join(" "),
                    tail(&stderr, 20)
                );
            }
            Ok(Err((overflows, stderr)))
        }
    }
}

/// Regions large enough for any model, to measure an image that does not fit the chip.
fn unbounded(origin: u64, other: u64) -> Region {
    let cap: u64 = 0x1000_0000;
    let room = if other > origin { other - origin } else { cap };
    Region {
        origin,
        length: cap.min(room).min((1u64 << 32) - origin),
    }
}

/// Symbol-level breakdown of an image whose kernel is `kernel` in `lang`.
fn breakdown(
    image: &ElfImage,
    kernel_symbols: &BTreeSet<String>,
    lang: Lang,
    kernel: &str,
) -> Breakdown {
    let arena_name = format!("{kernel}_arena");
    let is_weight = |n: &str| match lang {
        Lang::C => n.starts_with(&format!("{kernel}_")) && (n.ends_with("_w") || n.ends_with("_b")),
        Lang::Rust => is_rust_weight(n, kernel),
    };
    let harness_sections: Vec<&str> = HARNESS_FLASH_SECTIONS
        .iter()
        .chain(HARNESS_RAM_SECTIONS)
        .copied()
        .collect();
    let mut b = Breakdown {
        weights_bytes: 0,
        weights: Vec::new(),
        arena_bytes: 0,
        kernel_code_bytes: 0,
        kernel_functions: Vec::new(),
        kernel_const_bytes: 0,
        kernel_ram_bytes: 0,
        runtime_bytes: 0,
        runtime_functions: Vec::new(),
        unattributed_flash_bytes: 0,
        harness_flash_bytes: image.flash_of(HARNESS_FLASH_SECTIONS),
        harness_ram_bytes: image.ram_of(&[".harness_bss"]),
        stack_reserved_bytes: image.ram_of(&[".stack"]),
    };
    // Aliases (one routine under two names in libgcc) are counted once, by address range.
    let mut seen: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut attributed_flash = 0;
    for s in &image.symbols {
        if harness_sections.contains(&s.section.as_str()) || !seen.insert((s.addr, s.size)) {
            continue;
        }
        let in_flash = image.symbol_in_flash(s);
        let entry = SymbolSize {
            name: demangle(&s.name),
            bytes: s.size,
        };
        if s.name == arena_name {
            b.arena_bytes = s.size;
        } else if kernel_symbols.contains(&s.name) {
            match s.kind {
                SymbolType::Function => {
                    b.kernel_code_bytes += s.size;
                    b.kernel_functions.push(entry);
                }
                SymbolType::Object if is_weight(&s.name) && in_flash => {
                    b.weights_bytes += s.size;
                    b.weights.push(entry);
                }
                SymbolType::Object if in_flash => b.kernel_const_bytes += s.size,
                SymbolType::Object => b.kernel_ram_bytes += s.size,
            }
        } else if in_flash {
            b.runtime_bytes += s.size;
            b.runtime_functions.push(entry);
        } else {
            b.kernel_ram_bytes += s.size;
        }
        if in_flash {
            attributed_flash += s.size;
        }
    }
    b.unattributed_flash_bytes = image
        .flash_bytes
        .saturating_sub(b.harness_flash_bytes)
        .saturating_sub(attributed_flash);
    b
}

fn pct(estimate: u64, measured: u64) -> f64 {
    100.0 * (estimate as f64 - measured as f64) / measured.max(1) as f64
}

/// The compiled objects of one firmware.
struct Compiled {
    /// Object files (and the Rust staticlib), relative to the build directory or absolute.
    objects: Vec<String>,
    /// Symbols the kernel's object file (or the Rust library's own code) defines.
    kernel_symbols: BTreeSet<String>,
    /// The flags every C object was compiled with.
    cflags: Vec<String>,
    /// The kernel's name, the prefix of its symbols.
    kernel: String,
    rust: Option<RustBuild>,
}

/// Write the harness and the samples to `d` and compile them, with the kernel: the generated C
/// kernel, compiled with the target's flags and [`COMMON_CFLAGS`] only (the harness gets a few
/// more), or the Rust staticlib (from `opts.rust_lib`, else built here in `d/rust-lib`).
fn compile(
    d: &Path,
    spec: &NetSpec,
    weights: &Weights,
    lowered: &codegen::Lowered,
    target: &Target,
    opts: &Options,
    estimate: &Cost,
) -> Result<Compiled> {
    let samples = &opts.samples;
    let (kernel, rust_lib) = match opts.lang {
        Lang::C => {
            let note = Provenance {
                tool_version: env!("CARGO_PKG_VERSION").to_string(),
                source: "nas verify".into(),
                target: Some(target.name.clone()),
                footprint: Some(estimate.clone()),
            };
            let files = match &opts.quant {
                Some(q) => crate::quant::export::generate_c_int8(spec, q, KERNEL_NAME, &note)?,
                None => codegen::generate_c(spec, weights, KERNEL_NAME, &note)?,
            };
            codegen::write_files(&files, d)?;
            (KERNEL_NAME.to_string(), None)
        }
        Lang::Rust => {
            let lib = match &opts.rust_lib {
                Some(lib) => {
                    ensure!(
                        lib.target == target.name,
                        "the Rust library was built for {}, not {}",
                        lib.target,
                        target.name
                    );
                    lib.clone()
                }
                None => Arc::new(build_rust_lib(
                    target,
                    &[RustKernel {
                        name: KERNEL_NAME,
                        spec,
                        weights,
                        quant: opts.quant.as_deref(),
                    }],
                    Some(&d.join("rust-lib")),
                )?),
            };
            let name = lib.find(lowered, opts.quant.as_deref()).with_context(|| {
                format!(
                    "the Rust library {} holds no kernel with these weights (it has {})",
                    lib.build.library.display(),
                    lib.kernel_names().join(", ")
                )
            })?;
            (name.to_string(), Some(lib))
        }
    };
    for (name, text) in HARNESS_SOURCES {
        write(d, name, text)?;
    }
    let input_len = spec.input_len * spec.input_channels;
    write(
        d,
        "nas_config.h",
        &config_header(target, spec, samples.inputs.len(), opts.lang, &kernel)?,
    )?;
    write(
        d,
        "nas_harness_samples.c",
        &samples_source(samples, input_len),
    )?;

    let mut cflags: Vec<String> = target.toolchain.cflags.clone();
    cflags.extend(COMMON_CFLAGS.iter().map(|s| s.to_string()));
    let kernel_o = format!("{kernel}.o");
    let mut kernel_args = cflags.clone();
    kernel_args.extend([
        "-c".into(),
        format!("{kernel}.c"),
        "-o".into(),
        kernel_o.clone(),
    ]);
    let harness_c = [
        "nas_harness_startup.c",
        "nas_harness_semihost.c",
        "nas_harness_main.c",
        "nas_harness_samples.c",
    ];
    let mut harness_args = cflags.clone();
    harness_args.extend(HARNESS_CFLAGS.iter().map(|s| s.to_string()));
    harness_args.extend(["-I.".into(), "-c".into()]);
    harness_args.extend(harness_c.iter().map(|s| s.to_string()));
    let (k, h) = std::thread::scope(|s| {
        let k = (opts.lang == Lang::C).then(|| s.spawn(|| run_tool(d, &kernel_args)));
        let h = run_tool(d, &harness_args);
        (k.map(|k| k.join().expect("compiler thread")), h)
    });
    if let Some(Err(e)) = k.transpose()? {
        bail!(
            "compiling the generated kernel failed ({GCC} {}):\n{}",
            kernel_args.join(" "),
            tail(&e, 20)
        );
    }
    if let Err(e) = h? {
        bail!(
            "compiling the firmware harness failed ({GCC} {}):\n{}",
            harness_args.join(" "),
            tail(&e, 20)
        );
    }
    let mut objects: Vec<String> = harness_c.iter().map(|c| c.replace(".c", ".o")).collect();
    let (kernel_symbols, rust) = match &rust_lib {
        None => {
            objects.insert(0, kernel_o.clone());
            let symbols = crate::elf::defined_symbols(&std::fs::read(d.join(&kernel_o))?)
                .context("reading the kernel's object file")?;
            (symbols, None)
        }
        Some(lib) => {
            let a = lib.build.library.to_str().with_context(|| {
                format!(
                    "the Rust library's path {} is not UTF-8",
                    lib.build.library.display()
                )
            })?;
            objects.push(a.to_string());
            (lib.kernel_symbols.clone(), Some(lib.build.clone()))
        }
    };
    Ok(Compiled {
        objects,
        kernel_symbols,
        cflags,
        kernel,
        rust,
    })
}

/// Link for the chip's memory map. When a region overflows, link again with unbounded memory
/// so that the image can still be measured, and return the overflows ld reported.
fn link_for_chip(d: &Path, target: &Target, objects: &[String]) -> Result<(Linked, Vec<Overflow>)> {
    let m = &target.memory;
    let flash = Region {
        origin: m.flash_origin,
        length: m.flash_bytes,
    };
    let ram = Region {
        origin: m.ram_origin,
        length: m.ram_bytes,
    };
    match link(
        d,
        target,
        objects,
        "chip",
        "the chip's memory map",
        flash,
        ram,
    )? {
        Ok(l) => Ok((l, Vec::new())),
        Err((overflows, _)) => {
            let l = link(
                d,
                target,
                objects,
                "unbounded",
                "unbounded memory, to measure an image that overflows the chip",
                unbounded(m.flash_origin, m.ram_origin),
                unbounded(m.ram_origin, m.flash_origin),
            )?
            .map_err(|(_, e)| {
                anyhow::anyhow!("linking with unbounded memory failed:\n{}", tail(&e, 20))
            })?;
            Ok((l, overflows))
        }
    }
}

/// Run the firmware under the profile's emulator: the chip's image when the emulator has the
/// chip's memory map, else the same objects relinked at the emulator's addresses (checked to
/// have the same sizes). Returns the harness's report, the run and which image ran.
fn run_emulator(
    d: &Path,
    target: &Target,
    emu: &crate::target::Emulator,
    objects: &[String],
    chip: &Linked,
    image: &ElfImage,
    timeout: Duration,
) -> Result<(emulate::Report, emulate::QemuRun, String)> {
    emulate::check_qemu(&emu.machine)?;
    let m = &target.memory;
    let flash_origin = emu.flash_origin.unwrap_or(m.flash_origin);
    let ram_origin = emu.ram_origin.unwrap_or(m.ram_origin);
    let (elf, what) = if flash_origin == m.flash_origin && ram_origin == m.ram_origin {
        (
            chip.elf.clone(),
            "the image linked for the chip".to_string(),
        )
    } else {
        let flash = Region {
            origin: flash_origin,
            length: m.flash_bytes,
        };
        let ram = Region {
            origin: ram_origin,
            length: m.ram_bytes,
        };
        let l = link(
            d,
            target,
            objects,
            "emulator",
            &format!("QEMU {}", emu.machine),
            flash,
            ram,
        )?
        .map_err(|(_, e)| anyhow::anyhow!("linking for the emulator failed:\n{}", tail(&e, 20)))?;
        let emu_image = ElfImage::parse(&std::fs::read(&l.elf)?, l.flash, l.ram)?;
        ensure!(
            emu_image.flash_bytes == image.flash_bytes && emu_image.ram_bytes == image.ram_bytes,
            "internal: the emulator's image ({} B flash, {} B RAM) differs in size from the chip's ({} B, {} B)",
            emu_image.flash_bytes,
            emu_image.ram_bytes,
            image.flash_bytes,
            image.ram_bytes
        );
        (
            l.elf,
            format!("relinked at flash {flash_origin:#x} / RAM {ram_origin:#x} (same objects and sizes)"),
        )
    };
    let run = emulate::run_qemu(&elf, &emu.machine, timeout, d)?;
    let report = emulate::parse(&run)?;
    Ok((report, run, what))
}

/// Cross-compile `spec` with `weights` for `target` (the kernel in `opts.lang`), measure the
/// ELF, and (when asked and the profile has an emulator) run it under QEMU against the host
/// reference. A model that does not
/// fit is a report with `fits == false`; errors are reserved for the tools failing, and keep
/// the build directory for inspection.
pub fn verify(
    spec: &NetSpec,
    weights: &Weights,
    target: &Target,
    opts: &Options,
) -> Result<Report> {
    let lowered = codegen::lower_weights(spec, weights)?;
    let input_len = spec.input_len * spec.input_channels;
    ensure!(!opts.samples.inputs.is_empty(), "no samples to run");
    for (i, x) in opts.samples.inputs.iter().enumerate() {
        ensure!(
            x.len() == input_len,
            "sample {i} has {} bytes, the network reads {input_len}",
            x.len()
        );
    }
    check_toolchain()?;
    let mut dir = BuildDir::new(opts.build_dir.as_deref())?;
    match verify_in(&dir.path, spec, weights, &lowered, target, opts) {
        Ok(mut report) => {
            report.build_dir = dir.keep.then(|| dir.path.clone());
            Ok(report)
        }
        Err(e) => {
            dir.keep = true;
            Err(e.context(format!("build files kept in {}", dir.path.display())))
        }
    }
}

fn verify_in(
    d: &Path,
    spec: &NetSpec,
    weights: &Weights,
    lowered: &codegen::Lowered,
    target: &Target,
    opts: &Options,
) -> Result<Report> {
    let plan = &lowered.plan;
    let estimate: Cost = cost::cost_as(plan, target, &target.limits(), opts.dtype());
    let compiled = compile(d, spec, weights, lowered, target, opts, &estimate)?;
    let (chip, overflows) = link_for_chip(d, target, &compiled.objects)?;
    let links_for_chip = overflows.is_empty();
    let image = ElfImage::parse(&std::fs::read(&chip.elf)?, chip.flash, chip.ram)
        .with_context(|| format!("reading {}", chip.elf.display()))?;
    let bd = breakdown(
        &image,
        &compiled.kernel_symbols,
        opts.lang,
        &compiled.kernel,
    );

    let (emulation, emulation_skipped) = match (&target.emulator, opts.emulate, links_for_chip) {
        (_, false, _) => (None, Some("not requested (--no-emulate)".to_string())),
        (None, _, _) => (
            None,
            Some(format!(
                "the profile {} has no [emulator] section",
                target.name
            )),
        ),
        (_, _, false) => (None, Some("the image does not fit the chip".to_string())),
        (Some(emu), true, true) => {
            let (rep, run, what) = run_emulator(
                d,
                target,
                emu,
                &compiled.objects,
                &chip,
                &image,
                opts.timeout,
            )
            .context("running the firmware under QEMU")?;
            (
                Some(compare(
                    &|x: &[u8]| host_reference(lowered, opts.quant.as_deref(), x),
                    &opts.samples,
                    &rep,
                    &run,
                    &emu.machine,
                    what,
                    plan,
                )),
                None,
            )
        }
    };

    // The model's share, against the estimate and the budgets.
    let m = &target.memory;
    let stack_peak = emulation.as_ref().and_then(|e| e.stack_peak_bytes);
    let stack_bytes = stack_peak.unwrap_or(estimate.stack_bytes);
    let flash_bytes = image.flash_bytes - bd.harness_flash_bytes;
    let ram_bytes = image.ram_bytes - bd.harness_ram_bytes - bd.stack_reserved_bytes + stack_bytes;
    let measured = Measured {
        flash_bytes,
        ram_bytes,
        code_bytes: flash_bytes - bd.weights_bytes,
        stack_bytes,
        stack_measured: stack_peak.is_some(),
        flash_error_pct: pct(estimate.flash_bytes, flash_bytes),
        ram_error_pct: pct(estimate.ram_bytes, ram_bytes),
    };
    let budget = target.limits();
    let limits = Limits {
        max_flash_bytes: budget.max_flash_bytes,
        max_ram_bytes: budget.max_ram_bytes,
        chip_flash_bytes: m.flash_bytes,
        chip_ram_bytes: m.ram_bytes,
    };
    let mut violations = Vec::new();
    for o in &overflows {
        let size = if o.region == "RAM" {
            m.ram_bytes
        } else {
            m.flash_bytes
        };
        violations.push(format!(
            "region {} overflowed by {} bytes (ld): the firmware image needs {} bytes of the chip's {size}",
            o.region,
            o.bytes,
            o.bytes + size
        ));
    }
    if flash_bytes > limits.max_flash_bytes {
        violations.push(format!(
            "region FLASH: the model takes {flash_bytes} bytes, over its budget of {} bytes by {} bytes",
            limits.max_flash_bytes,
            flash_bytes - limits.max_flash_bytes
        ));
    }
    if ram_bytes > limits.max_ram_bytes {
        violations.push(format!(
            "region RAM: the model takes {ram_bytes} bytes, over its budget of {} bytes by {} bytes",
            limits.max_ram_bytes,
            ram_bytes - limits.max_ram_bytes
        ));
    }
    let fits = violations.is_empty();
    let ok = fits
        && emulation
            .as_ref()
            .is_none_or(|e| e.bit_exact == e.samples && e.predict_agrees);
    Ok(Report {
        lang: opts.lang,
        dtype: opts.dtype(),
        kernel: compiled.kernel,
        target: target.name.clone(),
        core: target.core.clone(),
        fpu: target.fpu,
        network: spec.summary(),
        layers: plan.layers.len(),
        executed_macs: estimate.executed_macs,
        compiler: GCC.to_string(),
        cflags: compiled.cflags,
        rust: compiled.rust,
        build_dir: None,
        estimate: Estimate {
            flash_bytes: estimate.flash_bytes,
            ram_bytes: estimate.ram_bytes,
            weights_bytes: estimate.weights_bytes,
            code_bytes: estimate.code_bytes,
            arena_bytes: estimate.arena_bytes,
            stack_bytes: estimate.stack_bytes,
        },
        limits,
        links_for_chip,
        overflows,
        image,
        breakdown: bd,
        measured,
        emulation,
        emulation_skipped,
        violations,
        fits,
        ok,
    })
}

/// Logits and predicted class of one sample on the host.
type HostReference<'a> = dyn Fn(&[u8]) -> (Vec<f32>, usize) + 'a;

/// The host reference's logits and class for one sample: the int8 reference when the network
/// is quantized, else the float one.
fn host_reference(
    lowered: &codegen::Lowered,
    quant: Option<&QuantLowered>,
    x: &[u8],
) -> (Vec<f32>, usize) {
    match quant {
        Some(q) => {
            let o = crate::quant::reference_int8(q, x);
            let class = o.predict();
            (o.logits, class)
        }
        None => {
            let l = codegen::reference_logits(lowered, x);
            let class = codegen::argmax(&l);
            (l, class)
        }
    }
}

/// Compare the emulated logits with the host reference.
fn compare(
    reference: &HostReference,
    samples: &Samples,
    rep: &emulate::Report,
    run: &emulate::QemuRun,
    machine: &str,
    image: String,
    plan: &plan::Plan,
) -> Emulation {
    let mut bit_exact = 0;
    let mut mismatches = Vec::new();
    let mut correct = 0;
    let mut predict_agrees = true;
    for inf in &rep.inferences {
        let (reference, class) = reference(&samples.inputs[inf.index]);
        let got: Vec<f32> = inf.logits.iter().map(|&b| f32::from_bits(b)).collect();
        let differing = reference
            .iter()
            .zip(&inf.logits)
            .filter(|(r, &g)| r.to_bits() != g)
            .count();
        if differing == 0 {
            bit_exact += 1;
        } else {
            let max_abs_diff = reference
                .iter()
                .zip(&got)
                .map(|(r, g)| (f64::from(*r) - f64::from(*g)).abs())
                .fold(0.0, f64::max);
            mismatches.push(Mismatch {
                index: inf.index,
                classes_differing: differing,
                max_abs_diff,
            });
        }
        if let Some(labels) = &samples.labels {
            correct += usize::from(labels[inf.index] as usize == class);
        }
        if inf.index == 0 {
            predict_agrees = rep.predicted == Some(class as u32);
        }
    }
    let instructions: Vec<u64> = rep
        .inferences
        .iter()
        .map(|i| rep.calibration.instructions(i.span))
        .collect();
    let mut sorted = instructions.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let executed_macs: u64 = plan.layers.iter().map(|l| l.executed_macs()).sum();
    Emulation {
        machine: machine.to_string(),
        image,
        command: run.command.clone(),
        samples_source: samples.source.clone(),
        samples: rep.inferences.len(),
        bit_exact,
        mismatches,
        predict_agrees,
        correct: samples.labels.as_ref().map(|_| correct),
        instructions,
        instructions_per_inference: median,
        executed_macs,
        instructions_per_mac: median as f64 / executed_macs.max(1) as f64,
        ticks_per_instruction: rep.calibration.ticks_per_instruction(),
        stack_peak_bytes: rep.stack_peak_bytes,
        wall_seconds: run.wall.as_secs_f64(),
    }
}

// ---------------------------------------------------------------------------------------------
// Presentation
// ---------------------------------------------------------------------------------------------

fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let n = thousands;
        let _ = writeln!(
            s,
            "nas verify on {} ({}, {}), {} kernel: {}",
            self.target,
            self.core,
            if self.fpu { "FPU" } else { "soft-float" },
            self.lang.label(),
            self.network
        );
        match &self.rust {
            None => {
                let _ = writeln!(
                    s,
                    "compiled with {} {}",
                    self.compiler,
                    self.cflags.join(" ")
                );
            }
            Some(r) => {
                let _ = writeln!(
                    s,
                    "kernel built with {} for {} ({}; {}), {:.1} s; staticlib {}",
                    r.rustc,
                    r.rust_target,
                    r.rustflags.join(" "),
                    r.profile.join(", ").replace('"', ""),
                    r.build_seconds,
                    r.library.display()
                );
                let _ = writeln!(
                    s,
                    "harness compiled and linked with {} {}",
                    self.compiler,
                    self.cflags.join(" ")
                );
            }
        }
        if let Some(d) = &self.build_dir {
            let _ = writeln!(s, "build files kept in {}", d.display());
        }
        let _ = writeln!(s);
        let m = &self.measured;
        let e = &self.estimate;
        let l = &self.limits;
        let _ = writeln!(
            s,
            "{:<8} {:>12} {:>12} {:>8} {:>12} {:>12} {:>12}",
            "model", "ELF", "estimate", "error", "budget", "image", "chip"
        );
        let row = |s: &mut String,
                   name: &str,
                   meas: u64,
                   est: u64,
                   err: f64,
                   budget: u64,
                   image: u64,
                   chip: u64| {
            let mark = if meas > budget || image > chip {
                "  OVER"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "{name:<8} {:>12} {:>12} {:>+7.2}% {:>12} {:>12} {:>12}{mark}",
                n(meas),
                n(est),
                err,
                n(budget),
                n(image),
                n(chip)
            );
        };
        row(
            &mut s,
            "flash",
            m.flash_bytes,
            e.flash_bytes,
            m.flash_error_pct,
            l.max_flash_bytes,
            self.image.flash_bytes,
            l.chip_flash_bytes,
        );
        row(
            &mut s,
            "RAM",
            m.ram_bytes,
            e.ram_bytes,
            m.ram_error_pct,
            l.max_ram_bytes,
            self.image.ram_bytes,
            l.chip_ram_bytes,
        );
        let _ = writeln!(
            s,
            "  (bytes; ELF = the model's share of the image: flash without the harness, RAM = arena and kernel data + {} stack {};\n   image = the whole firmware with harness, samples and the {}-byte stack reservation)",
            if m.stack_measured { "measured" } else { "estimated" },
            m.stack_bytes,
            self.breakdown.stack_reserved_bytes
        );
        let _ = writeln!(s);

        let b = &self.breakdown;
        let _ = writeln!(s, "where the bytes go (symbols):");
        let list = |v: &[SymbolSize]| {
            let mut v: Vec<String> = v
                .iter()
                .map(|x| format!("{} {}", x.name, x.bytes))
                .collect();
            if v.len() > 6 {
                let more = v.len() - 6;
                v.truncate(6);
                v.push(format!("… {more} more"));
            }
            v.join(", ")
        };
        let _ = writeln!(
            s,
            "  weights           {:>10}  {}",
            n(b.weights_bytes),
            list(&b.weights)
        );
        let _ = writeln!(
            s,
            "  kernel code       {:>10}  {}",
            n(b.kernel_code_bytes),
            list(&b.kernel_functions)
        );
        let _ = writeln!(
            s,
            "  kernel constants  {:>10}  ({})",
            n(b.kernel_const_bytes),
            match self.lang {
                Lang::C => "layer descriptors",
                Lang::Rust => "named read-only data besides the weights",
            }
        );
        let _ = writeln!(
            s,
            "  runtime library   {:>10}  {}",
            n(b.runtime_bytes),
            list(&b.runtime_functions)
        );
        let _ = writeln!(
            s,
            "  padding           {:>10}{}",
            n(b.unattributed_flash_bytes),
            match self.lang {
                Lang::C => "",
                Lang::Rust => "  (and constants without a symbol)",
            }
        );
        let _ = writeln!(
            s,
            "  = code            {:>10}  (model flash − weights; the cost model says {})",
            n(m.code_bytes),
            n(e.code_bytes)
        );
        let arena_check = if b.arena_bytes == e.arena_bytes {
            "= the plan's arena"
        } else {
            "≠ THE PLAN'S ARENA"
        };
        let _ = writeln!(
            s,
            "  arena (RAM)       {:>10}  {}_arena {arena_check} ({})",
            n(b.arena_bytes),
            self.kernel,
            n(e.arena_bytes)
        );
        if b.kernel_ram_bytes > 0 {
            let _ = writeln!(s, "  other kernel RAM  {:>10}", n(b.kernel_ram_bytes));
        }
        let _ = writeln!(
            s,
            "  stack (RAM)       {:>10}  {} (the cost model assumes {})",
            n(m.stack_bytes),
            if m.stack_measured {
                "peak of one inference, measured under QEMU"
            } else {
                "not measured: no emulation"
            },
            e.stack_bytes
        );
        let _ = writeln!(
            s,
            "  harness           {:>10}  flash (vector table, start-up, main, semihosting, samples), {} RAM + {} stack reservation",
            n(b.harness_flash_bytes),
            n(b.harness_ram_bytes),
            n(b.stack_reserved_bytes)
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "sections of the image ({}):",
            if self.links_for_chip {
                "linked for the chip"
            } else {
                "linked with unbounded memory to measure it"
            }
        );
        let _ = writeln!(
            s,
            "  {:<14} {:>10} {:>10} {:>10}  counts in",
            "section", "address", "load", "size"
        );
        for sec in &self.image.sections {
            let counts = match (sec.in_flash, sec.in_ram) {
                (true, true) => "flash+RAM",
                (true, false) => "flash",
                (false, true) => "RAM",
                _ => "-",
            };
            let _ = writeln!(
                s,
                "  {:<14} {:>#10x} {:>#10x} {:>10}  {counts}",
                sec.name,
                sec.vma,
                sec.lma,
                n(sec.size)
            );
        }
        let _ = writeln!(s);

        match (&self.emulation, &self.emulation_skipped) {
            (Some(em), _) => {
                let _ = writeln!(s, "QEMU {} ({}):", em.machine, em.image);
                let _ = writeln!(s, "  samples: {}", em.samples_source);
                let _ = writeln!(
                    s,
                    "  {}/{} samples bit-exact with the host reference{}; model_predict {}",
                    em.bit_exact,
                    em.samples,
                    em.correct.map_or(String::new(), |c| format!(
                        " ({c} of them classified as labelled)"
                    )),
                    if em.predict_agrees {
                        "agrees"
                    } else {
                        "DISAGREES"
                    }
                );
                for mm in &em.mismatches {
                    let _ = writeln!(
                        s,
                        "  MISMATCH sample {}: {} logits differ, max |Δ| = {:e}",
                        mm.index, mm.classes_differing, mm.max_abs_diff
                    );
                }
                let (lo, hi) = (
                    em.instructions.iter().min().copied().unwrap_or(0),
                    em.instructions.iter().max().copied().unwrap_or(0),
                );
                let _ = writeln!(
                    s,
                    "  instructions per inference: {} (range {}–{}), {} executed MACs → {:.2} instructions/MAC",
                    n(em.instructions_per_inference),
                    n(lo),
                    n(hi),
                    n(em.executed_macs),
                    em.instructions_per_mac
                );
                let _ = writeln!(
                    s,
                    "  (QEMU -icount with SysTick, {:.3} ticks per instruction; {:.2} s wall)",
                    em.ticks_per_instruction, em.wall_seconds
                );
            }
            (None, Some(why)) => {
                let _ = writeln!(s, "QEMU: not run: {why}");
            }
            (None, None) => {}
        }
        let _ = writeln!(s);
        if self.fits {
            let _ = writeln!(s, "fits {}: yes", self.target);
        } else {
            let _ = writeln!(s, "fits {}: NO", self.target);
            for v in &self.violations {
                let _ = writeln!(s, "  - {v}");
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// C and Rust side by side
// ---------------------------------------------------------------------------------------------

/// The outcome of [`verify_langs`]: the primary kernel's report (C, unless only Rust was asked
/// for) and, when built, the Rust kernel's. In JSON the primary report's fields are at the top
/// level (`lang` says which kernel it is), the Rust kernel's report under `rust`.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    #[serde(flatten)]
    pub primary: Report,
    /// The Rust kernel's report, next to the C kernel's.
    #[serde(rename = "rust")]
    pub rust_report: Option<Report>,
    /// Why a kernel that was asked for was not built (a Rust target that is not installed).
    pub notes: Vec<String>,
}

impl Verification {
    /// The reports, primary first.
    pub fn reports(&self) -> Vec<&Report> {
        std::iter::once(&self.primary)
            .chain(self.rust_report.as_ref())
            .collect()
    }

    /// Every kernel fits and computes what the host computes.
    pub fn ok(&self) -> bool {
        self.reports().iter().all(|r| r.ok)
    }

    pub fn table(&self) -> String {
        let mut s = self.primary.table();
        if let Some(r) = &self.rust_report {
            let _ = writeln!(s, "\n{}\n", "─".repeat(100));
            s.push_str(&r.table());
            let _ = writeln!(s, "\n{}\n", "─".repeat(100));
            s.push_str(&side_by_side(&self.reports()));
        }
        for n in &self.notes {
            let _ = writeln!(s, "\nNOTE: {n}");
        }
        s
    }
}

/// The model's share of each firmware, one column per kernel.
pub fn side_by_side(reports: &[&Report]) -> String {
    let mut s = String::new();
    let Some(first) = reports.first() else {
        return s;
    };
    let _ = writeln!(
        s,
        "kernels side by side on {} (the model's share of each firmware; same harness):",
        first.target
    );
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, f: &dyn Fn(&Report) -> String| {
        rows.push((name.to_string(), reports.iter().map(|r| f(r)).collect()));
    };
    let n = thousands;
    row("", &|r| r.lang.label().to_string());
    row("flash (B)", &|r| n(r.measured.flash_bytes));
    row("  weights", &|r| n(r.breakdown.weights_bytes));
    row("  code", &|r| n(r.measured.code_bytes));
    row("RAM (B)", &|r| n(r.measured.ram_bytes));
    row("  arena", &|r| {
        let mark = if r.breakdown.arena_bytes == r.estimate.arena_bytes {
            " (= plan)"
        } else {
            " (≠ PLAN)"
        };
        format!("{}{mark}", n(r.breakdown.arena_bytes))
    });
    row("  stack", &|r| n(r.measured.stack_bytes));
    let em = |r: &Report, f: &dyn Fn(&Emulation) -> String| {
        r.emulation.as_ref().map_or("-".to_string(), f)
    };
    row("instructions/inference", &|r| {
        em(r, &|e| n(e.instructions_per_inference))
    });
    row("instructions/MAC", &|r| {
        em(r, &|e| format!("{:.2}", e.instructions_per_mac))
    });
    row("bit-exact samples", &|r| {
        em(r, &|e| format!("{}/{}", e.bit_exact, e.samples))
    });
    row("fits", &|r| if r.fits { "yes" } else { "NO" }.to_string());
    for (name, cells) in rows {
        let _ = write!(s, "  {name:<24}");
        for c in cells {
            let _ = write!(s, " {c:>18}");
        }
        let _ = writeln!(s);
    }
    s
}

/// Verify the kernels `which` asks for: the C kernel and the Rust kernel are built and run
/// concurrently, each in a directory of its own (with `opts.build_dir`: the C firmware in it,
/// the Rust firmware in its `rust/`). [`LangChoice::Both`] without the profile's Rust target
/// installed verifies the C kernel and says in `notes` how to install it; [`LangChoice::Rust`]
/// fails then.
pub fn verify_langs(
    spec: &NetSpec,
    weights: &Weights,
    target: &Target,
    opts: &Options,
    which: LangChoice,
) -> Result<Verification> {
    let mut notes = Vec::new();
    let want_rust = which != LangChoice::C;
    let rust_ok = if want_rust {
        match check_rust(&target.toolchain.rust_target) {
            Ok(_) => true,
            Err(e) if which == LangChoice::Both => {
                notes.push(format!(
                    "the Rust kernel was not built, only the C kernel: {e:#}"
                ));
                false
            }
            Err(e) => return Err(e),
        }
    } else {
        false
    };
    let with = |lang: Lang, sub: Option<&str>| {
        let mut o = opts.clone();
        o.lang = lang;
        if let (Some(d), Some(sub)) = (&opts.build_dir, sub) {
            o.build_dir = Some(d.join(sub));
        }
        o
    };
    let (primary, rust_report) = match (which, rust_ok) {
        (LangChoice::Rust, _) => (
            verify(spec, weights, target, &with(Lang::Rust, None))?,
            None,
        ),
        (_, false) => (verify(spec, weights, target, &with(Lang::C, None))?, None),
        (_, true) => {
            let c_opts = with(Lang::C, None);
            let rust_opts = with(Lang::Rust, Some("rust"));
            let (c, r) = std::thread::scope(|s| {
                let r = s.spawn(|| verify(spec, weights, target, &rust_opts));
                let c = verify(spec, weights, target, &c_opts);
                (c, r.join().expect("Rust verification thread"))
            });
            (c?, Some(r.context("the Rust kernel")?))
        }
    };
    Ok(Verification {
        primary,
        rust_report,
        notes,
    })
}

// ---------------------------------------------------------------------------------------------
// `nas verify`
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nas verify --run runs/r1 --target stm32f401re --data ../shared/data/iscx-vpn2016-12class-sessionl7\n  \
    nas verify --net spec.json --weights w.safetensors --target stm32g071rb --json\n  \
    nas verify --run runs/r1 --lang c\n\n\
    Needs arm-none-eabi-gcc, newlib and qemu-system-arm: \
    apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm\n\
    The Rust kernel (--lang rust|both) needs cargo and the profile's toolchain.rust_target: \
    rustup target add thumbv7em-none-eabihf (the Cortex-M4F/M7F profiles), thumbv6m-none-eabi (the Cortex-M0+)"
)]
pub struct VerifyArgs {
    /// Run directory of `nas search`: verifies its winner (best/spec.json, best/weights.safetensors)
    #[arg(long, conflicts_with_all = ["net", "weights"], required_unless_present_any = ["net", "weights"])]
    pub run: Option<PathBuf>,
    /// Network spec JSON (instead of --run; needs --weights)
    #[arg(long, requires = "weights")]
    pub net: Option<PathBuf>,
    /// Weights, safetensors (instead of --run; needs --net)
    #[arg(long, requires = "net")]
    pub weights: Option<PathBuf>,
    /// Target name or alias (see `nas targets`), or a TOML profile [default: the run's, else stm32f401re]
    #[arg(long)]
    pub target: Option<String>,
    /// Dataset directory: embed samples of its test split (default: synthetic byte sequences)
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Number of samples to embed and run
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub samples: u64,
    /// Only build and measure; do not run under QEMU
    #[arg(long)]
    pub no_emulate: bool,
    /// Seconds QEMU may run
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Build in this directory and keep the files (firmware sources, linker scripts, ELFs, maps)
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Kernels to build into firmware: `both` builds the Rust kernel next to the C kernel when
    /// the profile's `toolchain.rust_target` is installed (`rustup target add …`) and says so
    /// when it is not
    #[arg(long, value_enum, default_value_t = LangChoice::Both)]
    pub lang: LangChoice,
    /// Print a JSON object instead of the table: the primary kernel's report (C unless
    /// --lang rust) at the top level, the Rust kernel's under "rust", and "notes"
    #[arg(long)]
    pub json: bool,
    /// Element type of the kernel: int8 quantizes the network first (post-training, calibrated
    /// on training samples: those of --data, else of the run's dataset)
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// int8: training samples the activation ranges are calibrated on
    #[arg(long, default_value_t = crate::quant::calibrate::DEFAULT_CALIBRATION_SAMPLES)]
    pub calibration_samples: usize,
}

pub fn run(a: VerifyArgs) -> Result<()> {
    let (spec_path, weights_path, cost_path) = match (&a.run, &a.net, &a.weights) {
        (Some(run), _, _) => {
            ensure!(
                run.is_dir(),
                "run directory {} does not exist",
                run.display()
            );
            let spec = run.join(codegen::RUN_SPEC);
            ensure!(
                spec.is_file(),
                "{} has no {}: has the search finished a candidate yet?",
                run.display(),
                codegen::RUN_SPEC
            );
            (
                spec,
                run.join(codegen::RUN_WEIGHTS),
                Some(run.join(codegen::RUN_COST)),
            )
        }
        (None, Some(net), Some(w)) => (net.clone(), w.clone(), None),
        _ => bail!("give either --run DIR, or --net SPEC.json with --weights W.safetensors"),
    };
    let text = std::fs::read_to_string(&spec_path)
        .with_context(|| format!("cannot read the network spec {}", spec_path.display()))?;
    let spec = NetSpec::from_json(&text)
        .with_context(|| format!("invalid network spec {}", spec_path.display()))?;
    ensure!(
        weights_path.is_file(),
        "weights file {} does not exist",
        weights_path.display()
    );
    let weights = Weights::load(&weights_path)?;
    weights.check(&spec).with_context(|| {
        format!(
            "weights {} do not match {}",
            weights_path.display(),
            spec_path.display()
        )
    })?;
    let recorded_target = cost_path
        .filter(|p| p.is_file())
        .and_then(|p| crate::util::read_json::<serde_json::Value>(&p).ok())
        .and_then(|v| {
            let t = v.get("target")?;
            t.as_str()
                .map(str::to_string)
                .or_else(|| t.get("name")?.as_str().map(str::to_string))
        });
    let target_name = a
        .target
        .clone()
        .or(recorded_target)
        .unwrap_or_else(|| "stm32f401re".into());
    let target = crate::target::resolve(&target_name)?;

    let n = a.samples as usize;
    let samples = match &a.data {
        Some(dir) => Samples::from_dir(dir, n)?,
        None => Samples::synthetic(n, spec.input_len * spec.input_channels),
    };
    let quant = match a.dtype {
        Dtype::F32 => None,
        Dtype::Int8 => {
            let (calib, what) =
                crate::quant::calibration_data(a.data.as_deref(), a.run.as_deref())?;
            eprintln!(
                "int8: calibrating on {} samples of {what}",
                a.calibration_samples.min(calib.n())
            );
            Some(Arc::new(crate::quant::ptq(
                &spec,
                &weights,
                &calib,
                a.calibration_samples,
                crate::quant::CalibrationMethod::MinMax,
            )?))
        }
    };
    let opts = Options {
        samples,
        emulate: !a.no_emulate,
        timeout: Duration::from_secs(a.timeout),
        build_dir: a.keep.clone(),
        lang: Lang::C,
        rust_lib: None,
        quant,
    };
    let v = verify_langs(&spec, &weights, &target, &opts, a.lang)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", v.table());
    }
    for n in &v.notes {
        eprintln!("note: {n}");
    }
    let mut failures = Vec::new();
    for report in v.reports() {
        let which = if v.rust_report.is_some() {
            format!(" ({} kernel)", report.lang.label())
        } else {
            String::new()
        };
        if !report.fits {
            failures.push(format!(
                "the model{which} does not fit {}: {}",
                report.target,
                report.violations.join("; ")
            ));
        }
        if let Some(em) = &report.emulation {
            if em.bit_exact != em.samples || !em.predict_agrees {
                failures.push(format!(
                    "the firmware's outputs{which} differ from the host reference on {} of {} samples{}",
                    em.samples - em.bit_exact,
                    em.samples,
                    if em.predict_agrees {
                        ""
                    } else {
                        ", and model_predict disagrees"
                    }
                ));
            }
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(())
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
