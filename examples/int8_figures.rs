//! Figures of the int8 kernels, measured with `nas verify`'s ELF analysis and QEMU counts.
//!
//! ```text
//! cargo run --release --example int8_figures                 # f32 vs int8 on the F401RE's M4
//! cargo run --release --example int8_figures -- --code-size  # int8 code bytes, every profile
//! ```
//!
//! The first prints, for the seed's smart start and the README's ISCX winner
//! (`examples/specs/iscx-f401re-winner.json`), instructions per inference and per MAC, flash and
//! arena in float32 and in int8 (the README's table). The second prints, for 14 networks on
//! every shipped profile, the int8 C kernel's code bytes beside the plan's code-size features:
//! the data the `[code_size_int8]` lines of `targets/*.toml` are fitted to.
//!
//! Networks get random weights; int8 calibration uses ISCX training samples and the firmware
//! runs 4 ISCX test samples when `../shared/data` has them, else synthetic ones. Needs `arm-none-eabi-gcc`, newlib and
//! `qemu-system-arm`.

use anyhow::{Context, Result};
use nas::firmware::{self, KernelReport, Options, Samples};
use nas::net::{Block, NetSpec, Padding, PoolKind, SearchSpace};
use nas::quant::{ptq, CalibrationMethod};
use nas::target::Target;
use nas::weights::Weights;
use rand::SeedableRng;
use std::sync::Arc;

/// Training samples the activation ranges are calibrated on.
const CALIBRATION: usize = 300;

/// ISCX training samples to calibrate on and test samples to run, when the shared data is
/// there; else synthetic ones.
fn data() -> (nas::data::Dataset, Samples) {
    let dir = nas::data::shared_data_dir().join("iscx-vpn2016-12class-sessionl7");
    match nas::data::load_dir(&dir, &nas::data::LoadOptions::default()) {
        Ok(s) => {
            let n = s.test.n();
            let inputs = (0..4).map(|i| s.test.sample(i * n / 4).to_vec()).collect();
            let samples = Samples {
                source: "4 ISCX test samples".into(),
                inputs,
                labels: None,
            };
            (s.train, samples)
        }
        Err(e) => {
            eprintln!("note: synthetic samples ({e})");
            (
                nas::data::synthetic(CALIBRATION, 784, 12, 1),
                Samples::synthetic(4, 784),
            )
        }
    }
}

/// `spec` with random weights on `target`, verified in int8 (emulated when `emulate`).
fn verify_int8(
    spec: &NetSpec,
    target: &Target,
    (calib, samples): &(nas::data::Dataset, Samples),
    emulate: bool,
) -> Result<KernelReport> {
    let weights = Weights::random(spec, 1);
    let mut opts = Options::new(samples.clone());
    opts.emulate = emulate;
    let q = ptq(
        spec,
        &weights,
        calib,
        CALIBRATION,
        CalibrationMethod::MinMax,
    )?;
    opts.quant = Some(Arc::new(q));
    firmware::verify(spec, &weights, target, &target.limits(), &opts)
        .with_context(|| format!("{} on {}", spec.summary(), target.name))
}

fn f32_vs_int8(data: &(nas::data::Dataset, Samples)) -> Result<()> {
    let winner = nas::cli::read_spec(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/specs/iscx-f401re-winner.json"),
    )?;
    let target = nas::target::resolve("stm32f401re")?;
    for (name, spec) in [
        ("smart start", NetSpec::smart_start(784, 12)),
        ("ISCX winner", winner),
    ] {
        let opts = Options::new(data.1.clone());
        let f = firmware::verify(
            &spec,
            &Weights::random(&spec, 1),
            &target,
            &target.limits(),
            &opts,
        )?;
        let q = verify_int8(&spec, &target, data, true)?;
        let (fe, qe) = (
            f.emulation.context("the float firmware was not emulated")?,
            q.emulation.context("the int8 firmware was not emulated")?,
        );
        println!(
            "{name}: f32 {} instructions ({:.2}/MAC), flash {} B, arena {} B; int8 {} ({:.2}/MAC), \
             flash {} B, arena {} B; {:.2}x fewer instructions",
            fe.instructions_per_inference,
            fe.instructions_per_mac,
            f.measured.flash_bytes,
            f.breakdown.arena_bytes,
            qe.instructions_per_inference,
            qe.instructions_per_mac,
            q.measured.flash_bytes,
            q.breakdown.arena_bytes,
            fe.instructions_per_inference as f64 / qe.instructions_per_inference as f64
        );
    }
    Ok(())
}

/// The smart start, a 5-block network with both poolings, and 12 others made from the smart
/// start by the search's own mutations.
fn survey_networks() -> Vec<NetSpec> {
    let five = NetSpec::from_blocks(
        784,
        12,
        vec![
            Block::new(16, 7, 1, Padding::Valid),
            Block::new(24, 5, 2, Padding::Same).with_pool(PoolKind::Max, 2),
            Block::new(32, 3, 3, Padding::Valid).with_pool(PoolKind::Avg, 3),
            Block::new(24, 4, 4, Padding::Same),
            Block::new(16, 2, 6, Padding::Valid),
        ],
    );
    let space = SearchSpace::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(300);
    let mut nets = vec![NetSpec::smart_start(784, 12), five];
    while nets.len() < 14 {
        let mut spec = NetSpec::smart_start(784, 12);
        for _ in 0..nets.len() % 5 + 1 {
            spec = nas::search::mutate(&spec, &mut rng, &space);
        }
        if spec.validate().is_ok() && !nets.contains(&spec) {
            nets.push(spec);
        }
    }
    nets
}

fn code_size_survey(data: &(nas::data::Dataset, Samples)) -> Result<()> {
    let nets = survey_networks();
    for target in nas::target::builtin() {
        for spec in &nets {
            let r = verify_int8(spec, &target, data, false)?;
            let f = nas::net::int8::code_features(&nas::net::plan::lower(spec)?);
            println!(
                "{} layers {} by_filter {} generic {} avg {} max {} edges {} partial {} code {} flash {} estimate {}",
                target.name,
                r.layers,
                f.by_filter,
                f.generic,
                f.avg_pool,
                f.max_pool,
                f.edges,
                f.partial_group,
                r.measured.code_bytes,
                r.measured.flash_bytes,
                r.estimate.flash_bytes
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let code_size = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--code-size") => true,
        Some(other) => {
            anyhow::bail!("usage: int8_figures [--code-size] (unknown argument {other})")
        }
    };
    firmware::check_toolchain()?;
    let data = data();
    if code_size {
        code_size_survey(&data)
    } else {
        f32_vs_int8(&data)
    }
}
