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

use crate::arch::NetSpec;
use crate::codegen::{self, Provenance};
use crate::cost::{self, Cost};
use crate::elf::{ElfImage, Region, SymbolType};
use crate::emulate;
use crate::plan;
use crate::target::Target;
use crate::weights::Weights;
use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
}

impl Options {
    pub fn new(samples: Samples) -> Options {
        Options {
            samples,
            emulate: true,
            timeout: Duration::from_secs(120),
            build_dir: None,
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

/// Everything `nas verify` found out.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub core: String,
    pub fpu: bool,
    pub network: String,
    pub layers: usize,
    pub executed_macs: u64,
    pub compiler: String,
    pub cflags: Vec<String>,
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

fn config_header(target: &Target, spec: &NetSpec, samples: usize) -> Result<String> {
    let mut ctx = tera::Context::new();
    ctx.insert("target", &target.name);
    ctx.insert("model_header", &format!("{KERNEL_NAME}.h"));
    ctx.insert("infer_fn", &format!("{KERNEL_NAME}_infer"));
    ctx.insert("predict_fn", &format!("{KERNEL_NAME}_predict"));
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

/// Symbol-level breakdown of an image.
fn breakdown(image: &ElfImage, kernel_symbols: &BTreeSet<String>) -> Breakdown {
    let arena_name = format!("{KERNEL_NAME}_arena");
    let is_weight = |n: &str| {
        n.starts_with(&format!("{KERNEL_NAME}_")) && (n.ends_with("_w") || n.ends_with("_b"))
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
            name: s.name.clone(),
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
    /// Object files, relative to the build directory.
    objects: Vec<String>,
    /// Symbols the kernel's object file defines.
    kernel_symbols: BTreeSet<String>,
    /// The flags every object was compiled with.
    cflags: Vec<String>,
}

/// Write the generated kernel, the harness and the samples to `d` and compile them: the kernel
/// with the target's flags and [`COMMON_CFLAGS`] only, the harness with a few more.
fn compile(
    d: &Path,
    spec: &NetSpec,
    weights: &Weights,
    target: &Target,
    samples: &Samples,
    estimate: &Cost,
) -> Result<Compiled> {
    let note = Provenance {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        source: "nas verify".into(),
        target: Some(target.name.clone()),
        footprint: Some(estimate.clone()),
    };
    let files = codegen::generate_c(spec, weights, KERNEL_NAME, &note)?;
    codegen::write_files(&files, d)?;
    for (name, text) in HARNESS_SOURCES {
        write(d, name, text)?;
    }
    let input_len = spec.input_len * spec.input_channels;
    write(
        d,
        "nas_config.h",
        &config_header(target, spec, samples.inputs.len())?,
    )?;
    write(
        d,
        "nas_harness_samples.c",
        &samples_source(samples, input_len),
    )?;

    let mut cflags: Vec<String> = target.toolchain.cflags.clone();
    cflags.extend(COMMON_CFLAGS.iter().map(|s| s.to_string()));
    let kernel_o = format!("{KERNEL_NAME}.o");
    let mut kernel_args = cflags.clone();
    kernel_args.extend([
        "-c".into(),
        format!("{KERNEL_NAME}.c"),
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
        let k = s.spawn(|| run_tool(d, &kernel_args));
        let h = run_tool(d, &harness_args);
        (k.join().expect("compiler thread"), h)
    });
    if let Err(e) = k? {
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
    let mut objects = vec![kernel_o.clone()];
    objects.extend(harness_c.iter().map(|c| c.replace(".c", ".o")));
    let kernel_symbols = crate::elf::defined_symbols(&std::fs::read(d.join(&kernel_o))?)
        .context("reading the kernel's object file")?;
    Ok(Compiled {
        objects,
        kernel_symbols,
        cflags,
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

/// Cross-compile `spec` with `weights` for `target`, measure the ELF, and (when asked and the
/// profile has an emulator) run it under QEMU against the host reference. A model that does not
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
    let estimate: Cost = cost::cost(plan, target, &target.limits());
    let compiled = compile(d, spec, weights, target, &opts.samples, &estimate)?;
    let (chip, overflows) = link_for_chip(d, target, &compiled.objects)?;
    let links_for_chip = overflows.is_empty();
    let image = ElfImage::parse(&std::fs::read(&chip.elf)?, chip.flash, chip.ram)
        .with_context(|| format!("reading {}", chip.elf.display()))?;
    let bd = breakdown(&image, &compiled.kernel_symbols);

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
                    lowered,
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
    let stack_bytes = stack_peak.unwrap_or(target.code_size.stack_bytes);
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
        target: target.name.clone(),
        core: target.core.clone(),
        fpu: target.fpu,
        network: spec.summary(),
        layers: plan.layers.len(),
        executed_macs: estimate.executed_macs,
        compiler: GCC.to_string(),
        cflags: compiled.cflags,
        build_dir: None,
        estimate: Estimate {
            flash_bytes: estimate.flash_bytes,
            ram_bytes: estimate.ram_bytes,
            weights_bytes: estimate.weights_bytes,
            code_bytes: estimate.code_bytes,
            arena_bytes: estimate.arena_bytes,
            stack_bytes: target.code_size.stack_bytes,
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

/// Compare the emulated logits with the host reference.
fn compare(
    lowered: &codegen::Lowered,
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
        let reference = codegen::reference_logits(lowered, &samples.inputs[inf.index]);
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
        let class = codegen::argmax(&reference);
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
            "nas verify on {} ({}, {}): {}",
            self.target,
            self.core,
            if self.fpu { "FPU" } else { "soft-float" },
            self.network
        );
        let _ = writeln!(
            s,
            "compiled with {} {}",
            self.compiler,
            self.cflags.join(" ")
        );
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
            "  kernel constants  {:>10}  (layer descriptors)",
            n(b.kernel_const_bytes)
        );
        let _ = writeln!(
            s,
            "  runtime library   {:>10}  {}",
            n(b.runtime_bytes),
            list(&b.runtime_functions)
        );
        let _ = writeln!(
            s,
            "  padding           {:>10}",
            n(b.unattributed_flash_bytes)
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
            "  arena (RAM)       {:>10}  {KERNEL_NAME}_arena {arena_check} ({})",
            n(b.arena_bytes),
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
// `nas verify`
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nas verify --run runs/r1 --target stm32f401re --data ../shared/data/iscx-vpn2016-12class-sessionl7\n  \
    nas verify --net spec.json --weights w.safetensors --target stm32g071rb --json\n\n\
    Needs arm-none-eabi-gcc, newlib and qemu-system-arm: \
    apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
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
    /// Print a JSON object instead of the table
    #[arg(long)]
    pub json: bool,
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
    let opts = Options {
        samples,
        emulate: !a.no_emulate,
        timeout: Duration::from_secs(a.timeout),
        build_dir: a.keep.clone(),
    };
    let report = verify(&spec, &weights, &target, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if !report.fits {
        bail!(
            "the model does not fit {}: {}",
            report.target,
            report.violations.join("; ")
        );
    }
    if let Some(em) = &report.emulation {
        if em.bit_exact != em.samples || !em.predict_agrees {
            bail!(
                "the firmware's outputs differ from the host reference on {} of {} samples{}",
                em.samples - em.bit_exact,
                em.samples,
                if em.predict_agrees {
                    ""
                } else {
                    ", and model_predict disagrees"
                }
            );
        }
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
    fn unbounded_regions_do_not_overlap() {
        let f = unbounded(0x0800_0000, 0x2000_0000);
        assert_eq!(f.origin + f.length, 0x1800_0000);
        let r = unbounded(0x2000_0000, 0x0800_0000);
        assert_eq!(r.length, 0x1000_0000);
        let f0 = unbounded(0, 0x2000_0000);
        assert_eq!(f0.length, 0x1000_0000);
    }
}
