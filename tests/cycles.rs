//! The cycle estimate's counting path on real code: small assembly snippets, assembled by
//! arm-none-eabi-gcc, run under QEMU with nas's instruction-mix plugin, classified and charged
//! by `nas::emulate::mix`, against cycles worked out by hand from the cores' manuals.

mod common;

use nas::emulate::mix::{self, Gate};
use nas::target::FlashTiming;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A bare image: a vector table whose reset handler calls `snippet` then exits through
/// semihosting. `body` is the snippet (ending in `bx lr`), `data` goes after it.
fn build(dir: &Path, name: &str, cpu: &str, origin: u64, body: &str, data: &str) -> PathBuf {
    let src = dir.join(format!("{name}.S"));
    let asm = format!(
        r#"
    .syntax unified
    .thumb
    .section .text
    .word 0x20001000
    .word reset + 1
    .balign 4
    .thumb_func
    .global reset
reset:
    bl snippet
    movs r0, #0x18
    movs r1, #0
    bkpt #0xab
1:  b 1b
    .balign 16
    .thumb_func
    .global snippet
snippet:
{body}
    .balign 16
{data}
    .global reset_end
reset_end:
"#
    );
    std::fs::write(&src, asm).unwrap();
    let elf = dir.join(format!("{name}.elf"));
    let out = Command::new("arm-none-eabi-gcc")
        .args([
            &format!("-mcpu={cpu}"),
            "-mthumb",
            "-nostdlib",
            "-nostartfiles",
            &format!("-Wl,-Ttext={origin:#x}"),
            "-Wl,-e,reset",
            "-o",
        ])
        .arg(&elf)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    elf
}

fn symbol(elf: &Path, name: &str) -> u64 {
    let out = Command::new("arm-none-eabi-nm").arg(elf).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.ends_with(&format!(" {name}")))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    u64::from_str_radix(line.split_whitespace().next().unwrap(), 16).unwrap()
}

/// Cycles of `snippet` on `core`, run on `machine` through the plugin.
fn cycles(
    machine: &str,
    core: &str,
    cpu: &str,
    origin: u64,
    body: &str,
    data: &str,
    flash: Option<&FlashTiming>,
) -> mix::CycleEstimate {
    common::require_arm_tools();
    let plugin = mix::plugin_path().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let elf = build(dir.path(), "snippet", cpu, origin, body, data);
    let reset = symbol(&elf, "reset");
    let gate = Gate {
        on: symbol(&elf, "snippet"),
        // The snippet returns into the reset handler.
        off: vec![(reset, symbol(&elf, "snippet"))],
        skip: vec![(0, 0)],
        flash: (origin, origin + (1 << 20)),
        ram: (0x2000_0000, 0x2002_0000),
        inferences: 1,
    };
    let m = mix::run(
        &elf,
        machine,
        &plugin,
        &gate,
        flash,
        Duration::from_secs(30),
        dir.path(),
    )
    .unwrap();
    assert_eq!(m.inferences, 1);
    mix::estimate(&m, core, flash).unwrap()
}

/// Thumb-1 only, so the same code runs on every core.
const LOOP: &str = r#"
    movs r0, #1
    lsls r0, r0, #29      @ r0 = 0x20000000 (SRAM)
    movs r1, #10
1:  ldr r2, [r0]
    ldr r3, [r0, #4]
    adds r2, r2, r3
    subs r1, r1, #1
    bne 1b
    bx lr
"#;

#[test]
fn m4_loop_by_hand() {
    let e = cycles(
        "netduinoplus2",
        "cortex-m4",
        "cortex-m4",
        0x0800_0000,
        LOOP,
        "",
        None,
    );
    // 3 ALU; per iteration a load (2: after an ALU or the branch), a pipelined load (1), two
    // ALU; the branch taken 9 times (1 + P, P = 2) and falls through once (1); the return 3.
    let by_hand = 3.0 + 10.0 * (2.0 + 1.0 + 1.0 + 1.0) + 9.0 * 3.0 + 1.0 + 3.0;
    assert_eq!(e.instructions, 3.0 + 50.0 + 1.0);
    assert_eq!(e.cycles, by_hand, "{e:#?}");
    assert_eq!(e.taken_branches, 10.0);
    assert_eq!(e.pipelined_accesses, 10.0);
}

#[test]
fn m0plus_loop_by_hand() {
    let e = cycles(
        "mps2-an385",
        "cortex-m0plus",
        "cortex-m0plus",
        0,
        LOOP,
        "",
        None,
    );
    // Loads 2 each (no pipelining), taken branches 2, the return 2.
    let by_hand = 3.0 + 10.0 * (2.0 + 2.0 + 1.0 + 1.0) + 9.0 * 2.0 + 1.0 + 2.0;
    assert_eq!(e.cycles, by_hand, "{e:#?}");
}

#[test]
fn m4_straight_line_with_multiply_and_store() {
    let body = r#"
    movs r0, #1
    lsls r0, r0, #29      @ SRAM
    movs r1, #3
    muls r1, r1, r1
    str r1, [r0]
    ldr r2, [r0]
    push {r4, r5, r6}
    pop {r4, r5, r6}
    bx lr
"#;
    let e = cycles(
        "netduinoplus2",
        "cortex-m4",
        "cortex-m4",
        0x0800_0000,
        body,
        "",
        None,
    );
    // 3 ALU, MUL 1, STR 2, LDR pipelined behind it 1, PUSH and POP 1 + 3 each, return 3.
    assert_eq!(e.cycles, 3.0 + 1.0 + 2.0 + 1.0 + 4.0 + 4.0 + 3.0, "{e:#?}");
}

#[test]
fn m4_flash_reads_through_the_art_cache() {
    let body = r#"
    adr r0, table
    ldr r1, [r0]
    ldr r2, [r0, #4]
    ldr r3, [r0, #8]
    ldr r1, [r0, #12]
    ldr r2, [r0, #16]
    ldr r3, [r0, #4]
    bx lr
"#;
    let data = "table:\n    .word 1, 2, 3, 4, 5, 6, 7, 8\n";
    let f = FlashTiming {
        wait_states: 2,
        miss_cycles: 2,
        cache_line_bytes: 16,
        cache_lines: 8,
        source: "test".into(),
    };
    let e = cycles(
        "netduinoplus2",
        "cortex-m4",
        "cortex-m4",
        0x0800_0000,
        body,
        data,
        Some(&f),
    );
    // ADR 1, the first load 2, five pipelined loads 1 each, the return 3; the table's two
    // 16-byte lines miss once each (the last load hits line 0 again): 2 × 2 wait states.
    assert_eq!(e.flash_reads, 6.0);
    assert_eq!(e.flash_misses, 2.0);
    assert_eq!(e.cycles, 1.0 + 2.0 + 5.0 + 3.0 + 4.0, "{e:#?}");
}

#[test]
fn m7_dual_issue_pairs_independent_neighbours() {
    let body = r#"
    adds r1, r1, #1
    adds r2, r2, #1
    adds r3, r3, #1
    adds r3, r3, #1
    bx lr
"#;
    let e = cycles("mps2-an500", "cortex-m7", "cortex-m7", 0, body, "", None);
    // Four ALU ops and a taken return (2): the first two pair (one cycle saved); the third
    // pairs with neither the second (taken) nor the fourth (which reads its result).
    assert_eq!(e.dual_issue_saved, 1.0, "{e:#?}");
    assert_eq!(e.cycles, 4.0 + 2.0 - 1.0);
}

/// The cost model's latency (its instruction model × the profile's cycles per instruction) is
/// the cycle estimate within the instruction model's stated error and the cycles per
/// instruction's spread (±5.3 % over the reference networks), on a network neither saw with
/// those weights.
#[test]
fn cost_model_latency_follows_the_cycle_estimate() {
    use nas::firmware::{Options, Samples};
    use nas::net::NetSpec;
    common::require_arm_tools();
    for (target, int8) in [
        ("stm32f401re", true),
        ("stm32f401re", false),
        ("stm32f746ng", true),
    ] {
        let t = nas::target::resolve(target).unwrap();
        let spec = NetSpec::smart_start(784, 12);
        let w = nas::weights::Weights::random(&spec, 3);
        let mut opts = Options::new(Samples::synthetic(2, 784));
        if int8 {
            let calib = nas::data::synthetic(200, 784, 12, 1);
            let q = nas::quant::ptq(
                &spec,
                &w,
                &calib,
                200,
                nas::quant::CalibrationMethod::MinMax,
            )
            .unwrap();
            opts.quant = Some(std::sync::Arc::new(q));
        }
        let r = nas::firmware::verify(&spec, &w, &t, &t.limits(), &opts).unwrap();
        let em = r.emulation.expect("emulated");
        let (model, cycles) = (r.estimate.latency_ms.unwrap(), em.cycle_ms.unwrap());
        let err = 100.0 * (model - cycles).abs() / cycles;
        let bound = r.estimate.instructions_worst_error_pct.unwrap() + 5.3;
        eprintln!("{target} int8={int8}: cost model {model:.3} ms, cycle estimate {cycles:.3} ms ({err:.1} %)");
        assert!(
            err <= bound,
            "{target}: {model} ms vs {cycles} ms ({err:.1} % > {bound} %)"
        );
    }
}
