//! Board projects (`nas export --project c|rust`): a generated kernel wrapped into a complete,
//! self-contained firmware project for the target profile's development board — start-up,
//! linker script from the chip's memory map, clock and debug-UART set-up (register level, one
//! board-support file per board in `firmware/boards/`), cycle timing per inference (DWT, else
//! SysTick), embedded test samples with their labels, and a main loop that prints each
//! prediction, the expected class and the cycles, then the accuracy and the mean.
//!
//! C: a `Makefile` for arm-none-eabi-gcc with the profile's flags (`make`, `make flash`, and
//! `make qemu` where a QEMU machine models the board's SoC). Rust: a cargo project on
//! `cortex-m-rt` that depends on the generated `no_std` kernel crate by path, with a
//! `.cargo/config.toml` for the target and a `probe-rs run` runner. Both record in
//! `nas-project.json` which run, candidate, dtype and target they came from.
//!
//! The sources live in `firmware/project/` and `firmware/boards/` and are embedded in the
//! binary; this module renders them and holds no board knowledge of its own.

pub mod log;

use crate::codegen::{comment_safe, string_literal, GeneratedFile, Lang};
use crate::firmware::Samples;
use crate::net::{Dtype, NetSpec};
use crate::target::{Board, Target};
use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use std::fmt::Write as _;

const C_FILES: &[(&str, &str)] = &[
    ("main.c", include_str!("../../firmware/project/c/main.c")),
    (
        "startup.c",
        include_str!("../../firmware/project/c/startup.c"),
    ),
    (
        "timing.c",
        include_str!("../../firmware/project/c/timing.c"),
    ),
    (
        "timing.h",
        include_str!("../../firmware/project/c/timing.h"),
    ),
    ("board.h", include_str!("../../firmware/project/c/board.h")),
    ("regs.h", include_str!("../../firmware/project/c/regs.h")),
];
const C_MAKEFILE: &str = include_str!("../../firmware/project/c/Makefile.tera");
const C_CONFIG: &str = include_str!("../../firmware/project/c/nas_project.h.tera");
const C_LINK: &str = include_str!("../../firmware/project/c/link.ld.tera");

const RUST_FILES: &[(&str, &str)] = &[
    (
        "src/main.rs",
        include_str!("../../firmware/project/rust/main.rs"),
    ),
    (
        "src/timing.rs",
        include_str!("../../firmware/project/rust/timing.rs"),
    ),
    (
        "build.rs",
        include_str!("../../firmware/project/rust/build.rs"),
    ),
    (
        "src/regs.rs",
        include_str!("../../firmware/project/rust/regs.rs"),
    ),
];
const RUST_CARGO: &str = include_str!("../../firmware/project/rust/Cargo.toml.tera");
const RUST_CONFIG: &str = include_str!("../../firmware/project/rust/config.toml.tera");
const RUST_MEMORY: &str = include_str!("../../firmware/project/rust/memory.x.tera");
const RUST_PROJECT: &str = include_str!("../../firmware/project/rust/project.rs.tera");
const README: &str = include_str!("../../firmware/project/README.md.tera");

/// Board-support sources: (support name, C, Rust). The names are [`crate::target::BOARD_SUPPORT`].
const BOARDS: &[(&str, &str, &str)] = &[
    (
        "nucleo-f401re",
        include_str!("../../firmware/boards/nucleo-f401re.c"),
        include_str!("../../firmware/boards/nucleo-f401re.rs"),
    ),
    (
        "disco-f746ng",
        include_str!("../../firmware/boards/disco-f746ng.c"),
        include_str!("../../firmware/boards/disco-f746ng.rs"),
    ),
    (
        "nucleo-g071rb",
        include_str!("../../firmware/boards/nucleo-g071rb.c"),
        include_str!("../../firmware/boards/nucleo-g071rb.rs"),
    ),
];

/// The Rust package name of the firmware.
pub const RUST_PACKAGE: &str = "nas-firmware";
/// Where the kernel goes inside a project.
pub const KERNEL_DIR: &str = "model";

/// What a project is built from.
pub struct ProjectInput<'a> {
    pub lang: Lang,
    pub spec: &'a NetSpec,
    pub dtype: Dtype,
    /// The generated kernel (C files or the Rust crate), written under [`KERNEL_DIR`].
    pub kernel: Vec<GeneratedFile>,
    /// Its name (`NAME_predict`, the crate `NAME`).
    pub kernel_name: &'a str,
    pub target: &'a Target,
    pub samples: &'a Samples,
    /// The host reference's prediction for each sample (the firmware checks itself against it).
    pub reference: &'a [usize],
    /// Where the model came from: the run directory or the files.
    pub source: &'a str,
    /// The search candidate, when not the run's delivered model.
    pub candidate: Option<&'a str>,
    /// The cost model's footprint of the kernel, for the README.
    pub arena_bytes: u64,
    pub flash_bytes: u64,
}

/// `nas-project.json`: what the project came from.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub tool_version: String,
    pub lang: String,
    pub source: String,
    pub candidate: Option<String>,
    pub dtype: Dtype,
    pub target: String,
    pub board: String,
    pub network: String,
    pub samples: usize,
    pub samples_source: String,
    pub labels: Option<Vec<u8>>,
    /// The host reference's prediction for each sample.
    pub reference: Vec<usize>,
    /// The cost model's arena and flash estimate of the kernel alone.
    pub kernel_arena_bytes: u64,
    pub kernel_flash_bytes: u64,
}

/// The target's board, or an error naming what is missing.
pub fn board_of(target: &Target) -> Result<&Board> {
    target.board.as_ref().with_context(|| {
        format!(
            "target {} has no [board] section, so nas does not know its board's clock set-up, \
             debug UART or flash tool: add one to the profile (see targets/stm32f401re.toml) \
             naming one of the board-support files ({}), or export the kernel alone with \
             --lang c|rust",
            target.name,
            crate::target::BOARD_SUPPORT.join(", ")
        )
    })
}

/// `target` with its board: its own `[board]`, else the shipped profile's of the same name and
/// chip (a run records its target as it was when the run began, perhaps before the profile
/// named a board; the board says nothing about budgets, so it is taken from today's profile).
pub fn with_board(target: &Target) -> Result<Target> {
    if target.board.is_some() {
        return Ok(target.clone());
    }
    if let Ok(shipped) = crate::target::resolve(&target.name) {
        if shipped.board.is_some() && shipped.core == target.core && shipped.memory == target.memory
        {
            return Ok(Target {
                board: shipped.board,
                ..target.clone()
            });
        }
    }
    // No board anywhere: the error that says what to add.
    board_of(target).map(|_| target.clone())
}

/// The rendered project: the files and the manifest (also among the files).
pub struct Project {
    pub files: Vec<GeneratedFile>,
    pub manifest: Manifest,
}

/// Render the project for `input.lang`.
pub fn render(input: ProjectInput<'_>) -> Result<Project> {
    let target = input.target;
    let board = board_of(target)?;
    let (_, board_c, board_rs) = BOARDS
        .iter()
        .find(|(name, _, _)| *name == board.support)
        .with_context(|| format!("no board-support file {:?}", board.support))?;
    let spec = input.spec;
    let len = spec.input_len * spec.input_channels;
    let n = input.samples.inputs.len();
    ensure!(n > 0, "a project needs at least one sample to run");
    ensure!(
        input.samples.inputs.iter().all(|x| x.len() == len),
        "the samples are not {len} bytes long, the network's input"
    );
    ensure!(
        input.reference.len() == n,
        "{} reference predictions for {n} samples",
        input.reference.len()
    );
    if let Some(labels) = &input.samples.labels {
        ensure!(labels.len() == n, "{} labels for {n} samples", labels.len());
        if let Some(&l) = labels.iter().find(|&&l| usize::from(l) >= spec.classes) {
            bail!(
                "a sample's label {l} is outside the network's {} classes",
                spec.classes
            );
        }
    }
    let manifest = Manifest {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        lang: input.lang.label().to_string(),
        source: input.source.to_string(),
        candidate: input.candidate.map(str::to_string),
        dtype: input.dtype,
        target: target.name.clone(),
        board: board.name.clone(),
        network: spec.summary(),
        samples: n,
        samples_source: input.samples.source.clone(),
        labels: input.samples.labels.clone(),
        reference: input.reference.to_vec(),
        kernel_arena_bytes: input.arena_bytes,
        kernel_flash_bytes: input.flash_bytes,
    };
    let provenance = format!(
        "{} {} kernel from {}{} by nas {}, target {}",
        input.lang.label(),
        input.dtype.label(),
        input.source,
        input
            .candidate
            .map(|c| format!(" (candidate {c})"))
            .unwrap_or_default(),
        manifest.tool_version,
        target.name
    );
    let ctx = Templates::new(&input, board, &provenance)?;
    let mut files: Vec<GeneratedFile> = input
        .kernel
        .iter()
        .map(|f| GeneratedFile {
            path: format!("{KERNEL_DIR}/{}", f.path),
            contents: f.contents.clone(),
        })
        .collect();
    let file = |path: &str, contents: String| GeneratedFile {
        path: path.to_string(),
        contents,
    };
    match input.lang {
        Lang::C => {
            for (path, text) in C_FILES {
                files.push(file(path, text.to_string()));
            }
            files.push(file("board.c", board_c.to_string()));
            files.push(file("Makefile", ctx.render("Makefile", C_MAKEFILE)?));
            files.push(file(
                "nas_project.h",
                ctx.render("nas_project.h", C_CONFIG)?,
            ));
            files.push(file("link.ld", ctx.render("link.ld", C_LINK)?));
            files.push(file(
                "samples.c",
                samples_c(input.samples, input.reference, len),
            ));
        }
        Lang::Rust => {
            for (path, text) in RUST_FILES {
                files.push(file(path, text.to_string()));
            }
            files.push(file("src/board.rs", board_rs.to_string()));
            files.push(file("Cargo.toml", ctx.render("Cargo.toml", RUST_CARGO)?));
            files.push(file(
                ".cargo/config.toml",
                ctx.render("config.toml", RUST_CONFIG)?,
            ));
            files.push(file("memory.x", ctx.render("memory.x", RUST_MEMORY)?));
            files.push(file(
                "src/project.rs",
                ctx.render("project.rs", RUST_PROJECT)?,
            ));
            files.push(file(
                "src/samples.rs",
                samples_rs(input.samples, input.reference, len),
            ));
        }
    }
    files.push(file("README.md", ctx.render("README.md", README)?));
    files.push(file(
        "nas-project.json",
        serde_json::to_string_pretty(&manifest)? + "\n",
    ));
    Ok(Project { files, manifest })
}

/// The template data: every value already formatted for where it goes.
#[derive(Serialize)]
struct Templates {
    lang: &'static str,
    c: bool,
    target: String,
    core: String,
    board: String,
    board_name: String,
    uart: String,
    baud: u32,
    probe_rs_chip: String,
    openocd_target: String,
    qemu_machine: String,
    cflags: String,
    rust_target: String,
    package: &'static str,
    kernel: String,
    model_header: String,
    predict_fn: String,
    input_len: usize,
    classes: usize,
    samples: usize,
    labelled: bool,
    has_fpu: u8,
    has_dwt: bool,
    has_dwt_c: u8,
    dsp: bool,
    clock_hz: u64,
    clock_mhz: String,
    flash_origin: String,
    flash_length: u64,
    ram_origin: String,
    ram_length: u64,
    stack_bytes: u64,
    network: String,
    network_text: String,
    provenance: String,
    provenance_text: String,
    samples_source: String,
    dtype: &'static str,
    arena_bytes: u64,
    flash_bytes: u64,
}

impl Templates {
    fn new(input: &ProjectInput<'_>, board: &Board, provenance: &str) -> Result<Templates> {
        let t = input.target;
        let m = &t.memory;
        let kernel = input.kernel_name.to_string();
        Ok(Templates {
            lang: input.lang.label(),
            c: input.lang == Lang::C,
            target: comment_safe(&t.name),
            core: t.core.clone(),
            board: string_literal(&board.name),
            board_name: comment_safe(&board.name),
            uart: comment_safe(&board.uart),
            baud: board.baud,
            probe_rs_chip: board.probe_rs_chip.clone(),
            openocd_target: board.openocd_target.clone(),
            qemu_machine: board.qemu_machine.clone().unwrap_or_default(),
            cflags: t.toolchain.cflags.join(" "),
            rust_target: t.toolchain.rust_target.clone(),
            package: RUST_PACKAGE,
            model_header: format!("{kernel}.h"),
            predict_fn: format!("{kernel}_predict"),
            kernel,
            input_len: input.spec.input_len * input.spec.input_channels,
            classes: input.spec.classes,
            samples: input.samples.inputs.len(),
            labelled: input.samples.labels.is_some(),
            has_fpu: u8::from(t.fpu),
            has_dwt: has_dwt(&t.core),
            has_dwt_c: u8::from(has_dwt(&t.core)),
            dsp: input.dtype == Dtype::Int8 && t.has_dsp(),
            clock_hz: t.clock_hz,
            clock_mhz: format!("{}", t.clock_hz as f64 / 1e6),
            flash_origin: format!("{:#010x}", m.flash_origin),
            flash_length: m.flash_bytes,
            ram_origin: format!("{:#010x}", m.ram_origin),
            ram_length: m.ram_bytes,
            stack_bytes: t.toolchain.stack_bytes,
            network: string_literal(&input.spec.summary()),
            network_text: comment_safe(&input.spec.summary()),
            provenance: string_literal(provenance),
            provenance_text: comment_safe(provenance),
            samples_source: comment_safe(&input.samples.source),
            dtype: input.dtype.label(),
            arena_bytes: input.arena_bytes,
            flash_bytes: input.flash_bytes,
        })
    }

    fn render(&self, name: &str, template: &str) -> Result<String> {
        let ctx = tera::Context::from_serialize(self)?;
        tera::Tera::one_off(template, &ctx, false)
            .with_context(|| format!("internal: rendering the project's {name}"))
    }
}

/// Whether the core has the DWT cycle counter (ARMv7-M and ARMv8-M mainline; not the M0/M0+).
fn has_dwt(core: &str) -> bool {
    !matches!(
        core,
        "cortex-m0" | "cortex-m0plus" | "cortex-m0.small-multiply" | "cortex-m1" | "cortex-m23"
    )
}

fn byte_rows(x: &[u8]) -> String {
    let mut s = String::new();
    for (i, chunk) in x.chunks(24).enumerate() {
        s.push_str(if i == 0 { "    [" } else { "\n     " });
        let line: Vec<String> = chunk.iter().map(|b| b.to_string()).collect();
        s.push_str(&line.join(", "));
        s.push(',');
    }
    s
}

fn labels_of(samples: &Samples) -> Vec<i16> {
    match &samples.labels {
        Some(l) => l.iter().map(|&v| i16::from(v)).collect(),
        None => vec![-1; samples.inputs.len()],
    }
}

/// The embedded samples, labels and host-reference predictions as C (data only).
fn samples_c(samples: &Samples, reference: &[usize], len: usize) -> String {
    let mut s = format!(
        "/* {}, embedded by `nas export --project c`. Generated; do not edit. */\n#include <stdint.h>\n\n",
        comment_safe(&samples.source)
    );
    let n = samples.inputs.len();
    let _ = writeln!(s, "const uint8_t nas_samples[{n}][{len}] = {{");
    for x in &samples.inputs {
        s.push_str(&byte_rows(x).replacen('[', "{", 1));
        s.push_str("},\n");
    }
    s.push_str("};\n\n/* Their classes (-1: unknown). */\n");
    let labels: Vec<String> = labels_of(samples).iter().map(|l| l.to_string()).collect();
    let _ = writeln!(
        s,
        "const int16_t nas_labels[{n}] = {{{}}};",
        labels.join(", ")
    );
    s.push_str("\n/* What the host reference (`nas eval`'s arithmetic) predicts for each. */\n");
    let _ = writeln!(
        s,
        "const int16_t nas_reference[{n}] = {{{}}};",
        joined(reference)
    );
    s
}

fn joined(v: &[usize]) -> String {
    v.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The embedded samples, labels and host-reference predictions as Rust (data only).
fn samples_rs(samples: &Samples, reference: &[usize], len: usize) -> String {
    let mut s = format!(
        "//! {}, embedded by `nas export --project rust`. Generated; do not edit.\n\n",
        comment_safe(&samples.source)
    );
    let n = samples.inputs.len();
    let _ = writeln!(s, "pub static SAMPLES: [[u8; {len}]; {n}] = [");
    for x in &samples.inputs {
        s.push_str(&byte_rows(x));
        s.push_str("],\n");
    }
    s.push_str("];\n\n/// Their classes (-1: unknown).\n");
    let labels: Vec<String> = labels_of(samples).iter().map(|l| l.to_string()).collect();
    let _ = writeln!(
        s,
        "pub static LABELS: [i16; {n}] = [{}];",
        labels.join(", ")
    );
    s.push_str("\n/// What the host reference (`nas eval`'s arithmetic) predicts for each.\n");
    let _ = writeln!(
        s,
        "pub static REFERENCE: [u16; {n}] = [{}];",
        joined(reference)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run records its target as it was; one from before the profile named a board still
    /// gets today's board, and a chip that is not the profile's does not.
    #[test]
    fn a_recorded_target_takes_the_shipped_board() {
        let shipped = crate::target::resolve("stm32f401re").unwrap();
        let recorded = Target {
            board: None,
            ..shipped.clone()
        };
        assert_eq!(with_board(&recorded).unwrap().board, shipped.board);
        let mut other = recorded.clone();
        other.memory.ram_bytes /= 2;
        let err = with_board(&other).unwrap_err().to_string();
        assert!(err.contains("no [board] section"), "{err}");
        let nrf = crate::target::resolve("nrf52840").unwrap();
        assert!(with_board(&nrf).is_err());
    }
}
