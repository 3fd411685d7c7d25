//! Measure the generated C kernel's instructions per inference under QEMU (`nas verify` with
//! emulation) for a set of networks on every shipped profile with an emulator, and fit the
//! `[latency]` model of `targets/*.toml`:
//!
//! ```text
//! instructions ≈ per_mac · MACs of four-filter groups + per_single_mac · MACs of left-over
//!                filters + per_call · dot-product calls + per_output · conv outputs computed
//!                + per_layer · layers + base
//! ```
//!
//! (`nas::target::Latency`; the features come from `nas::net::cost::latency_features`)
//!
//! by non-negative least squares on the *relative* error (each network weighs the same,
//! whatever its size), and print for each profile the `[latency]` lines with the fit's worst
//! relative error.
//!
//! ```text
//! cargo run --release --example calibrate_latency                   # every profile
//! cargo run --release --example calibrate_latency -- stm32f401re    # some
//! cargo run --release --example calibrate_latency -- --int8         # the int8 kernel's [latency_int8]
//! ```
//!
//! For the int8 kernel the same features are fitted to its counts: it also takes filters four
//! at a time (one input word feeds four filters through dual 16-bit MACs), pays a
//! requantization per output and a call per window and group, so the model's terms hold with
//! other coefficients.
//!
//! Needs `arm-none-eabi-gcc`, newlib and `qemu-system-arm` (`apt-get install -y
//! gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm`).

use anyhow::{bail, Context, Result};
use nas::firmware::{self, Lang, Options, Samples};
use nas::net::cost::latency_features;
use nas::net::int8::latency_features_int8;
use nas::net::plan::lower;
use nas::net::{Block, NetSpec, Padding, PoolKind};
use nas::weights::Weights;
use std::sync::Arc;

/// The calibration networks: 1 to 5 blocks, narrow and wide, every kernel and stride the
/// search uses often, max and average pooling, all small enough for the smallest profile
/// (STM32G071RB: 25 K parameters, 32 KB RAM).
fn networks() -> Result<Vec<NetSpec>> {
    let b = |f, k, s, pad| Block::new(f, k, s, pad);
    let sets: Vec<Vec<Block>> = vec![
        vec![b(8, 3, 4, Padding::Same)],
        vec![b(27, 3, 4, Padding::Same)],
        vec![b(16, 5, 4, Padding::Valid).with_pool(PoolKind::Max, 2)],
        vec![b(8, 3, 4, Padding::Same), b(16, 3, 2, Padding::Same)],
        vec![
            b(12, 4, 4, Padding::Same),
            b(24, 3, 1, Padding::Same).with_pool(PoolKind::Avg, 3),
        ],
        vec![
            b(16, 3, 4, Padding::Same),
            b(32, 4, 2, Padding::Valid).with_pool(PoolKind::Max, 2),
            b(32, 3, 1, Padding::Same),
        ],
        vec![
            b(6, 7, 4, Padding::Valid),
            b(13, 5, 2, Padding::Same),
            b(27, 2, 1, Padding::Same).with_pool(PoolKind::Max, 2),
        ],
        vec![
            b(8, 3, 2, Padding::Same).with_pool(PoolKind::Max, 2),
            b(16, 3, 2, Padding::Same),
            b(24, 3, 1, Padding::Same).with_pool(PoolKind::Avg, 2),
            b(24, 2, 1, Padding::Valid),
        ],
        vec![
            b(16, 4, 4, Padding::Same),
            b(24, 4, 2, Padding::Valid).with_pool(PoolKind::Max, 2),
            b(32, 3, 1, Padding::Same).with_pool(PoolKind::Avg, 3),
            b(32, 2, 1, Padding::Same),
            b(40, 3, 1, Padding::Valid).with_pool(PoolKind::Max, 2),
        ],
        vec![
            b(4, 5, 4, Padding::Same),
            b(9, 3, 1, Padding::Same),
            b(17, 3, 2, Padding::Same),
            b(30, 3, 1, Padding::Valid).with_pool(PoolKind::Max, 2),
            b(30, 2, 1, Padding::Same),
        ],
        vec![b(32, 8, 8, Padding::Same), b(48, 5, 2, Padding::Same)],
        vec![b(5, 3, 2, Padding::Same), b(7, 3, 2, Padding::Same)],
        vec![
            b(3, 5, 4, Padding::Same),
            b(11, 5, 2, Padding::Valid).with_pool(PoolKind::Avg, 2),
            b(21, 3, 1, Padding::Same),
        ],
        vec![b(64, 4, 4, Padding::Same), b(32, 2, 2, Padding::Same)],
        vec![
            b(24, 6, 4, Padding::Same).with_pool(PoolKind::Max, 2),
            b(48, 4, 1, Padding::Same),
            b(36, 3, 1, Padding::Same).with_pool(PoolKind::Avg, 2),
        ],
        vec![
            b(10, 2, 2, Padding::Valid),
            b(18, 2, 2, Padding::Same),
            b(26, 2, 2, Padding::Same),
            b(34, 2, 1, Padding::Same),
        ],
        vec![
            b(2, 9, 8, Padding::Same),
            b(6, 5, 1, Padding::Same).with_pool(PoolKind::Max, 4),
        ],
    ];
    sets.into_iter()
        .map(|blocks| {
            let spec = NetSpec::from_blocks(784, 12, blocks);
            spec.validate()?;
            Ok(spec)
        })
        .collect()
}

/// Weighted least squares restricted to the columns in `mask` (Gaussian elimination on the
/// normal equations, each column scaled so that its largest relative entry is 1). None when
/// singular.
fn lsq(x: &[Vec<f64>], y: &[f64], mask: &[bool]) -> Option<Vec<f64>> {
    let n = mask.len();
    let cols: Vec<usize> = (0..n).filter(|&j| mask[j]).collect();
    let m = cols.len();
    if m == 0 {
        return Some(vec![0.0; n]);
    }
    let scale: Vec<f64> = cols
        .iter()
        .map(|&j| {
            x.iter()
                .zip(y)
                .map(|(r, yi)| (r[j] / yi).abs())
                .fold(0.0, f64::max)
                .max(1e-300)
        })
        .collect();
    // Relative error: each row divided by its measured value.
    let mut a = vec![vec![0.0; m + 1]; m];
    for (r, &yi) in x.iter().zip(y) {
        let w = 1.0 / yi;
        let v: Vec<f64> = cols
            .iter()
            .zip(&scale)
            .map(|(&j, s)| r[j] / s * w)
            .collect();
        for p in 0..m {
            for q in 0..m {
                a[p][q] += v[p] * v[q];
            }
            a[p][m] += v[p] * yi * w;
        }
    }
    for c in 0..m {
        let piv = (c..m).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[piv][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, piv);
        let pivot_row = a[c].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot_row[c];
                for (v, p) in row.iter_mut().zip(&pivot_row).skip(c) {
                    *v -= f * p;
                }
            }
        }
    }
    let mut out = vec![0.0; n];
    for (p, &j) in cols.iter().enumerate() {
        out[j] = a[p][m] / a[p][p] / scale[p];
    }
    Some(out)
}

fn predict(c: &[f64], r: &[f64]) -> f64 {
    c.iter().zip(r).map(|(a, b)| a * b).sum()
}

fn worst_rel(c: &[f64], x: &[Vec<f64>], y: &[f64]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(r, yi)| ((predict(c, r) - yi) / yi).abs())
        .fold(0.0, f64::max)
}

fn sum_sq_rel(c: &[f64], x: &[Vec<f64>], y: &[f64]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(r, yi)| ((predict(c, r) - yi) / yi).powi(2))
        .sum()
}

/// Non-negative least squares by enumeration: the optimum is the unconstrained solution on
/// some subset of the columns with no negative coefficient, and the best such subset is it.
fn nnls(x: &[Vec<f64>], y: &[f64]) -> Result<Vec<f64>> {
    let n = x.first().context("no networks measured")?.len();
    let mut best: Option<(Vec<f64>, f64)> = None;
    for bits in 1u32..(1 << n) {
        let mask: Vec<bool> = (0..n).map(|j| bits & (1 << j) != 0).collect();
        let Some(c) = lsq(x, y, &mask) else { continue };
        if c.iter().any(|v| *v < 0.0) {
            continue;
        }
        let e = sum_sq_rel(&c, x, y);
        if best.as_ref().is_none_or(|(_, b)| e < *b) {
            best = Some((c, e));
        }
    }
    best.map(|(c, _)| c)
        .context("no non-negative fit (too few networks?)")
}

fn main() -> Result<()> {
    let mut names = Vec::new();
    let mut int8 = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "-h" | "--help" => {
                println!("usage: calibrate_latency [--int8] [TARGET...]");
                return Ok(());
            }
            "--int8" => int8 = true,
            s if s.starts_with('-') => bail!("unknown option {s}"),
            _ => names.push(a),
        }
    }
    let targets = if names.is_empty() {
        nas::target::builtin()
    } else {
        names
            .iter()
            .map(|n| nas::target::resolve(n))
            .collect::<Result<Vec<_>>>()?
    };
    firmware::check_toolchain()?;
    let nets = networks()?;
    for target in targets {
        if target.emulator.is_none() {
            println!("{}: no [emulator], skipped", target.name);
            continue;
        }
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut names = Vec::new();
        for (i, spec) in nets.iter().enumerate() {
            let weights = Weights::random(spec, i as u64 + 1);
            let mut opts = Options::new(Samples::synthetic(3, 784));
            opts.emulate = true;
            opts.lang = Lang::C;
            if int8 {
                let calib = nas::data::synthetic(64, 784, 12, i as u64);
                let q = nas::quant::ptq(
                    spec,
                    &weights,
                    &calib,
                    64,
                    nas::quant::CalibrationMethod::MinMax,
                )?;
                opts.quant = Some(Arc::new(q));
            }
            // Measured whatever the budgets: these networks are for timing, not for deployment.
            let mut limits = target.limits();
            limits.max_params = None;
            limits.max_flops = None;
            limits.max_tensor = u64::MAX;
            let r = firmware::verify(spec, &weights, &target, &limits, &opts)
                .with_context(|| format!("{} on {}", spec.summary(), target.name))?;
            let Some(em) = r.emulation else {
                // A network too large for the chip (the smallest profiles) is left out.
                eprintln!(
                    "{:<12} net {i}: skipped, not emulated ({})",
                    target.name,
                    r.emulation_skipped.unwrap_or_default()
                );
                continue;
            };
            let plan = lower(spec)?;
            let row = if int8 {
                let f = latency_features_int8(&plan, target.has_dsp());
                eprintln!(
                    "{:<12} net {i}: {:>8} word MACs ({} single, {} rest) {:>6} calls {:>7} outputs {:>7} filter-outer {:>7} column words → {:>10} instructions",
                    target.name,
                    f.word_macs_grouped,
                    f.word_macs_single,
                    f.word_macs_rest,
                    f.calls,
                    f.outputs,
                    f.filter_outputs,
                    f.col_words,
                    em.instructions_per_inference
                );
                f.row().to_vec()
            } else {
                let f = latency_features(&plan, target.has_fpu());
                eprintln!(
                    "{:<12} net {i}: {:>9} MACs ({} one by one, {} four elements at a time) {:>6} calls {:>7} outputs {} layers → {:>10} instructions",
                    target.name,
                    f.executed_macs(),
                    f.macs_single,
                    f.macs_vector,
                    f.dot_calls,
                    f.conv_outputs,
                    f.layers,
                    em.instructions_per_inference
                );
                f.row().to_vec()
            };
            x.push(row);
            y.push(em.instructions_per_inference as f64);
            names.push(spec.summary());
        }
        let c = nnls(&x, &y)?;
        // The figures as printed (and put in the profile), so the stated error is theirs:
        // MAC terms to 4 decimals, the constant to a whole instruction, the rest to 3.
        let keys: &[&str] = if int8 {
            &[
                "per_word_mac",
                "per_single_word_mac",
                "per_call",
                "per_output",
                "per_filter_output",
                "per_rest_word_mac",
                "per_col_word",
                "per_avg_window",
                "per_gap_value",
                "base",
            ]
        } else {
            &[
                "per_mac",
                "per_single_mac",
                "per_call",
                "per_output",
                "per_layer",
                "per_vector_mac",
                "per_converted_byte",
                "per_pair_mac",
                "per_window",
                "per_sweep_mac",
                "per_sweep_group",
                "base",
            ]
        };
        let digits = |key: &str| match key {
            "base" => 0,
            k if k.contains("mac") => 4,
            _ => 3,
        };
        let c: Vec<f64> = c
            .iter()
            .zip(keys)
            .map(|(v, k)| {
                let d = digits(k) as i32;
                (v * 10f64.powi(d)).round() / 10f64.powi(d)
            })
            .collect();
        let worst = worst_rel(&c, &x, &y);
        println!(
            "{} ({}): worst relative error {:.2} % over {} networks",
            target.name,
            target.core,
            100.0 * worst,
            x.len()
        );
        println!("{}", if int8 { "[latency_int8]" } else { "[latency]" });
        for (key, v) in keys.iter().zip(&c) {
            println!("{key} = {v:.*}", digits(key));
        }
        println!("cycles_per_instruction = 1.0");
        println!(
            "worst_error_pct = {:.1}",
            (100.0 * worst * 10.0).ceil() / 10.0
        );
        for ((r, yi), n) in x.iter().zip(&y).zip(&names) {
            println!(
                "  # {:>10.0} measured {:>10.0} estimated ({:+.2} %)  {n}",
                yi,
                predict(&c, r),
                100.0 * (predict(&c, r) - yi) / yi
            );
        }
    }
    Ok(())
}
