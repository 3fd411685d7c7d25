//! Measure the generated kernel's code size (model flash − weights) with `nas verify`'s ELF
//! analysis for networks of 1 to 5 blocks on every shipped profile, and print for each the
//! least-squares `[code_size]` line (`base_bytes + per_layer_bytes × layers`, plus
//! `sweep_bytes + sweep_tap_bytes × kernel` when the first conv is swept) that never under-estimates the 2-5-block
//! networks: the figures in `targets/*.toml`.
//!
//! ```text
//! cargo run --release --example calibrate_code_size                    # C kernel, every profile
//! cargo run --release --example calibrate_code_size -- --lang rust stm32f401re stm32g071rb
//! ```
//!
//! Needs `arm-none-eabi-gcc` and newlib (`apt-get install -y gcc-arm-none-eabi
//! libnewlib-arm-none-eabi`) and, with `--lang rust`, each profile's Rust target
//! (`rustup target add …`). Nothing runs under QEMU.

use anyhow::{bail, Context, Result};
use nas::firmware::{self, Lang, Options, Samples};
use nas::net::{Block, NetSpec, Padding, PoolKind};
use nas::weights::Weights;

fn net(blocks: Vec<Block>) -> Result<NetSpec> {
    let spec = NetSpec::from_blocks(784, 12, blocks);
    spec.validate()?;
    Ok(spec)
}

fn main() -> Result<()> {
    let mut lang = Lang::C;
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--lang" => {
                lang = match args.next().as_deref() {
                    Some("c") => Lang::C,
                    Some("rust") => Lang::Rust,
                    other => bail!("--lang takes c or rust, not {other:?}"),
                }
            }
            "-h" | "--help" => {
                println!("usage: calibrate_code_size [--lang c|rust] [TARGET...]");
                return Ok(());
            }
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

    let shapes = [
        Block::new(16, 3, 2, Padding::Same),
        Block::new(24, 4, 2, Padding::Valid).with_pool(PoolKind::Max, 2),
        Block::new(32, 3, 1, Padding::Same).with_pool(PoolKind::Avg, 3),
        Block::new(32, 2, 1, Padding::Same),
        Block::new(40, 3, 1, Padding::Valid).with_pool(PoolKind::Max, 2),
    ];
    println!(
        "{} kernel: [code_size] per profile (bytes of model flash − weights; layers = blocks + 2)",
        lang.label()
    );
    // Code bytes of one network on `target`, and whether its first conv is swept.
    let measure =
        |spec: &NetSpec, target: &nas::target::Target, seed: u64| -> Result<(f64, bool)> {
            let weights = Weights::random(spec, seed);
            let mut opts = Options::new(Samples::synthetic(1, 784));
            opts.emulate = false;
            opts.lang = lang;
            let r = firmware::verify(spec, &weights, target, &target.limits(), &opts)
                .with_context(|| format!("{} on {}", spec.summary(), target.name))?;
            let plan = nas::net::plan::lower(spec)?;
            Ok((
                r.measured.code_bytes as f64,
                nas::net::latency::swept_conv(&plan).is_some(),
            ))
        };
    for target in targets {
        // What the first conv's filter-outer sweep adds (C, cores with an FPU), by its kernel
        // k: sweep_bytes + sweep_tap_bytes × k, from networks that differ only in that kernel:
        // 3 and 4 (swept) or 5 (not).
        let first = |k: usize| -> Result<f64> {
            let second = Block::new(24, 4, 2, Padding::Valid).with_pool(PoolKind::Max, 2);
            Ok(measure(
                &net(vec![Block::new(16, k, 2, Padding::Same), second])?,
                &target,
                1,
            )?
            .0)
        };
        let (k3, k4, k5) = (first(3)?, first(4)?, first(5)?);
        let (sweep, sweep_tap) = if lang == Lang::C {
            let tap = k4 - k3;
            (k3 - k5 - 3.0 * tap, tap)
        } else {
            (0.0, 0.0)
        };
        let mut points = Vec::new();
        for depth in 1..=shapes.len() {
            for variant in 0..2 {
                let mut blocks = shapes[..depth].to_vec();
                if variant == 1 {
                    blocks.rotate_left(depth.min(2) - 1);
                }
                let spec = net(blocks)?;
                let layers = nas::net::plan::lower(&spec)?.layers.len() as f64;
                let (bytes, swept) = measure(&spec, &target, depth as u64)?;
                // The fit is of the code without the sweep.
                let k = spec.blocks[0].kernel as f64;
                points.push((
                    layers,
                    bytes - if swept { sweep + sweep_tap * k } else { 0.0 },
                ));
            }
        }
        // One-block networks are left out of the fit: with a single conv call the compiler
        // specialises the conv routine and the code is smaller, so the line over-estimates
        // them (safe).
        let fit: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|(layers, _)| *layers >= 4.0)
            .collect();
        let n = fit.len() as f64;
        let (sx, sy) = fit.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let sxx: f64 = fit.iter().map(|(x, _)| x * x).sum();
        let sxy: f64 = fit.iter().map(|(x, y)| x * y).sum();
        let slope = ((n * sxy - sx * sy) / (n * sxx - sx * sx)).round();
        // The smallest base that never under-estimates.
        let base = fit
            .iter()
            .map(|(x, y)| y - slope * x)
            .fold(f64::MIN, f64::max);
        let worst = fit
            .iter()
            .map(|(x, y)| base + slope * x - y)
            .fold(0.0, f64::max);
        let one_block = points
            .iter()
            .filter(|(x, _)| *x == 3.0)
            .map(|(x, y)| base + slope * x - y)
            .fold(0.0, f64::max);
        println!(
            "{:<12} {:<14} base_bytes = {:.0}, per_layer_bytes = {:.0}, sweep_bytes = {:.0}, sweep_tap_bytes = {:.0} (over-estimate at most {:.0} B; {:.0} B for one block) from {:?}",
            target.name,
            target.core,
            base,
            slope,
            sweep,
            sweep_tap,
            worst,
            one_block,
            points
                .iter()
                .map(|p| (p.0 as u32, p.1 as u32))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}
