//! `nas bench`: its arguments and its table.

use crate::bench::{self, BenchConfig, BenchReport};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// IDX dataset folder with train-* and t10k-* files.
    #[arg(long, default_value = "../shared/data/iscx-vpn2016-12class-sessionl7")]
    pub data: PathBuf,
    /// Reference network(s) to measure: A, B or both.
    #[arg(long, default_value = "both", value_parser = ["A", "B", "both", "a", "b"])]
    pub arch: String,
    /// Timed training epochs per measurement.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Warm-up training steps before the timed epoch(s).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Measurements per network (alternated with Keras when `--keras` is given); medians are
    /// reported.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Python interpreter with TensorFlow (e.g. /tmp/kb/bin/python): also run the Keras
    /// baseline, alternately with ours, and report ratios.
    #[arg(long)]
    pub keras: Option<PathBuf>,
    /// The Keras baseline script.
    #[arg(long, default_value = "../shared/bench/keras_baseline.py")]
    pub keras_script: PathBuf,
    /// Epochs of the proxy evaluation (0 skips it).
    #[arg(long, default_value_t = 3)]
    pub proxy_epochs: usize,
    /// Cut each timed epoch to this many steps (quick checks only: Keras still runs whole
    /// epochs, so ratios are then only indicative).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Skip the inference measurement.
    #[arg(long)]
    pub no_infer: bool,
    /// Seed of the initial weights, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Data-parallel shards of each training batch (1: the whole batch in one pass).
    #[arg(long, default_value_t = crate::train::DEFAULT_SHARDS)]
    pub shards: usize,
    /// Machine-readable output (JSON on stdout).
    #[arg(long)]
    pub json: bool,
}

impl From<&BenchArgs> for BenchConfig {
    fn from(a: &BenchArgs) -> BenchConfig {
        BenchConfig {
            data: a.data.clone(),
            arch: a.arch.clone(),
            epochs: a.epochs,
            warmup: a.warmup,
            repeats: a.repeats,
            keras: a.keras.clone(),
            keras_script: a.keras_script.clone(),
            proxy_epochs: a.proxy_epochs,
            steps: a.steps,
            no_infer: a.no_infer,
            seed: a.seed,
            shards: a.shards,
        }
    }
}

pub fn run(a: BenchArgs) -> Result<()> {
    let json = a.json;
    let report = bench::run(&BenchConfig::from(&a), &mut |line| {
        if json {
            note!("{line}");
            Ok(())
        } else {
            outln!("{line}")
        }
    })?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_table(&report)?;
    }
    Ok(())
}

fn print_table(r: &BenchReport) -> Result<()> {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let x = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));
    outln!()?;
    outln!(
        "medians over {} run(s), samples/s (batch {}, {} thread(s), {} shard(s)):",
        r.repeats,
        r.batch,
        r.threads,
        r.shards
    )?;
    outln!(
        "{:<5} {:>6} {:>9} | {:>10} {:>10} {:>7} | {:>10} {:>10} {:>7} | {:>13}",
        "arch",
        "MMACs",
        "params",
        "train ours",
        "keras",
        "ratio",
        "infer ours",
        "keras",
        "ratio",
        "test acc/wF1"
    )?;
    for s in &r.archs {
        outln!(
            "{:<5} {:>6.2} {:>9} | {:>10.1} {:>10} {:>7} | {:>10} {:>10} {:>7} | {:.3}/{:.3}",
            s.arch,
            s.macs as f64 / 1e6,
            s.params,
            s.ours_train_sps,
            f(s.keras_train_sps),
            x(s.train_ratio),
            f(s.ours_infer_sps),
            f(s.keras_infer_sps),
            x(s.infer_ratio),
            s.ours_test_acc,
            s.ours_test_wf1,
        )?;
        if let (Some(acc), Some(wf1)) = (s.keras_test_acc, s.keras_test_wf1) {
            outln!(
                "{:<5} keras test acc/wF1 {acc:.3}/{wf1:.3} (same epochs)",
                ""
            )?;
        }
    }
    if let Some(p) = &r.proxy {
        outln!(
            "proxy evaluation: {:.1} s wall ({}, {} epochs, {} train / {} val samples)",
            p.wall_s,
            p.spec,
            p.epochs,
            p.train_samples,
            p.val_samples
        )?;
    }
    Ok(())
}
