//! The cycle estimate of `nas verify` (QEMU's executed instruction mix, charged with each
//! core's timings and the profile's flash wait states) for the reference networks, beside the
//! QEMU instruction counts.
//!
//! ```text
//! cargo build --release            # builds the QEMU plugin too (target/release/libnas_qemu_mix.so)
//! cargo run --release --example cycle_figures
//! ```
//!
//! For the seed's smart start, the README's ISCX winner and `examples/specs/paper-sized.json`
//! (the stand-in for the paper's int8 1D-CNN, which ST's X-CUBE-AI ran at 1.92 cycles per MAC
//! on a NUCLEO-F401RE and 1.35 on a 32F746G-DISCO): float32 and int8 on the F401RE's M4, int8
//! on the F746's M7 and the G071's M0+ where the network fits the chip. Networks get random
//! weights; int8 calibration and the firmware's samples come from ISCX when `../shared/data`
//! has it. Needs `arm-none-eabi-gcc`, newlib and `qemu-system-arm`.

use anyhow::{Context, Result};
use nas::firmware::{self, KernelReport, Options, Samples};
use nas::net::NetSpec;
use nas::quant::{ptq, CalibrationMethod};
use nas::weights::Weights;
use std::sync::Arc;

fn spec(file: &str) -> Result<NetSpec> {
    nas::cli::read_spec(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
}

fn print(name: &str, dtype: &str, r: &KernelReport) -> Result<()> {
    let Some(em) = &r.emulation else {
        println!(
            "{name} {dtype} on {}: not emulated ({})",
            r.target,
            r.emulation_skipped.as_deref().unwrap_or("?")
        );
        return Ok(());
    };
    let c = em
        .cycles
        .as_ref()
        .with_context(|| format!("no cycle estimate: {:?}", em.cycles_skipped))?;
    println!(
        "{name} {dtype} on {} ({}): {} MACs, {} instructions ({:.2}/MAC), estimated {:.0} cycles \
         ({:.2}/MAC, {:.2} ms at the profile's clock); flash {} B",
        r.target,
        r.core,
        em.executed_macs,
        em.instructions_per_inference,
        em.instructions_per_mac,
        c.cycles,
        em.cycles_per_mac.unwrap_or(0.0),
        em.cycle_ms.unwrap_or(0.0),
        r.measured.flash_bytes
    );
    let parts: Vec<String> = c
        .by_class
        .iter()
        .map(|k| format!("{:?} {:.0}/{:.0}", k.class, k.instructions, k.cycles))
        .collect();
    println!(
        "  class instructions/cycles: {}; flash reads {:.0}, misses {:.0} ({:.0} cycles), taken \
         branches {:.0}, dual issue saved {:.0}",
        parts.join(", "),
        c.flash_reads,
        c.flash_misses,
        c.flash_cycles,
        c.taken_branches,
        c.dual_issue_saved
    );
    Ok(())
}

fn main() -> Result<()> {
    let dir = nas::data::shared_data_dir().join("iscx-vpn2016-12class-sessionl7");
    let (calib, samples) = match nas::data::load_dir(&dir, &nas::data::LoadOptions::default()) {
        Ok(s) => {
            let n = s.test.n();
            let inputs = (0..2).map(|i| s.test.sample(i * n / 2).to_vec()).collect();
            (
                s.train,
                Samples {
                    source: "2 ISCX test samples".into(),
                    inputs,
                    labels: None,
                },
            )
        }
        Err(e) => {
            eprintln!("note: synthetic samples ({e})");
            (
                nas::data::synthetic(300, 784, 12, 1),
                Samples::synthetic(2, 784),
            )
        }
    };
    let nets = [
        ("smart start", NetSpec::smart_start(784, 12)),
        (
            "ISCX winner",
            spec("examples/specs/iscx-f401re-winner.json")?,
        ),
        ("paper-sized", spec("examples/specs/paper-sized.json")?),
    ];
    for (name, spec) in &nets {
        let weights = Weights::random(spec, 1);
        let q = Arc::new(ptq(spec, &weights, &calib, 300, CalibrationMethod::MinMax)?);
        let f401 = nas::target::resolve("stm32f401re")?;
        let opts = Options::new(samples.clone());
        print(
            name,
            "f32",
            &firmware::verify(spec, &weights, &f401, &f401.limits(), &opts)?,
        )?;
        for target in ["stm32f401re", "stm32f746ng", "stm32g071rb"] {
            let t = nas::target::resolve(target)?;
            let mut opts = Options::new(samples.clone());
            opts.quant = Some(q.clone());
            opts.timeout = std::time::Duration::from_secs(600);
            print(
                name,
                "int8",
                &firmware::verify(spec, &weights, &t, &t.limits(), &opts)?,
            )?;
        }
    }
    Ok(())
}
