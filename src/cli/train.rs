//! `nas train`: train any spec with the full routine and write a directory that `eval`,
//! `export` and `verify` accept like a run.

use crate::search::rundir::{TrainRunConfig, TRAIN_CONFIG};
use crate::search::{load_data, train_final, DataSource, Metric};
use crate::target;
use crate::train::{self, TrainConfig};
use crate::util::{write_atomic, write_json};
use crate::weights::Weights;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
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
    /// Output directory (must not hold a training already)
    #[arg(long)]
    pub out: PathBuf,
    /// Start from these weights (safetensors, matching the spec) instead of a fresh start
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Maximum epochs (early stopping restores the best one)
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    /// Mini-batch size
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
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
    #[arg(long)]
    pub limit_per_class: Option<usize>,
    /// Cap the steps of an epoch (quick runs)
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct TrainSummary<'a> {
    dir: &'a PathBuf,
    record: &'a crate::search::FinalRecord,
    test: &'a crate::train::metrics::Metrics,
    cost: &'a crate::net::cost::Cost,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let spec = super::read_spec(&a.net)?;
    let target = target::resolve(&a.target)?;
    let limits = target.limits();
    let data = DataSource::Dir {
        path: std::fs::canonicalize(&a.data)
            .with_context(|| format!("dataset directory {} not found", a.data.display()))?,
        limit_per_class: a.limit_per_class,
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
            ..TrainConfig::delivery()
        },
        val_fraction: a.val_fraction,
        metric: a.metric,
        init: a.init.clone(),
    };
    cfg.validate()?;
    let spec = &cfg.spec;
    if a.out.join(TRAIN_CONFIG).exists() {
        bail!(
            "{} already holds a training; choose another --out",
            a.out.display()
        );
    }
    let init = match &a.init {
        Some(p) => {
            let w = Weights::load(p)?;
            w.check(spec)
                .with_context(|| format!("{} does not match {}", p.display(), a.net.display()))?;
            w
        }
        None => train::initial_weights(spec, a.seed),
    };
    let splits = load_data(&cfg.data, cfg.seed)?;
    let tr = &splits.train;
    if tr.len != spec.input_len || tr.classes > spec.classes {
        bail!(
            "the data ({} bytes per sample, {} classes) does not fit the network ({} inputs, {} classes)",
            tr.len,
            tr.classes,
            spec.input_len,
            spec.classes
        );
    }
    let (_, val_idx) =
        crate::data::stratified_split(&tr.labels, tr.classes, cfg.val_fraction, cfg.seed)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    write_json(&a.out.join(TRAIN_CONFIG), &cfg)?;
    let quiet = a.json;
    let say = |line: &str| -> Result<()> {
        if !quiet {
            println!("{line}");
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(a.out.join("log.txt"))?;
        std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes())?;
        Ok(())
    };
    say(&format!(
        "training {} on {} train samples ({} held out for early stopping), up to {} epochs, batch {}",
        spec.summary(),
        tr.n() - val_idx.len(),
        val_idx.len(),
        cfg.train.epochs,
        cfg.train.batch_size
    ))?;
    let (record, weights) = train_final(
        spec,
        &init,
        tr,
        &val_idx,
        &cfg.train,
        cfg.metric,
        cfg.seed,
        &mut |_, _| {},
    )?;
    for e in &record.history {
        say(&format!(
            "epoch {:>3}  loss {:.4}  val loss {:.4}  val acc {:.2} %  lr {:.2e}  ({:.1} s)",
            e.epoch + 1,
            e.train_loss,
            e.val_loss,
            100.0 * e.val_accuracy,
            e.learning_rate,
            e.seconds
        ))?;
    }
    let test = train::evaluate(spec, &weights, &splits.test)?;
    let cost = crate::search::cost_of(spec, &cfg.target, &cfg.limits)?;
    let best = a.out.join("best");
    write_json(&best.join("spec.json"), spec)?;
    weights.save(&best.join("weights.safetensors"))?;
    write_json(&best.join("cost.json"), &cost)?;
    write_json(&best.join("test.json"), &test)?;
    write_json(&best.join(crate::search::rundir::FINAL_RECORD), &record)?;
    let summary = TrainSummary {
        dir: &a.out,
        record: &record,
        test: &test,
        cost: &cost,
    };
    write_json(&a.out.join("summary.json"), &summary)?;
    let text = format!(
        "best epoch {} of {}\n  validation: {}\n  test:       {}  (test split, used once)\n\nnext: nas export --run {} --lang c --out model/   |   nas verify --run {}",
        record.best_epoch + 1,
        record.epochs_run,
        record.val.brief(),
        test.brief(),
        a.out.display(),
        a.out.display()
    );
    write_atomic(&a.out.join("summary.txt"), text.as_bytes())?;
    for line in text.lines() {
        say(line)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}
