//! The cycle estimate of `nas verify` (QEMU's executed instruction mix, charged with each
//! core's timings and the profile's flash wait states) for the reference networks, beside the
//! QEMU instruction counts.
//!
//! ```text
//! cargo build --release            # builds the QEMU plugin too (target/release/libnas_qemu_mix.so)
//! cargo run --release --example cycle_figures
//! cargo run --release --example cycle_figures -- --cpi   # cycles per instruction, every profile
//! cargo run --release --example cycle_figures -- --rust  # the Rust kernels instead of the C ones
//! cargo run --release --example cycle_figures -- --layers  # issue 19's layers a, b, c alone
//! NAS_FIGURES_KEEP=/tmp/keep cargo run --release --example cycle_figures   # keep each build
//! ```
//!
//! `--layers` prints, on the F401RE's M4 in float32 and int8, the three single-conv networks
//! the kernel work is measured on (each conv then global average pooling and a 12-class dense
//! layer, per MAC of the whole network, synthetic inputs): layer a (784 × 1 → 27 filters, k3
//! s4), b (49 × 27 → 114, k4 s4) and c (196 × 27 → 114, k4 s1), each the network's first layer
//! (in float it reads raw bytes). `--rust` combines with it.
//!
//! `NAS_FIGURES_KEEP` keeps every firmware build (ELF, map, QEMU's instruction mix) under
//! `<dir>/<network>-<dtype>-<target>` for profiling.
//!
//! `--cpi` prints, for every shipped profile with an emulator, the estimated cycles per
//! executed instruction of the float and int8 C kernels over the three networks (those that fit
//! the chip): the `cycles_per_instruction` of the profile's `[latency]` and `[latency_int8]`,
//! which turn the instruction models into the cost model's latency.
//!
//! For the seed's smart start, the README's ISCX winner and `examples/specs/paper-sized.json`
//! (the stand-in for the paper's int8 1D-CNN, which ST's X-CUBE-AI ran at 1.92 cycles per MAC
//! on a NUCLEO-F401RE and 1.35 on a 32F746G-DISCO): float32 and int8 on the F401RE's M4, int8
//! on the F746's M7 and the G071's M0+ where the network fits the chip. Networks get random
//! weights; int8 calibration and the firmware's samples come from ISCX when `../shared/data`
//! has it. Needs `arm-none-eabi-gcc`, newlib and `qemu-system-arm`.

use anyhow::{Context, Result};
use nas::firmware::{self, KernelReport, Lang, Options, Samples};
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
        "{name} {dtype} {:?} on {} ({}): {} MACs, {} instructions ({:.2}/MAC), estimated {:.0} cycles \
         ({:.2}/MAC, {:.2} ms at the profile's clock); flash {} B; bit-exact {}/{}",
        r.lang,
        r.target,
        r.core,
        em.executed_macs,
        em.instructions_per_inference,
        em.instructions_per_mac,
        c.cycles,
        em.cycles_per_mac.unwrap_or(0.0),
        em.cycle_ms.unwrap_or(0.0),
        r.measured.flash_bytes,
        em.bit_exact,
        em.samples
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

/// Where to keep the build of `name` in `dtype` on `target`, when `NAS_FIGURES_KEEP` says.
fn keep(name: &str, dtype: &str, target: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("NAS_FIGURES_KEEP")?;
    Some(std::path::PathBuf::from(dir).join(format!("{}-{dtype}-{target}", name.replace(' ', "-"))))
}

/// Cycles per instruction of the float and int8 kernels on every profile.
fn cpi(nets: &[(&str, NetSpec)], calib: &nas::data::Dataset, samples: &Samples) -> Result<()> {
    for t in nas::target::builtin() {
        if t.emulator.is_none() {
            println!("{}: no emulator", t.name);
            continue;
        }
        for int8 in [false, true] {
            let mut ratios = Vec::new();
            for (name, spec) in nets {
                let weights = Weights::random(spec, 1);
                let mut opts = Options::new(samples.clone());
                opts.timeout = std::time::Duration::from_secs(900);
                if int8 {
                    opts.quant = Some(Arc::new(ptq(
                        spec,
                        &weights,
                        calib,
                        300,
                        CalibrationMethod::MinMax,
                    )?));
                }
                let r = firmware::verify(spec, &weights, &t, &t.limits(), &opts)?;
                match r.emulation.as_ref().and_then(|e| e.cycles.as_ref()) {
                    Some(c) => {
                        println!(
                            "  {} {} {name}: {:.0} instructions, {:.0} cycles, {:.3} cycles/instruction",
                            t.name,
                            if int8 { "int8" } else { "f32" },
                            c.instructions,
                            c.cycles,
                            c.cycles / c.instructions
                        );
                        ratios.push(c.cycles / c.instructions);
                    }
                    None => println!(
                        "  {} {name}: no estimate ({})",
                        t.name,
                        r.emulation_skipped
                            .or(r.emulation.and_then(|e| e.cycles_skipped))
                            .unwrap_or_default()
                    ),
                }
            }
            if !ratios.is_empty() {
                let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
                let spread = ratios
                    .iter()
                    .map(|r| 100.0 * (r - mean).abs() / mean)
                    .fold(0.0, f64::max);
                println!(
                    "{} {}: cycles_per_instruction = {mean:.3} (±{spread:.1} % over {} networks)",
                    t.name,
                    if int8 { "[latency_int8]" } else { "[latency]" },
                    ratios.len()
                );
            }
        }
    }
    Ok(())
}

/// The single-conv network of `--layers`: a `len × ch` input, one `same` conv, GAP and dense.
fn layer(len: usize, ch: usize, filters: usize, kernel: usize, stride: usize) -> Result<NetSpec> {
    let mut spec = NetSpec::from_blocks(
        len,
        12,
        vec![nas::net::Block::new(
            filters,
            kernel,
            stride,
            nas::net::Padding::Same,
        )],
    );
    spec.input_channels = ch;
    spec.correct(&nas::net::SearchSpace::default());
    spec.validate()?;
    Ok(spec)
}

/// `--layers`: layers a, b and c on the F401RE in float32 and int8, in `lang`.
fn layers(lang: Lang) -> Result<()> {
    let f401 = nas::target::resolve("stm32f401re")?;
    for (name, spec) in [
        ("layer a", layer(784, 1, 27, 3, 4)?),
        ("layer b", layer(49, 27, 114, 4, 4)?),
        ("layer c", layer(196, 27, 114, 4, 1)?),
    ] {
        let n_in = spec.input_len * spec.input_channels;
        let weights = Weights::random(&spec, 3);
        let calib = nas::data::synthetic(300, n_in, 12, 1);
        let q = Arc::new(ptq(
            &spec,
            &weights,
            &calib,
            300,
            CalibrationMethod::MinMax,
        )?);
        for quant in [None, Some(q)] {
            let mut opts = Options::new(Samples::synthetic(2, n_in));
            opts.lang = lang;
            let dtype = if quant.is_some() { "int8" } else { "f32" };
            opts.quant = quant;
            opts.build_dir = keep(name, dtype, "stm32f401re");
            print(
                name,
                dtype,
                &firmware::verify(&spec, &weights, &f401, &f401.limits(), &opts)?,
            )?;
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let lang = if std::env::args().any(|a| a == "--rust") {
        Lang::Rust
    } else {
        Lang::C
    };
    if std::env::args().any(|a| a == "--layers") {
        return layers(lang);
    }
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
    if std::env::args().any(|a| a == "--cpi") {
        return cpi(&nets, &calib, &samples);
    }
    for (name, spec) in &nets {
        let weights = Weights::random(spec, 1);
        let q = Arc::new(ptq(spec, &weights, &calib, 300, CalibrationMethod::MinMax)?);
        let f401 = nas::target::resolve("stm32f401re")?;
        let mut opts = Options::new(samples.clone());
        opts.lang = lang;
        opts.build_dir = keep(name, "f32", "stm32f401re");
        print(
            name,
            "f32",
            &firmware::verify(spec, &weights, &f401, &f401.limits(), &opts)?,
        )?;
        for target in ["stm32f401re", "stm32f746ng", "stm32g071rb"] {
            let t = nas::target::resolve(target)?;
            let mut opts = Options::new(samples.clone());
            opts.lang = lang;
            opts.quant = Some(q.clone());
            opts.build_dir = keep(name, "int8", target);
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
