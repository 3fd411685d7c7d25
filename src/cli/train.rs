//! `nas train`: train any spec with the full routine and write a directory that `eval`,
//! `export` and `verify` accept like a run.

use crate::search::rundir::{DirKind, OutDir, TrainRunConfig};
use crate::search::{train_spec, DataSource, Metric};
use crate::target;
use crate::train::{self, TrainConfig};
use crate::weights::Weights;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  nas train --net runs/r1/best/spec.json \
    --data ../shared/data/iscx-vpn2016-12class-sessionl7 --out runs/r1-full\n  \
    nas export --run runs/r1-full --lang c --out model/")]
pub struct TrainArgs {
    /// Network spec JSON (e.g. a run's best/spec.json, or written by hand)
    #[arg(long)]
    pub net: PathBuf,
    /// Dataset directory (IDX files, see `nas data inspect`)
    #[arg(long)]
    pub data: PathBuf,
    /// Target whose budgets the model is costed against in the directory
    #[arg(long, default_value = "stm32f401re")]
    pub target: String,
    /// Output directory: new or empty (it must not hold a training or a search run)
    #[arg(long)]
    pub out: PathBuf,
    /// Write into a non-empty --out that holds other files (never over a training or a run)
    #[arg(long)]
    pub force: bool,
    /// Start from these weights (safetensors, matching the spec) instead of a fresh start
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Maximum epochs (early stopping restores the best one)
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    /// Mini-batch size
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Data-parallel shards of each mini-batch, trained on the cores at once with their
    /// gradients summed; BatchNorm normalises each shard by its own statistics. Results depend
    /// on this, not on the number of cores
    #[arg(long, default_value_t = crate::train::DEFAULT_SHARDS)]
    pub shards: usize,
    /// Adam's initial learning rate
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// Early-stopping patience in epochs
    #[arg(long, default_value_t = 12)]
    pub patience: usize,
    /// Share of the training split held out, stratified, for early stopping
    #[arg(long, default_value_t = 0.11)]
    pub val_fraction: f64,
    /// Validation figure reported as the score
    #[arg(long, value_enum, default_value_t = Metric::WeightedF1)]
    pub metric: Metric,
    /// Random seed (initial weights, split, batches)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Use at most this many training samples per class (quick runs)
    #[arg(long, value_parser = super::at_least_one)]
    pub limit_per_class: Option<usize>,
    /// Give every training sample whose bytes (DNS-format queries' random transaction IDs
    /// masked) occur under several labels the most frequent of them: background sessions that
    /// belong to no class (Windows' LLMNR lookups for `wpad`, SSDP) then teach one answer
    /// instead of noise. The test split is never changed; `nas data inspect` counts them.
    #[arg(long)]
    pub relabel_conflicts: bool,
    /// Cap the steps of an epoch (quick runs)
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Quantization-aware fine-tuning epochs after the float training (at a tenth of the
    /// learning rate, BatchNorm frozen, validated in int8). The directory then deploys int8:
    /// export, verify and eval default to --dtype int8; the summary gives the float, int8
    /// post-training and int8 QAT test accuracy, and keeps QAT's weights only when they
    /// validate better in int8
    #[arg(long, default_value_t = 0)]
    pub qat_epochs: usize,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let spec = super::read_spec(&a.net)?;
    // Claimed before anything is loaded: a directory this training would write over is
    // refused at once. A claim that fails later leaves no new directory behind.
    let out = OutDir::claim(&a.out, DirKind::Train, a.force)?;
    if let Some(note) = out.lock_note() {
        note!("note: {note}");
    }
    let target = target::resolve(&a.target)?;
    let limits = target.limits();
    let data = DataSource::Dir {
        path: std::fs::canonicalize(&a.data)
            .with_context(|| format!("dataset directory {} not found", a.data.display()))?,
        limit_per_class: a.limit_per_class,
        relabel_conflicts: a.relabel_conflicts,
    };
    let init = match &a.init {
        Some(p) => Weights::load(p)?,
        None => train::initial_weights(&spec, a.seed),
    };
    let cfg = TrainRunConfig {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        target,
        limits,
        data,
        seed: a.seed,
        spec,
        train: TrainConfig {
            epochs: a.epochs,
            batch_size: a.batch_size,
            learning_rate: a.learning_rate,
            early_stop_patience: a.patience,
            max_steps_per_epoch: a.steps_per_epoch,
            shards: a.shards,
            ..TrainConfig::delivery()
        },
        val_fraction: a.val_fraction,
        metric: a.metric,
        init: a.init.clone(),
        qat_epochs: a.qat_epochs,
        dtype: if a.qat_epochs > 0 {
            crate::net::Dtype::Int8
        } else {
            crate::net::Dtype::F32
        },
    };
    let quiet = a.json;
    // A closed stdout stops the echo, not the training: the directory is completed and
    // saved, then the command ends as one whose output was cut short (see `out`).
    let mut closed = None;
    let summary = train_spec(out, &cfg, &init, &mut |line| {
        if !quiet && closed.is_none() {
            closed = outln!("{line}").err();
        }
    })?;
    if let Some(e) = closed {
        return Err(e);
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(())
}
