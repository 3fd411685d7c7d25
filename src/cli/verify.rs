//! `nas verify` on the terminal: the report tables.

use crate::firmware::*;
use std::fmt::Write as _;

use crate::firmware::{Kernels, Lang, Options, Samples};
use crate::search::rundir::RunLock;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;
pub(super) fn thousands(v: u64) -> String {
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

impl KernelReport {
    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut s = String::new();
        self.write_header(&mut s);
        self.write_footprint(&mut s);
        self.write_breakdown(&mut s);
        self.write_sections(&mut s);
        self.write_emulation(&mut s);
        self.write_fits(&mut s);
        s
    }

    /// The title line, how the kernel was compiled and where its build files were kept.
    fn write_header(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "nas verify on {} ({}, {}), {} {} kernel: {}",
            self.target,
            self.core,
            if self.fpu { "FPU" } else { "soft-float" },
            self.lang.label(),
            self.dtype.label(),
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
    }

    /// The flash and RAM rows: measured against the estimate, the budget and the chip.
    fn write_footprint(&self, s: &mut String) {
        let m = &self.measured;
        let e = &self.estimate;
        let l = &self.limits;
        let _ = writeln!(
            s,
            "{:<8} {:>12} {:>12} {:>8} {:>12} {:>12} {:>12}",
            "model", "ELF", "estimate", "error", "budget", "image", "chip"
        );
        footprint_row(
            s,
            "flash",
            [m.flash_bytes, e.flash_bytes],
            m.flash_error_pct,
            [
                l.max_flash_bytes,
                self.image.flash_bytes,
                l.chip_flash_bytes,
            ],
        );
        footprint_row(
            s,
            "RAM",
            [m.ram_bytes, e.ram_bytes],
            m.ram_error_pct,
            [l.max_ram_bytes, self.image.ram_bytes, l.chip_ram_bytes],
        );
        let _ = writeln!(
            s,
            "  (bytes; ELF = the model's share of the image: flash without the harness, RAM = arena and kernel data + {} stack {};\n   image = the whole firmware with harness, samples and the {}-byte stack reservation)",
            if m.stack_measured { "measured" } else { "estimated" },
            m.stack_bytes,
            self.breakdown.stack_reserved_bytes
        );
        let _ = writeln!(s);
    }

    /// Where the bytes go, by symbol: weights, kernel, runtime, padding, arena, stack, harness.
    fn write_breakdown(&self, s: &mut String) {
        let n = thousands;
        let m = &self.measured;
        let e = &self.estimate;
        let b = &self.breakdown;
        let _ = writeln!(s, "where the bytes go (symbols):");
        let _ = writeln!(
            s,
            "  weights           {:>10}  {}",
            n(b.weights_bytes),
            symbol_list(&b.weights)
        );
        let _ = writeln!(
            s,
            "  kernel code       {:>10}  {}",
            n(b.kernel_code_bytes),
            symbol_list(&b.kernel_functions)
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
            symbol_list(&b.runtime_functions)
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
        self.write_ram_breakdown(s);
    }

    /// The RAM part of the breakdown (arena, other kernel data, stack) and the harness's share.
    fn write_ram_breakdown(&self, s: &mut String) {
        let n = thousands;
        let m = &self.measured;
        let e = &self.estimate;
        let b = &self.breakdown;
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
            let _ = writeln!(
                s,
                "  other kernel RAM  {:>10}{}",
                n(b.kernel_ram_bytes),
                if e.scratch_bytes > 0 {
                    format!(
                        "  the kernel's working buffers and statics (the cost model's: {})",
                        n(e.scratch_bytes)
                    )
                } else {
                    String::new()
                }
            );
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
    }

    /// The image's sections with their addresses and where each one counts.
    fn write_sections(&self, s: &mut String) {
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
                thousands(sec.size)
            );
        }
        let _ = writeln!(s);
    }

    /// What QEMU found, or why it did not run.
    fn write_emulation(&self, s: &mut String) {
        match (&self.emulation, &self.emulation_skipped) {
            (Some(em), _) => self.write_emulation_run(s, em),
            (None, Some(why)) => {
                let _ = writeln!(s, "QEMU: not run: {why}");
            }
            (None, None) => {}
        }
        let _ = writeln!(s);
    }

    /// The emulation's outcome: agreement with the reference, instruction counts, the latency
    /// model's estimate against them.
    fn write_emulation_run(&self, s: &mut String, em: &Emulation) {
        let n = thousands;
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
        if let (Lang::C, Some(est), Some(worst)) = (
            self.lang,
            self.estimate.instructions,
            self.estimate.instructions_worst_error_pct,
        ) {
            let _ = writeln!(
                s,
                "  latency model's estimate: {} instructions ({:+.1} % against QEMU; the profile's calibration states ±{worst} %)",
                n(est),
                100.0 * (est as f64 - em.instructions_per_inference as f64)
                    / em.instructions_per_inference.max(1) as f64
            );
        }
        let _ = writeln!(
            s,
            "  (QEMU -icount with SysTick, {:.3} ticks per instruction; {:.2} s wall)",
            em.ticks_per_instruction, em.wall_seconds
        );
        self.write_cycles(s, em);
    }

    /// The cycle estimate from the instruction mix, with its breakdown by class.
    fn write_cycles(&self, s: &mut String, em: &Emulation) {
        let (Some(c), Some(per_mac), Some(ms)) = (&em.cycles, em.cycles_per_mac, em.cycle_ms)
        else {
            if let Some(why) = &em.cycles_skipped {
                let _ = writeln!(s, "  cycle estimate: none ({why})");
            }
            return;
        };
        let n = |v: f64| thousands(v.round() as u64);
        let _ = writeln!(
            s,
            "  cycle estimate ({}): {} cycles per inference = {:.3} ms at {:.0} MHz, {:.2} cycles/MAC \
             (an estimate from sample 0's executed instruction mix, not a measurement)",
            c.core,
            n(c.cycles),
            ms,
            c.cycles / (ms * 1e3),
            per_mac
        );
        let parts: Vec<String> = c
            .by_class
            .iter()
            .map(|k| {
                format!(
                    "{} {} instr / {} cycles",
                    serde_json::to_value(k.class)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    n(k.instructions),
                    n(k.cycles)
                )
            })
            .collect();
        let _ = writeln!(s, "    by class: {}", parts.join(", "));
        let _ = writeln!(
            s,
            "    {} taken branches, {} pipelined loads/stores, {} flash data reads ({} cache misses: {} cycles){}",
            n(c.taken_branches),
            n(c.pipelined_accesses),
            n(c.flash_reads),
            n(c.flash_misses),
            n(c.flash_cycles),
            if c.dual_issue_saved > 0.0 {
                format!(", {} cycles saved by dual issue", n(c.dual_issue_saved))
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "    timings: {}{}",
            c.core_source,
            c.flash_source.as_ref().map_or(
                "; flash wait states not modelled (no [flash_timing] in the profile)".to_string(),
                |f| format!("; flash: {f}")
            )
        );
    }

    /// The verdict, with the violations when it does not fit.
    fn write_fits(&self, s: &mut String) {
        if self.fits {
            let _ = writeln!(s, "fits {}: yes", self.target);
        } else {
            let _ = writeln!(s, "fits {}: NO", self.target);
            for v in &self.violations {
                let _ = writeln!(s, "  - {v}");
            }
        }
    }
}

/// One row of the footprint table: `[measured, estimate]`, the estimate's error and
/// `[budget, image, chip]`, marked OVER when the model exceeds its budget or the image the chip.
fn footprint_row(
    s: &mut String,
    name: &str,
    [meas, est]: [u64; 2],
    err: f64,
    [budget, image, chip]: [u64; 3],
) {
    let n = thousands;
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
}

/// Symbols as `name bytes`, the first six and then how many more.
fn symbol_list(v: &[SymbolSize]) -> String {
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
}

impl Verification {
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
pub fn side_by_side(reports: &[&KernelReport]) -> String {
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
    let mut row = |name: &str, f: &dyn Fn(&KernelReport) -> String| {
        rows.push((name.to_string(), reports.iter().map(|r| f(r)).collect()));
    };
    let n = thousands;
    row("", &|r| format!("{} {}", r.lang.label(), r.dtype.label()));
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
    let em = |r: &KernelReport, f: &dyn Fn(&Emulation) -> String| {
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
    #[command(flatten)]
    pub model: super::ModelArgs,
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
    /// Build in this directory and keep the files (firmware sources, linker scripts, ELFs, maps).
    /// It must be new, empty or kept by an earlier `nas verify --keep`
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// With --keep: build in a non-empty directory that nas verify did not make (files of the
    /// same names are replaced)
    #[arg(long, requires = "keep")]
    pub force: bool,
    /// Kernels to build into firmware: `both` builds the Rust kernel next to the C kernel when
    /// the profile's `toolchain.rust_target` is installed (`rustup target add …`) and says so
    /// when it is not
    #[arg(long, value_enum, default_value_t = Kernels::Both)]
    pub lang: Kernels,
    /// Print a JSON object instead of the table: the primary kernel's report (C unless
    /// --lang rust) at the top level, the Rust kernel's under "rust_kernel", and "notes"
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dtype: super::quant::DtypeArgs,
    /// A capture of a board project's UART (`nas export --project`, flashed and run on the
    /// board): its measured cycles per inference go beside QEMU's instruction count and the
    /// estimate, and its predictions are checked against the host reference it embeds
    #[arg(long, value_name = "FILE")]
    pub board_log: Option<PathBuf>,
}

/// The file that marks a `--keep` directory as nas verify's: a later `--keep` there may replace
/// its files.
const KEEP_MARK: &str = ".nas-verify";

/// Make `dir` ready to keep the build files: new, empty, or an earlier `--keep` directory;
/// any other non-empty directory only with `force`.
fn prepare_keep(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("--keep {} exists and is not a directory", dir.display());
        }
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !names.is_empty() && !names.iter().any(|n| n == KEEP_MARK) && !force {
            names.sort();
            names.truncate(3);
            bail!(
                "--keep {} is not empty ({}…) and was not made by nas verify: the build would \
                 replace files of the same names there; choose a new or empty directory, or pass \
                 --force",
                dir.display(),
                names.join(", ")
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::util::write_atomic(
        &dir.join(KEEP_MARK),
        b"build files of nas verify --keep; a later nas verify --keep may replace them\n",
    )
}

pub fn run(a: VerifyArgs) -> Result<()> {
    // `verify.json` is written into the run: the run is locked for the whole verification
    // (a search still writing it is refused, naming it), and only the run's own models are
    // measured (--candidate is a candidate id or `best`, checked when the model is loaded).
    let lock = match &a.model.run {
        Some(dir) if dir.is_dir() => Some(RunLock::acquire(dir, "nas verify")?),
        _ => None,
    };
    if let Some(note) = lock.as_ref().and_then(|l| l.taken_over()) {
        note!("note: {note}");
    }
    let m = a.model.load()?;
    let board_log = match &a.board_log {
        Some(path) => Some((
            super::board_log::read(
                path,
                &m.spec,
                a.dtype.resolve_for(&m, a.model.run.as_deref()),
                &m.target.name,
            )?,
            path,
        )),
        None => None,
    };
    if let Some(dir) = &a.keep {
        prepare_keep(dir, a.force)?;
    }
    let (spec, weights, target) = (&m.spec, &m.weights, &m.target);
    let n = a.samples as usize;
    let samples = match &a.data {
        Some(dir) => Samples::from_dir(dir, n)?,
        None => Samples::synthetic(n, spec.input_len * spec.input_channels),
    };
    let quant = a
        .dtype
        .quantize(&m, a.data.as_deref(), a.model.run.as_deref())?
        .map(std::sync::Arc::new);
    let opts = Options {
        samples,
        emulate: !a.no_emulate,
        timeout: Duration::from_secs(a.timeout),
        build_dir: a.keep.clone(),
        lang: Lang::C,
        rust_lib: None,
        quant,
    };
    let v = verify_langs(spec, weights, target, &m.limits, &opts, a.lang)?;
    // Saved in the run, whatever the outcome, with which model it measured, so that `nas
    // report` shows it as the winner's only when it is.
    if let Some(run) = &a.model.run {
        let candidate = a.model.candidate.as_deref().filter(|c| *c != "best");
        let model = crate::report::VerifiedModel::of(candidate, spec, weights);
        crate::report::save_verify(run, &model, &v)?;
    }
    drop(lock);
    if a.json {
        let mut json = serde_json::to_value(&v)?;
        if let (Some((log, _)), Some(obj)) = (&board_log, json.as_object_mut()) {
            obj.insert(
                "board_log".to_string(),
                serde_json::json!({
                    "log": log,
                    "mean_cycles": log.mean_cycles(),
                    "agreeing": log.agreeing(),
                }),
            );
        }
        outln!("{}", serde_json::to_string_pretty(&json)?)?;
    } else {
        out!("{}", v.table())?;
        if let Some((log, path)) = &board_log {
            out!("{}", super::board_log::table(log, path, &v))?;
        }
    }
    for n in &v.notes {
        note!("note: {n}");
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
    if let Some((log, path)) = &board_log {
        if log.agreeing() != log.samples.len() {
            failures.push(format!(
                "on the board ({}), the predictions differ from the host reference on {} of {} samples",
                path.display(),
                log.samples.len() - log.agreeing(),
                log.samples.len()
            ));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(())
}
