//! The executed instruction mix of an inference, and the cycles it takes on a core.
//!
//! The counts come from QEMU with the `nas-qemu-mix` TCG plugin (`qemu-mix/`, built with nas):
//! per executed instruction, how often it ran, how often it was entered from the instruction
//! just before it, how often control went elsewhere after it, and its loads and stores by
//! memory region with the flash-cache misses of the profile's cache model. Here each
//! instruction is classified from its disassembly and charged its core's cycles
//! ([`CoreTiming`], from the technical reference manual) and the profile's flash wait states
//! ([`FlashTiming`]).
//!
//! It is an estimate, never a measurement: QEMU models no pipeline, caches or bus. What it
//! assumes: instruction fetches hidden by the flash accelerator or I-cache; a taken branch's
//! refill at a fixed cost; divisions at their worst; on the Cortex-M7 a simple dual-issue rule
//! on adjacent instructions (no published timing table); SRAM without wait states; no
//! interrupts. A board's DWT count (`nas verify --board-log`) is the measurement.

use super::{INSTALL_HINT, QEMU};
use crate::target::{CoreTiming, FlashTiming};
use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// File name of the plugin (`cargo build --release` puts it beside the `nas` binary).
pub const PLUGIN_FILE: &str = "libnas_qemu_mix.so";

/// One executed instruction's counts over the whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct InsnStat {
    pub addr: u64,
    pub size: u64,
    pub count: u64,
    /// Executions entered from the instruction just before it in memory.
    pub sequential: u64,
    /// Executions after which control went elsewhere than the next instruction.
    pub taken: u64,
    pub flash_reads: u64,
    pub flash_writes: u64,
    pub ram_reads: u64,
    pub ram_writes: u64,
    pub other_accesses: u64,
    pub flash_misses: u64,
    pub disas: String,
}

/// The plugin's record of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Times counting started (one inference each).
    pub inferences: u64,
    pub insns: Vec<InsnStat>,
}

impl Mix {
    /// Parse the plugin's output file.
    pub fn parse(text: &str) -> Result<Mix> {
        let mut lines = text.lines();
        let inferences = lines
            .next()
            .and_then(|l| l.strip_prefix("inferences "))
            .and_then(|n| n.trim().parse().ok())
            .context("instruction mix: no 'inferences N' header")?;
        let mut insns = Vec::new();
        for (i, line) in lines.enumerate() {
            let (nums, disas) = line
                .split_once(" ; ")
                .with_context(|| format!("instruction mix line {}: {line:?}", i + 2))?;
            let f: Vec<&str> = nums.split_whitespace().collect();
            ensure!(f.len() == 12, "instruction mix line {}: {line:?}", i + 2);
            let n = |k: usize| -> Result<u64> {
                f[k].parse()
                    .with_context(|| format!("instruction mix line {}: {line:?}", i + 2))
            };
            insns.push(InsnStat {
                addr: u64::from_str_radix(f[0], 16)
                    .with_context(|| format!("instruction mix line {}", i + 2))?,
                size: n(1)?,
                count: n(2)?,
                sequential: n(3)?,
                taken: n(4)?,
                flash_reads: n(5)?,
                flash_writes: n(6)?,
                ram_reads: n(7)?,
                ram_writes: n(8)?,
                other_accesses: n(9)? + n(10)?,
                flash_misses: n(11)?,
                disas: disas.trim().to_string(),
            });
        }
        Ok(Mix { inferences, insns })
    }
}

/// What an instruction costs like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Data processing, moves, compares, extends, saturation, barriers, NOPs.
    Alu,
    /// Multiplies and DSP multiply-accumulates (MUL, MLA, SMULL, SMLAD, SMMULR, …).
    Mul,
    Div,
    Load,
    Store,
    /// LDM/POP (`regs` registers).
    LoadMulti,
    /// STM/PUSH.
    StoreMulti,
    Branch,
    /// BL/BLX.
    Call,
    It,
    /// FPU arithmetic, moves and conversions (1 cycle).
    Fpu,
    /// VMLA/VMLS/VFMA/VFMS/VNMLA/VNMLS.
    FpuMac,
    /// VDIV/VSQRT.
    FpuDiv,
    /// VLDR/VSTR (timed as LDR/STR).
    FpuLoad,
    FpuStore,
    /// VLDM/VSTM/VPUSH/VPOP.
    FpuMulti,
}

/// The mnemonic without condition code, width qualifier or flag-setting suffix where they do
/// not change the class: `"bne.w"` → `"b"`, `"ldrb.w"` → `"ldrb"`.
fn mnemonic(disas: &str) -> &str {
    let m = disas.split_whitespace().next().unwrap_or("");
    m.split('.').next().unwrap_or(m)
}

const CONDS: [&str; 15] = [
    "eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt",
];

fn strip_cond(m: &str) -> &str {
    for c in CONDS.iter().chain(&["le", "al"]) {
        if let Some(base) = m.strip_suffix(c) {
            if !base.is_empty() {
                return base;
            }
        }
    }
    m
}

/// The registers of a register list `{r0, r4-r7, lr}` in the operands.
fn list_regs(disas: &str) -> (usize, bool) {
    let Some(l) = disas
        .split_once('{')
        .and_then(|(_, r)| r.split_once('}'))
        .map(|p| p.0)
    else {
        return (1, false);
    };
    let mut n = 0;
    let mut pc = false;
    for item in l.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        pc |= item == "pc";
        n += match item.split_once('-') {
            Some((a, b)) => {
                let num = |r: &str| r.trim_start_matches(['r', 's', 'd']).parse::<usize>().ok();
                match (num(a), num(b)) {
                    (Some(x), Some(y)) if y >= x => y - x + 1,
                    _ => 1,
                }
            }
            None => 1,
        };
    }
    (n.max(1), pc)
}

/// The class of an instruction, and for multiple loads and stores the register count and
/// whether it loads the PC.
pub fn classify(disas: &str) -> (Class, usize, bool) {
    let m = mnemonic(disas);
    let multi = |c: Class| {
        let (n, pc) = list_regs(disas);
        (c, n, pc)
    };
    if let Some(v) = m.strip_prefix('v') {
        let v = strip_cond(v);
        return match v {
            "mla" | "mls" | "fma" | "fms" | "nmla" | "nmls" | "fnma" | "fnms" => {
                (Class::FpuMac, 1, false)
            }
            "div" | "sqrt" => (Class::FpuDiv, 1, false),
            "ldr" => (Class::FpuLoad, 1, false),
            "str" => (Class::FpuStore, 1, false),
            "ldm" | "ldmia" | "ldmdb" | "stm" | "stmia" | "stmdb" | "push" | "pop" => {
                multi(Class::FpuMulti)
            }
            _ => (Class::Fpu, 1, false),
        };
    }
    // Condition codes only matter for branches here (`bne` → `b`; `bl` and `bls` stay apart).
    let base = if m.starts_with('b') { strip_cond(m) } else { m };
    match base {
        "b" | "bx" | "cbz" | "cbnz" | "tbb" | "tbh" => (Class::Branch, 1, false),
        "bl" | "blx" => (Class::Call, 1, false),
        "it" | "itt" | "ite" | "ittt" | "itte" | "itet" | "itee" | "itttt" | "ittte" | "ittet"
        | "ittee" | "itett" | "itete" | "iteet" | "iteee" => (Class::It, 1, false),
        "push" | "stm" | "stmia" | "stmea" | "stmdb" | "stmfd" => multi(Class::StoreMulti),
        "pop" | "ldm" | "ldmia" | "ldmfd" | "ldmdb" | "ldmea" => multi(Class::LoadMulti),
        "sdiv" | "udiv" => (Class::Div, 1, false),
        _ if base.starts_with("ldr") || base.starts_with("ldrex") => {
            // `ldr pc, …` is a branch as well; counted as a load plus its refill below.
            (
                Class::Load,
                1,
                disas.split_whitespace().nth(1) == Some("pc,"),
            )
        }
        _ if base.starts_with("str") => (Class::Store, 1, false),
        _ if is_multiply(base) => (Class::Mul, 1, false),
        _ => (Class::Alu, 1, false),
    }
}

fn is_multiply(m: &str) -> bool {
    let m = m
        .strip_suffix('s')
        .filter(|b| *b == "mul" || *b == "mla")
        .unwrap_or(m);
    matches!(m, "mul" | "mla" | "mls")
        || m.starts_with("smul")
        || m.starts_with("umul")
        || m.starts_with("smla")
        || m.starts_with("umla")
        || m.starts_with("smls")
        || m.starts_with("smmul")
        || m.starts_with("smmla")
        || m.starts_with("smmls")
        || m.starts_with("smuad")
        || m.starts_with("smusd")
        || m.starts_with("umaal")
        || m.starts_with("usad")
}

/// Registers an instruction writes (its first operand, for data processing and loads) and
/// reads (the others), for the dual-issue rule.
fn operands(disas: &str) -> (Option<String>, Vec<String>) {
    let rest = disas.split_once(char::is_whitespace).map_or("", |p| p.1);
    let regs: Vec<String> = rest
        .split([',', '[', ']', ' ', '!', '{', '}'])
        .map(str::trim)
        .filter(|t| {
            matches!(*t, "sb" | "sl" | "fp" | "ip" | "lr" | "sp")
                || (t.len() >= 2
                    && t.starts_with(['r', 's', 'd'])
                    && t[1..].chars().all(|c| c.is_ascii_digit()))
        })
        .map(str::to_string)
        .collect();
    match regs.split_first() {
        Some((d, rest)) => (Some(d.clone()), rest.to_vec()),
        None => (None, Vec::new()),
    }
}

/// Cycles of one class on a core.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassCycles {
    pub class: Class,
    /// Per inference.
    pub instructions: f64,
    pub cycles: f64,
}

/// The cycle estimate of one inference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CycleEstimate {
    pub core: String,
    pub instructions: f64,
    pub cycles: f64,
    pub by_class: Vec<ClassCycles>,
    /// Taken branches (and PC loads) per inference, whose refills are in the branches' cycles.
    pub taken_branches: f64,
    /// Loads and stores that pipelined behind another, per inference.
    pub pipelined_accesses: f64,
    pub flash_reads: f64,
    pub flash_misses: f64,
    /// Cycles of the flash misses (in `cycles`).
    pub flash_cycles: f64,
    /// Cycles saved by dual issue (Cortex-M7; in `cycles`).
    pub dual_issue_saved: f64,
    pub core_source: String,
    pub flash_source: Option<String>,
}

/// The cycles of the mix on a core with the profile's flash timing.
pub fn estimate(mix: &Mix, core: &str, flash: Option<&FlashTiming>) -> Result<CycleEstimate> {
    let t = CoreTiming::of(core)
        .with_context(|| format!("no instruction timings for the core {core}"))?;
    ensure!(
        mix.inferences > 0,
        "the instruction mix counted no inference"
    );
    let n = mix.inferences as f64;
    let classes: Vec<(Class, usize, bool)> = mix.insns.iter().map(|i| classify(&i.disas)).collect();
    let by_addr: HashMap<u64, usize> = mix
        .insns
        .iter()
        .enumerate()
        .map(|(k, i)| (i.addr, k))
        .collect();
    // The instruction just before each one in memory, when it was executed too.
    let pred = |k: usize| -> Option<usize> {
        let i = &mix.insns[k];
        [2u64, 4]
            .iter()
            .filter_map(|&s| by_addr.get(&i.addr.checked_sub(s)?).copied())
            .find(|&p| mix.insns[p].addr + mix.insns[p].size == i.addr)
    };
    let single_access = |c: Class| {
        matches!(
            c,
            Class::Load | Class::Store | Class::FpuLoad | Class::FpuStore
        )
    };
    let mut per_class: BTreeMap<Class, (f64, f64)> = BTreeMap::new();
    let (mut taken, mut pipelined) = (0.0, 0.0);
    for (k, (i, &(class, regs, pc))) in mix.insns.iter().zip(&classes).enumerate() {
        let count = i.count as f64;
        let piped = match pred(k) {
            Some(p) if single_access(class) && single_access(classes[p].0) => i.sequential as f64,
            _ => 0.0,
        };
        let c = match class {
            Class::Alu => count * t.alu,
            Class::Mul => count * t.mul,
            Class::Div => count * t.div,
            Class::It => count * t.it,
            Class::Fpu => count * t.fpu,
            Class::FpuMac => count * t.fpu_mac,
            Class::FpuDiv => count * t.fpu_div,
            Class::Load | Class::FpuLoad => {
                pipelined += piped;
                count * t.load - piped * (t.load - t.load_pipelined)
                    + if pc {
                        i.taken as f64 * t.pc_load_refill
                    } else {
                        0.0
                    }
            }
            Class::Store | Class::FpuStore => {
                pipelined += piped;
                count * t.store - piped * (t.store - t.store_pipelined)
            }
            Class::LoadMulti | Class::StoreMulti | Class::FpuMulti => {
                count * (t.multi_base + t.multi_per_reg * regs as f64)
                    + if pc {
                        i.taken as f64 * t.pc_load_refill
                    } else {
                        0.0
                    }
            }
            Class::Branch | Class::Call => {
                let tk = i.taken.min(i.count) as f64;
                let full = if class == Class::Call {
                    t.call_taken
                } else {
                    t.branch_taken
                };
                tk * full + (count - tk) * t.branch_not_taken
            }
        };
        if matches!(class, Class::Branch | Class::Call) || pc {
            taken += i.taken.min(i.count) as f64;
        }
        let e = per_class.entry(class).or_default();
        e.0 += count;
        e.1 += c;
    }
    // Dual issue: along each straight run, an instruction entered from its predecessor pairs
    // with it when neither is paired already, the second does not read the first's result,
    // and at most one of them uses the load/store or multiply pipe.
    let mut saved = 0.0;
    if t.dual_issue {
        let mut order: Vec<usize> = (0..mix.insns.len()).collect();
        order.sort_by_key(|&k| mix.insns[k].addr);
        let mut paired = vec![false; mix.insns.len()];
        let pairable = |c: Class| matches!(c, Class::Alu | Class::Mul | Class::Load | Class::Store);
        let heavy = |c: Class| matches!(c, Class::Mul | Class::Load | Class::Store);
        for &k in &order {
            let Some(p) = pred(k) else { continue };
            let (a, b) = (classes[p].0, classes[k].0);
            if paired[p] || !pairable(a) || !pairable(b) || (heavy(a) && heavy(b)) {
                continue;
            }
            let dst = match a {
                Class::Store => None,
                _ => operands(&mix.insns[p].disas).0,
            };
            let (_, srcs) = operands(&mix.insns[k].disas);
            let (dst_b, _) = operands(&mix.insns[k].disas);
            let reads_first = dst
                .as_ref()
                .is_some_and(|d| srcs.contains(d) || dst_b.as_ref() == Some(d));
            if reads_first {
                continue;
            }
            paired[k] = true;
            saved += mix.insns[k].sequential as f64;
        }
    }
    let flash_reads: f64 = mix.insns.iter().map(|i| i.flash_reads as f64).sum();
    let flash_misses: f64 = mix.insns.iter().map(|i| i.flash_misses as f64).sum();
    let flash_cycles = flash.map_or(0.0, |f| flash_misses * f.miss_cycles as f64);
    let instructions: f64 = per_class.values().map(|v| v.0).sum();
    let core_cycles: f64 = per_class.values().map(|v| v.1).sum();
    Ok(CycleEstimate {
        core: core.to_string(),
        instructions: instructions / n,
        cycles: (core_cycles - saved + flash_cycles) / n,
        by_class: per_class
            .into_iter()
            .map(|(class, (i, c))| ClassCycles {
                class,
                instructions: i / n,
                cycles: c / n,
            })
            .collect(),
        taken_branches: taken / n,
        pipelined_accesses: pipelined / n,
        flash_reads: flash_reads / n,
        flash_misses: flash_misses / n,
        flash_cycles: flash_cycles / n,
        dual_issue_saved: saved / n,
        core_source: t.source.to_string(),
        flash_source: flash.map(|f| f.source.clone()),
    })
}

/// The plugin: `NAS_QEMU_MIX`, else beside the running executable (or one directory up, for
/// test binaries under `target/*/deps`). `None` with the reason when it cannot be found.
pub fn plugin_path() -> std::result::Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("NAS_QEMU_MIX") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("NAS_QEMU_MIX={} is not a file", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let found = [Some(dir.as_path()), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join(PLUGIN_FILE))
        .find(|p| p.is_file());
    found.ok_or_else(|| {
        format!(
            "the QEMU plugin {PLUGIN_FILE} is not beside {} (`cargo build --release` builds \
                 it with nas; or set NAS_QEMU_MIX)",
            exe.display()
        )
    })
}

/// Where counting starts and stops, and the regions to tell accesses apart by.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The kernel's entry: counting starts (one inference) each time it executes.
    pub on: u64,
    /// Counting stops at the first instruction inside one of these (where the kernel returns
    /// to).
    pub off: Vec<(u64, u64)>,
    /// Never counted (the harness, whose timer interrupt may come during an inference).
    pub skip: Vec<(u64, u64)>,
    pub flash: (u64, u64),
    pub ram: (u64, u64),
    /// Inferences to count (the first ones; 0: all of the run).
    pub inferences: u64,
}

/// Run `elf` on `machine` with the plugin and read the mix it records.
pub fn run(
    elf: &Path,
    machine: &str,
    plugin: &Path,
    gate: &Gate,
    flash: Option<&FlashTiming>,
    timeout: Duration,
    workdir: &Path,
) -> Result<Mix> {
    let out = workdir.join(format!("mix-{machine}.txt"));
    let _ = std::fs::remove_file(&out);
    let r = |(a, b): (u64, u64)| format!("{a:x}-{b:x}");
    let (line, lines) = flash.map_or((16, 0), |f| (f.cache_line_bytes.max(1), f.cache_lines));
    let plugin_arg = format!(
        "{},out={},on={:x},off={},skip={},flash={},ram={},line={line},lines={lines},max={}",
        plugin.display(),
        out.display(),
        gate.on,
        gate.off.iter().map(|&x| r(x)).collect::<Vec<_>>().join(":"),
        gate.skip
            .iter()
            .map(|&x| r(x))
            .collect::<Vec<_>>()
            .join(":"),
        r(gate.flash),
        r(gate.ram),
        gate.inferences,
    );
    let mut args = super::machine_args(machine, elf)?;
    args.extend(["-plugin".to_string(), plugin_arg]);
    let log = std::fs::File::create(workdir.join(format!("mix-{machine}.log")))?;
    let mut child = Command::new(QEMU)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {QEMU} ({e}); {INSTALL_HINT}"))?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("QEMU with the instruction-mix plugin ran past {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&out).with_context(|| {
        format!(
            "the instruction-mix plugin wrote nothing ({}; QEMU's output in {})",
            out.display(),
            workdir.join(format!("mix-{machine}.log")).display()
        )
    })?;
    Mix::parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_from_disassembly() {
        let c = |d: &str| classify(d).0;
        assert_eq!(c("smlad r7, r3, sb, r5"), Class::Mul);
        assert_eq!(c("smmulr r0, r1, r2"), Class::Mul);
        assert_eq!(c("muls r0, r1, r0"), Class::Mul);
        assert_eq!(c("sxtb16 r6, r6"), Class::Alu);
        assert_eq!(c("subs r0, r0, #1"), Class::Alu);
        assert_eq!(c("ldr r6, [r1, #-0x14]"), Class::Load);
        assert_eq!(c("ldrb.w r3, [r0], #1"), Class::Load);
        assert_eq!(c("strh r2, [r1]"), Class::Store);
        assert_eq!(c("bne #0x800072e"), Class::Branch);
        assert_eq!(c("b.w #0x8000100"), Class::Branch);
        assert_eq!(c("bl #0x8000100"), Class::Call);
        assert_eq!(c("bx lr"), Class::Branch);
        assert_eq!(c("ite ge"), Class::It);
        assert_eq!(c("vfma.f32 s0, s1, s2"), Class::FpuMac);
        assert_eq!(c("vldr s0, [r0, #4]"), Class::FpuLoad);
        assert_eq!(c("vadd.f32 s0, s0, s1"), Class::Fpu);
        assert_eq!(
            classify("push {r4, r5, r6, r7, lr}"),
            (Class::StoreMulti, 5, false)
        );
        assert_eq!(classify("pop {r4-r7, pc}"), (Class::LoadMulti, 5, true));
        assert_eq!(classify("ldm.w r0, {r1, r2}"), (Class::LoadMulti, 2, false));
        assert_eq!(classify("vpush {d8, d9}").0, Class::FpuMulti);
        assert_eq!(classify("sdiv r0, r1, r2").0, Class::Div);
        // `bls`, `blt`, `ble` are conditional branches, not calls.
        assert_eq!(c("bls #0x10"), Class::Branch);
        assert_eq!(c("blt #0x10"), Class::Branch);
        assert_eq!(c("ble #0x10"), Class::Branch);
    }

    fn insn(addr: u64, size: u64, count: u64, seq: u64, taken: u64, disas: &str) -> InsnStat {
        InsnStat {
            addr,
            size,
            count,
            sequential: seq,
            taken,
            flash_reads: 0,
            flash_writes: 0,
            ram_reads: 0,
            ram_writes: 0,
            other_accesses: 0,
            flash_misses: 0,
            disas: disas.into(),
        }
    }

    /// A loop of two loads, an add, a decrement and a branch, 10 times, then a return, by hand
    /// on the M4: loads 2 + 1 (pipelined), ALU 1 + 1, branch taken 3 (9 times) or 1, return 3.
    #[test]
    fn m4_loop_by_hand() {
        let mix = Mix {
            inferences: 1,
            insns: vec![
                insn(0x100, 2, 1, 0, 0, "movs r1, #0xa"),
                insn(0x102, 2, 10, 1, 0, "ldr r2, [r0]"),
                insn(0x104, 2, 10, 10, 0, "ldr r3, [r0, #4]"),
                insn(0x106, 2, 10, 10, 0, "adds r2, r2, r3"),
                insn(0x108, 2, 10, 10, 0, "subs r1, #1"),
                insn(0x10a, 2, 10, 10, 9, "bne #0x102"),
                insn(0x10c, 2, 1, 1, 1, "bx lr"),
            ],
        };
        let e = estimate(&mix, "cortex-m4", None).unwrap();
        let by_hand = 1.0 + 10.0 * (2.0 + 1.0 + 1.0 + 1.0) + 9.0 * 3.0 + 1.0 + 3.0;
        assert_eq!(e.cycles, by_hand);
        assert_eq!(e.instructions, 52.0);
        assert_eq!(e.pipelined_accesses, 10.0);
        assert_eq!(e.taken_branches, 10.0);
        // On the M0+: no pipelining, taken branches 2.
        let e = estimate(&mix, "cortex-m0plus", None).unwrap();
        assert_eq!(
            e.cycles,
            1.0 + 10.0 * (2.0 + 2.0 + 1.0 + 1.0) + 9.0 * 2.0 + 1.0 + 2.0
        );
    }

    #[test]
    fn flash_misses_cost_the_wait_states() {
        let mut i = insn(0x100, 4, 8, 0, 0, "ldr r0, [r1], #4");
        (i.flash_reads, i.flash_misses) = (8, 2);
        let mix = Mix {
            inferences: 2,
            insns: vec![i],
        };
        let f = FlashTiming {
            wait_states: 2,
            miss_cycles: 2,
            cache_line_bytes: 16,
            cache_lines: 8,
            source: String::new(),
        };
        let e = estimate(&mix, "cortex-m4", Some(&f)).unwrap();
        assert_eq!((e.flash_misses, e.flash_cycles), (1.0, 2.0));
        assert_eq!(e.cycles, (8.0 * 2.0 + 4.0) / 2.0);
    }

    #[test]
    fn parse_round_trip_and_errors() {
        let text = "inferences 3\n8000790 2 30 30 27 0 0 0 0 0 0 0 ; bne #0x800072e\n";
        let m = Mix::parse(text).unwrap();
        assert_eq!(m.inferences, 3);
        assert_eq!(m.insns[0].taken, 27);
        assert_eq!(m.insns[0].disas, "bne #0x800072e");
        assert!(Mix::parse("").is_err());
        assert!(Mix::parse("inferences 1\nnonsense\n").is_err());
    }
}
