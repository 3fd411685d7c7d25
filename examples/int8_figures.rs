//! Figures of the int8 kernels, measured with `nas verify`'s ELF analysis and QEMU counts.
//!
//! ```text
//! cargo run --release --example int8_figures                 # f32 vs int8 on the F401RE's M4
//! cargo run --release --example int8_figures -- --code-size  # int8 code bytes, every profile
//! ```
//!
//! The first prints, for the seed's smart start and the README's ISCX winner
//! (`examples/specs/iscx-f401re-winner.json`), instructions per inference and per MAC, flash and
//! arena in float32 and in int8 (the README's table). The second prints, for 20 networks on
//! every shipped profile, the int8 C kernel's code bytes beside the plan's code-size features
//! (DSP cores: with their column routines), and the least-squares `[code_size_int8]` lines of
//! `targets/*.toml` fitted to them with their largest error.
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

/// The smart start, a 5-block network with both poolings, 6 networks whose first conv is not
/// filter-outer, and 12 others made from the smart start by the search's own mutations.
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
    let b = |f, k, s, pad| Block::new(f, k, s, pad);
    // Networks whose first conv is not filter-outer (a row longer than one word), so that
    // the fit tells that term from the base, and networks that tell the column routines apart.
    let others = [
        vec![b(8, 5, 4, Padding::Same), b(30, 3, 2, Padding::Same)],
        vec![
            b(12, 7, 4, Padding::Valid).with_pool(PoolKind::Max, 2),
            b(25, 3, 1, Padding::Same).with_pool(PoolKind::Avg, 3),
        ],
        vec![b(16, 6, 6, Padding::Same)],
        vec![
            b(6, 9, 8, Padding::Same),
            b(13, 4, 2, Padding::Valid),
            b(40, 3, 1, Padding::Same).with_pool(PoolKind::Max, 3),
            b(21, 2, 1, Padding::Same),
        ],
        vec![
            b(10, 5, 2, Padding::Valid).with_pool(PoolKind::Avg, 2),
            b(20, 5, 2, Padding::Valid).with_pool(PoolKind::Avg, 2),
            b(36, 3, 2, Padding::Same),
        ],
        vec![b(64, 8, 8, Padding::Same), b(17, 2, 2, Padding::Same)],
        // Column routines apart: pooled convs only; unpooled only, of even and odd length;
        // both, with a partial group; a filter-outer conv with padded windows.
        vec![
            b(8, 5, 2, Padding::Valid).with_pool(PoolKind::Max, 2),
            b(16, 3, 1, Padding::Same).with_pool(PoolKind::Avg, 2),
        ],
        vec![b(8, 6, 4, Padding::Same), b(16, 3, 2, Padding::Same)],
        vec![b(12, 5, 4, Padding::Valid), b(20, 3, 1, Padding::Same)],
        vec![
            b(7, 5, 4, Padding::Same),
            b(11, 3, 1, Padding::Same).with_pool(PoolKind::Max, 3),
        ],
        vec![
            b(8, 5, 4, Padding::Same),
            b(16, 3, 1, Padding::Same).with_pool(PoolKind::Max, 3),
        ],
        vec![
            b(8, 3, 1, Padding::Same),
            b(16, 3, 2, Padding::Same).with_pool(PoolKind::Avg, 2),
        ],
        vec![
            b(5, 6, 4, Padding::Same),
            b(9, 2, 2, Padding::Valid).with_pool(PoolKind::Avg, 3),
        ],
        vec![b(13, 3, 2, Padding::Valid), b(6, 3, 1, Padding::Same)],
    ];
    let mut nets = vec![NetSpec::smart_start(784, 12), five];
    nets.extend(
        others
            .into_iter()
            .map(|blocks| NetSpec::from_blocks(784, 12, blocks)),
    );
    while nets.len() < 40 {
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
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for spec in &nets {
            let r = verify_int8(spec, &target, data, false)?;
            let f = nas::net::int8::code_features(&nas::net::plan::lower(spec)?, target.has_dsp());
            println!(
                "{} layers {} by_filter {} generic {} avg {} max {} edges {} partial {} columns {} rest_pair {} rest_single {} lone {} lone_rest {} plain_blocks {} plain_lone {} outer_edges {} partial_pooled {} pooled_blocks {} code {} flash {} estimate {}",
                target.name,
                r.layers,
                f.by_filter,
                f.generic,
                f.avg_pool,
                f.max_pool,
                f.edges,
                f.partial_group,
                f.columns,
                f.rest_pair,
                f.rest_single,
                f.lone,
                f.lone_rest,
                f.plain_blocks,
                f.plain_lone,
                f.outer_edges,
                f.partial_pooled,
                f.pooled_blocks,
                r.measured.code_bytes,
                r.measured.flash_bytes,
                r.estimate.flash_bytes
            );
            x.push([
                1.0,
                f.by_filter as f64,
                f.generic as f64,
                f.avg_pool as f64,
                f.max_pool as f64,
                f.edges as f64,
                f.partial_group as f64,
                f.columns as f64,
                f.rest_pair as f64,
                f.rest_single as f64,
                f.lone as f64,
                f.lone_rest as f64,
                f.plain_blocks as f64,
                f.plain_lone as f64,
                f.outer_edges as f64,
                f.partial_pooled as f64,
                f.pooled_blocks as f64,
            ]);
            y.push(r.measured.code_bytes as f64);
        }
        let c = least_squares(&x, &y).context("singular code-size fit")?;
        let c = c.map(f64::round);
        let worst = x
            .iter()
            .zip(&y)
            .map(|(r, yi)| (r.iter().zip(&c).map(|(a, b)| a * b).sum::<f64>() - yi).abs())
            .fold(0.0, f64::max);
        println!(
            "{}: least squares over {} networks, within {worst:.0} B",
            target.name,
            y.len()
        );
        println!("[code_size_int8]");
        for (key, v) in [
            "base_bytes",
            "by_filter_bytes",
            "conv_bytes",
            "avg_pool_bytes",
            "max_pool_bytes",
            "edge_bytes",
            "partial_group_bytes",
            "columns_bytes",
            "rest_pair_bytes",
            "rest_single_bytes",
            "lone_bytes",
            "lone_rest_bytes",
            "plain_blocks_bytes",
            "plain_lone_bytes",
            "outer_edge_bytes",
            "partial_pooled_bytes",
            "pooled_blocks_bytes",
        ]
        .iter()
        .zip(c)
        {
            println!("{key} = {v:.0}");
        }
    }
    Ok(())
}

/// Ordinary least squares of `y` on the columns of `x` (normal equations, Gaussian
/// elimination with partial pivoting), a column that is 0 throughout getting 0 (the M0+ has
/// no column routines); None when singular.
fn least_squares<const N: usize>(x: &[[f64; N]], y: &[f64]) -> Option<[f64; N]> {
    let mut a = [[0.0; N]; N];
    let mut b = [0.0; N];
    for j in 0..N {
        if x.iter().all(|r| r[j] == 0.0) {
            a[j][j] = 1.0;
        }
    }
    for (r, yi) in x.iter().zip(y) {
        for p in 0..N {
            for q in 0..N {
                a[p][q] += r[p] * r[q];
            }
            b[p] += r[p] * yi;
        }
    }
    for c in 0..N {
        let piv = (c..N).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[piv][c].abs() < 1e-9 {
            return None;
        }
        a.swap(c, piv);
        b.swap(c, piv);
        let (pivot, pb) = (a[c], b[c]);
        for (r, (row, br)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
            if r != c {
                let f = row[c] / pivot[c];
                for (v, p) in row.iter_mut().zip(&pivot).skip(c) {
                    *v -= f * p;
                }
                *br -= f * pb;
            }
        }
    }
    Some(std::array::from_fn(|j| b[j] / a[j][j]))
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
