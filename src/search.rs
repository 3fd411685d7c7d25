//! Search: the seed's evolutionary algorithm over [`NetSpec`]s under a target's budgets,
//! recorded in a resumable run directory.
//!
//! A generation derives `children` children from the parent, each by `mutations` random
//! mutations (add a block, remove one — never the first —, or change one) followed by the shape
//! corrections. A child must fit every budget by the cost model; mutation retries are bounded and
//! running out of them is an error naming the binding budget. Children are trained (proxy: one
//! stratified fold held out for validation; full: k folds) and the best by validation score
//! becomes the next parent; with elitism the parent competes, in a random walk it does not. The
//! test split is used once, for the winner, never for selection.
//!
//! Resumability: everything random is derived from the run's seed and the candidate's position
//! (generation, index), so a resumed run regenerates the same candidates; a candidate whose
//! `record.json` exists is loaded instead of retrained. Every file is written atomically.
//!
//! Run directory layout:
//! ```text
//! config.json                  the configuration the run was started with
//! log.txt                      human log
//! events.jsonl                 one JSON event per line (candidate results, generations, end)
//! candidates/gGGG-cCC/         spec.json, cost.json, record.json, weights.safetensors
//! best/                        the best model so far: spec.json, weights.safetensors,
//!                              record.json, cost.json (and test.json at the end)
//! summary.json                 written when the search completes
//! ```

use crate::arch::{Block, NetSpec, Padding, Pool, PoolKind, SearchSpace};
use crate::cost::{self, Cost};
use crate::data::{self, Dataset, LoadOptions, Splits};
use crate::metrics::Metrics;
use crate::plan;
use crate::target::{self, Limits, Target};
use crate::train::{self, TrainConfig};
use crate::util::{read_json, write_atomic, write_json};
use crate::weights::Weights;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How candidates are trained and scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Training {
    /// One stratified fold held out for validation (the seed's default during search).
    Proxy,
    /// k-fold cross-validation: the score is the mean over folds (the seed's `use_full_training`).
    Full,
}

/// The validation figure that selects parents and the winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    Accuracy,
    WeightedF1,
    MacroF1,
}

impl Metric {
    pub fn of(self, m: &Metrics) -> f64 {
        match self {
            Metric::Accuracy => m.accuracy,
            Metric::WeightedF1 => m.weighted_f1,
            Metric::MacroF1 => m.macro_f1,
        }
    }
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Target MCU: a name or alias from `nas targets`, or a path to a TOML profile
    #[arg(long, default_value = "stm32f401re")]
    pub target: String,
    /// Dataset directory (IDX files, see `nas data inspect`). Without it the search runs on a
    /// small synthetic dataset, to try the tool out
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Continue an interrupted run; its configuration is read from the run directory
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["data", "out", "name"])]
    pub resume: Option<PathBuf>,
    /// Run directory (default: runs/<name>)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run name (default: <target>-<seed>-<unix time>)
    #[arg(long)]
    pub name: Option<String>,
    /// Generations after the initial parent
    #[arg(long, default_value_t = 4)]
    pub generations: usize,
    /// Children per generation
    #[arg(long, default_value_t = 4)]
    pub children: usize,
    /// Mutations applied to make each child
    #[arg(long, default_value_t = 1)]
    pub mutations: usize,
    /// Maximum number of blocks
    #[arg(long, default_value_t = 5)]
    pub max_depth: usize,
    /// Start from a random feasible parent instead of the seed's smart start
    #[arg(long)]
    pub random_start: bool,
    /// Random walk: the parent does not compete with its children (default: elitism)
    #[arg(long)]
    pub random_walk: bool,
    /// Random seed: the same seed and inputs give the same sequence of architectures
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How candidates are trained and scored
    #[arg(long, value_enum, default_value_t = Training::Proxy)]
    pub training: Training,
    /// Folds: the proxy holds one out for validation; full training uses all of them
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Validation figure that selects parents and the winner
    #[arg(long, value_enum, default_value_t = Metric::WeightedF1)]
    pub metric: Metric,
    /// Maximum training epochs per candidate (early stopping may end sooner)
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// Early stopping patience in epochs (default: the seed's, 20 proxy / 12 full)
    #[arg(long)]
    pub patience: Option<usize>,
    /// Reduce-LR-on-plateau patience (default: 12 proxy / 5 full)
    #[arg(long)]
    pub lr_patience: Option<usize>,
    /// Reduce-LR-on-plateau factor (default: 0.6 proxy / 0.7 full)
    #[arg(long)]
    pub lr_factor: Option<f64>,
    /// Cap the steps of an epoch (quick runs)
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    /// Use at most this many training samples per class (quick runs on real data)
    #[arg(long)]
    pub limit_per_class: Option<usize>,
    /// Do not start children from their parent's trained weights for unchanged leading blocks
    #[arg(long)]
    pub no_inherit: bool,
    /// Override the target's parameter budget (Keras count)
    #[arg(long)]
    pub max_params: Option<u64>,
    /// Override the FLOPs budget (2 × MACs)
    #[arg(long)]
    pub max_flops: Option<u64>,
    /// Override the largest-tensor budget (elements)
    #[arg(long)]
    pub max_tensor: Option<u64>,
    /// Override the flash budget for the model (bytes)
    #[arg(long)]
    pub max_flash: Option<u64>,
    /// Override the RAM budget for the model (bytes)
    #[arg(long)]
    pub max_ram: Option<u64>,
    /// Stop cleanly after the candidate in progress once this much time has passed (e.g. 30m,
    /// 2h); resume later with --resume
    #[arg(long, value_parser = humantime::parse_duration)]
    pub time_budget: Option<Duration>,
    /// Mutation attempts per child before giving up on the budgets
    #[arg(long, default_value_t = 500)]
    pub max_tries: usize,
    /// Cross-compile every candidate for the target before training it, record the flash and
    /// RAM measured from its ELF, and reject candidates whose measured footprint breaks a budget
    /// (needs arm-none-eabi-gcc; about half a second per candidate)
    #[arg(long)]
    pub verify: bool,
    /// Print the run summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// No progress bars or log lines on the terminal
    #[arg(long, short)]
    pub quiet: bool,
}

/// Where the run's data comes from (recorded so that a resume loads the same data).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataSource {
    Dir {
        path: PathBuf,
        limit_per_class: Option<usize>,
    },
    Synthetic {
        seed: u64,
    },
}

/// Everything a run needs, saved as `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub tool_version: String,
    pub target: Target,
    pub limits: Limits,
    pub data: DataSource,
    pub space: SearchSpace,
    pub generations: usize,
    pub children: usize,
    pub mutations: usize,
    pub random_start: bool,
    pub random_walk: bool,
    pub seed: u64,
    pub training: Training,
    pub folds: usize,
    pub metric: Metric,
    pub train: TrainConfig,
    pub inherit: bool,
    pub max_tries: usize,
    /// Measure every candidate's footprint from a cross-compiled ELF (`--verify`).
    #[serde(default)]
    pub verify: bool,
}

/// The result of one candidate, saved as `record.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub generation: usize,
    pub index: usize,
    pub parent: Option<String>,
    pub spec: NetSpec,
    pub summary: String,
    pub params: u64,
    pub flops: u64,
    pub max_tensor: u64,
    pub ram_bytes: u64,
    pub flash_bytes: u64,
    /// Validation metrics (mean over folds for full training).
    pub val: Metrics,
    pub score: f64,
    pub epochs_run: usize,
    pub best_epoch: usize,
    /// Leading blocks that started from the parent's trained weights.
    pub inherited_blocks: usize,
    pub train_seconds: f64,
    pub train_samples_per_sec: f64,
    /// Flash and RAM measured from the cross-compiled ELF (`--verify` runs).
    #[serde(default)]
    pub measured: Option<MeasuredFootprint>,
    /// Per-epoch losses and validation accuracy (of the best fold for full training).
    #[serde(default)]
    pub history: Vec<train::EpochLog>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub run: PathBuf,
    pub target: String,
    pub winner: Record,
    pub cost: Cost,
    /// The winner's metrics on the test split (used once, never for selection); absent while
    /// the run is incomplete.
    pub test: Option<Metrics>,
    pub candidates: usize,
    pub trained_this_session: usize,
    pub seconds_this_session: f64,
    pub seconds_training_total: f64,
    pub complete: bool,
}

/// The model's footprint measured from a cross-compiled ELF (see `firmware`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeasuredFootprint {
    pub flash_bytes: u64,
    pub ram_bytes: u64,
    /// The linker fitted the image into the chip and the budgets hold.
    pub fits: bool,
}

/// Cross-compile a spec (weights do not change sizes, so random ones serve) and measure it.
pub fn measure(spec: &NetSpec, cfg: &RunConfig) -> Result<MeasuredFootprint> {
    let weights = Weights::random(spec, 0);
    let samples = crate::firmware::Samples::synthetic(1, spec.input_len * spec.input_channels);
    let mut opts = crate::firmware::Options::new(samples);
    opts.emulate = false;
    let mut target = cfg.target.clone();
    target.budget.max_params = cfg.limits.max_params;
    target.budget.max_flops = cfg.limits.max_flops;
    target.budget.max_tensor = cfg.limits.max_tensor;
    target.budget.max_flash_bytes = Some(cfg.limits.max_flash_bytes);
    target.budget.max_ram_bytes = Some(cfg.limits.max_ram_bytes);
    let r = crate::firmware::verify(spec, &weights, &target, &opts)?;
    Ok(MeasuredFootprint {
        flash_bytes: r.measured.flash_bytes,
        ram_bytes: r.measured.ram_bytes,
        fits: r.fits,
    })
}

pub fn candidate_id(generation: usize, index: usize) -> String {
    format!("g{generation:03}-c{index:02}")
}

/// A deterministic RNG for one purpose at one position of the run.
fn rng_for(seed: u64, generation: usize, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(
        stream
            .wrapping_mul(0x1_0000)
            .wrapping_add(generation as u64),
    );
    r
}

/// Cost of a spec on the run's target under the run's limits.
pub fn cost_of(spec: &NetSpec, target: &Target, limits: &Limits) -> Result<Cost> {
    Ok(cost::cost(&plan::lower(spec)?, target, limits))
}

// ---------------------------------------------------------------------------------------------
// Mutation
// ---------------------------------------------------------------------------------------------

fn random_block(rng: &mut ChaCha8Rng, space: &SearchSpace) -> Block {
    let pool = if rng.random_bool(0.5) {
        None
    } else {
        Some(Pool {
            kind: if rng.random_bool(0.5) {
                PoolKind::Max
            } else {
                PoolKind::Avg
            },
            size: space.pool_sizes[rng.random_range(0..space.pool_sizes.len())],
        })
    };
    Block {
        filters: rng.random_range(space.filters.0..=space.filters.1),
        kernel: rng.random_range(space.kernel.0..=space.kernel.1),
        stride: rng.random_range(space.stride.0..=space.stride.1),
        padding: if rng.random_bool(0.5) {
            Padding::Same
        } else {
            Padding::Valid
        },
        batch_norm: true,
        pool,
        dropout: 0.0,
    }
}

/// One random mutation: add a block, remove one (never the first), or change one.
pub fn mutate(spec: &NetSpec, rng: &mut ChaCha8Rng, space: &SearchSpace) -> NetSpec {
    let mut s = spec.clone();
    let n = s.blocks.len();
    let mut choices = vec![2u8];
    if n < space.max_depth {
        choices.push(0);
    }
    if n > 1 {
        choices.push(1);
    }
    match choices[rng.random_range(0..choices.len())] {
        0 => {
            let at = rng.random_range(1..=n);
            s.blocks.insert(at, random_block(rng, space));
        }
        1 => {
            let at = rng.random_range(1..n);
            s.blocks.remove(at);
        }
        _ => {
            let i = rng.random_range(0..n);
            let fresh = random_block(rng, space);
            let b = &mut s.blocks[i];
            match rng.random_range(0..5) {
                0 => b.filters = fresh.filters,
                1 => b.kernel = fresh.kernel,
                2 => b.stride = fresh.stride,
                3 => {
                    b.padding = match b.padding {
                        Padding::Same => Padding::Valid,
                        Padding::Valid => Padding::Same,
                    }
                }
                _ => {
                    b.pool = if b.pool.is_some() && rng.random_bool(0.5) {
                        None
                    } else {
                        fresh.pool
                    }
                }
            }
        }
    }
    s.correct(space);
    s
}

/// Tally of budget violations over failed attempts, to name the binding budget.
#[derive(Default)]
struct Misses {
    tries: usize,
    /// Children the cost model accepted but the measured ELF did not.
    measured: usize,
    by_budget: std::collections::BTreeMap<String, (usize, u64, u64)>,
}

impl Misses {
    fn add(&mut self, c: &Cost) {
        self.tries += 1;
        for v in &c.violations {
            let e = self
                .by_budget
                .entry(v.budget.clone())
                .or_insert((0, u64::MAX, v.limit));
            e.0 += 1;
            e.1 = e.1.min(v.value);
        }
    }
    fn explain(&self) -> String {
        let mut v: Vec<_> = self.by_budget.iter().collect();
        v.sort_by(|a, b| b.1 .0.cmp(&a.1 .0));
        v.iter()
            .map(|(name, (count, best, limit))| {
                format!(
                    "{name} ≤ {limit} was exceeded in {count} of {} tries (the closest needed {best})",
                    self.tries
                )
            })
            .chain((self.measured > 0).then(|| {
                format!(
                    "the measured ELF footprint broke a budget in {} of {} tries",
                    self.measured, self.tries
                )
            }))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Make a feasible child of `parent`, or explain which budget prevents it.
pub fn feasible_child(
    parent: &NetSpec,
    rng: &mut ChaCha8Rng,
    cfg: &RunConfig,
) -> Result<(NetSpec, Cost)> {
    let mut misses = Misses::default();
    let tries = cfg.max_tries.max(1);
    for _ in 0..tries {
        let mut child = parent.clone();
        for _ in 0..cfg.mutations.max(1) {
            child = mutate(&child, rng, &cfg.space);
        }
        if child == *parent {
            // A mutation that the shape corrections undid: not a new candidate.
            continue;
        }
        let c = cost_of(&child, &cfg.target, &cfg.limits)?;
        if !c.fits {
            misses.add(&c);
            continue;
        }
        if cfg.verify && !measure(&child, cfg)?.fits {
            misses.measured += 1;
            misses.tries += 1;
            continue;
        }
        return Ok((child, c));
    }
    bail!(
        "no child of {} fits the budgets after {tries} mutation attempts: {}",
        parent.summary(),
        if misses.tries == 0 {
            "every mutation was undone by the shape corrections".to_string()
        } else {
            misses.explain()
        }
    )
}

/// The smallest network of the search space: one block of the fewest filters, kernel 1.
fn smallest_spec(input_len: usize, classes: usize, space: &SearchSpace) -> NetSpec {
    let mut s = NetSpec {
        input_len,
        input_channels: 1,
        classes,
        blocks: vec![Block {
            filters: space.filters.0,
            kernel: 1,
            stride: space.stride.1,
            padding: Padding::Same,
            batch_norm: false,
            pool: None,
            dropout: 0.0,
        }],
        head: Default::default(),
    };
    s.correct(space);
    s
}

/// The initial parent: the smart start if it fits, else (or with `random_start`) a random
/// feasible network. Fails fast, naming the budget, when not even the smallest network fits.
pub fn initial_parent(
    input_len: usize,
    classes: usize,
    cfg: &RunConfig,
) -> Result<(NetSpec, Cost)> {
    let smallest = smallest_spec(input_len, classes, &cfg.space);
    let c = cost_of(&smallest, &cfg.target, &cfg.limits)?;
    if !c.fits {
        let why: Vec<String> = c.violations.iter().map(|v| v.to_string()).collect();
        bail!(
            "infeasible budgets for {}: even the smallest network of the search space ({}) does not fit: {}",
            cfg.target.name,
            smallest.summary(),
            why.join("; ")
        );
    }
    if !cfg.random_start {
        let smart = NetSpec::smart_start(input_len, classes);
        let c = cost_of(&smart, &cfg.target, &cfg.limits)?;
        if c.fits && (!cfg.verify || measure(&smart, cfg)?.fits) {
            return Ok((smart, c));
        }
    }
    let mut rng = rng_for(cfg.seed, 0, 1);
    for _ in 0..cfg.max_tries.max(1) {
        let depth = rng.random_range(1..=cfg.space.max_depth.max(1));
        let mut s = NetSpec {
            input_len,
            input_channels: 1,
            classes,
            blocks: (0..depth)
                .map(|_| random_block(&mut rng, &cfg.space))
                .collect(),
            head: Default::default(),
        };
        s.correct(&cfg.space);
        let c = cost_of(&s, &cfg.target, &cfg.limits)?;
        if c.fits && (!cfg.verify || measure(&s, cfg)?.fits) {
            return Ok((s, c));
        }
    }
    // Random networks keep missing the budgets, but the smallest one fits: start from it.
    let c = cost_of(&smallest, &cfg.target, &cfg.limits)?;
    Ok((smallest, c))
}

/// Start the child from the parent's trained weights for the leading blocks that are unchanged
/// (same shape and operators), and the head too when every block is unchanged.
pub fn inherit(child: &NetSpec, parent: &NetSpec, parent_w: &Weights, init: &mut Weights) -> usize {
    let same = |a: &Block, b: &Block| {
        a.filters == b.filters
            && a.kernel == b.kernel
            && a.stride == b.stride
            && a.padding == b.padding
            && a.batch_norm == b.batch_norm
            && a.pool == b.pool
    };
    if child.input_len != parent.input_len || child.input_channels != parent.input_channels {
        return 0;
    }
    let k = child
        .blocks
        .iter()
        .zip(&parent.blocks)
        .take_while(|(a, b)| same(a, b))
        .count();
    for i in 0..k {
        for (name, t) in &parent_w.tensors {
            if name.starts_with(&format!("conv{i}.")) || name.starts_with(&format!("bn{i}.")) {
                init.tensors.insert(name.clone(), t.clone());
            }
        }
    }
    if k == child.blocks.len() && k == parent.blocks.len() && child.classes == parent.classes {
        for name in ["dense.weight", "dense.bias"] {
            init.tensors
                .insert(name.into(), parent_w.tensors[name].clone());
        }
    }
    k
}

// ---------------------------------------------------------------------------------------------
// The run directory
// ---------------------------------------------------------------------------------------------

/// An open run directory.
pub struct Run {
    pub dir: PathBuf,
    pub config: RunConfig,
    quiet: bool,
}

impl Run {
    pub fn candidate_dir(&self, id: &str) -> PathBuf {
        self.dir.join("candidates").join(id)
    }

    /// A finished candidate's record and weights, if both were written.
    pub fn load_candidate(&self, id: &str) -> Option<(Record, Weights)> {
        let d = self.candidate_dir(id);
        let rec: Record = read_json(&d.join("record.json")).ok()?;
        let w = Weights::load(&d.join("weights.safetensors")).ok()?;
        Some((rec, w))
    }

    fn log(&self, line: &str) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log.txt"))?;
        writeln!(f, "{line}")?;
        if !self.quiet {
            println!("{line}");
        }
        Ok(())
    }

    fn event(&self, value: serde_json::Value) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("events.jsonl"))?;
        let mut line = serde_json::to_string(&value)?;
        line.push('\n');
        f.write_all(line.as_bytes())?;
        f.sync_data()?;
        Ok(())
    }

    fn save_candidate(&self, rec: &Record, w: &Weights, c: &Cost) -> Result<()> {
        let d = self.candidate_dir(&rec.id);
        write_json(&d.join("spec.json"), &rec.spec)?;
        write_json(&d.join("cost.json"), c)?;
        w.save(&d.join("weights.safetensors"))?;
        // The record goes last: its presence marks the candidate as complete.
        write_json(&d.join("record.json"), rec)
    }

    fn save_best(&self, rec: &Record, w: &Weights, c: &Cost) -> Result<()> {
        let d = self.dir.join("best");
        w.save(&d.join("weights.safetensors"))?;
        write_json(&d.join("spec.json"), &rec.spec)?;
        write_json(&d.join("cost.json"), c)?;
        write_json(&d.join("record.json"), rec)
    }

    /// The best model recorded in the run: spec, weights and record.
    pub fn best(&self) -> Result<(Record, Weights)> {
        let d = self.dir.join("best");
        let rec: Record = read_json(&d.join("record.json"))
            .with_context(|| format!("{} has no best model yet", self.dir.display()))?;
        let w = Weights::load(&d.join("weights.safetensors"))?;
        w.check(&rec.spec)?;
        Ok((rec, w))
    }
}

/// Open an existing run directory.
pub fn open_run(dir: &Path) -> Result<Run> {
    let config: RunConfig = read_json(&dir.join("config.json")).with_context(|| {
        format!(
            "{} is not a run directory (no readable config.json)",
            dir.display()
        )
    })?;
    Ok(Run {
        dir: dir.to_path_buf(),
        config,
        quiet: true,
    })
}

/// Load the data a run was configured with.
pub fn load_data(source: &DataSource, seed: u64) -> Result<Splits> {
    Ok(match source {
        DataSource::Synthetic { seed } => data::synthetic_splits(*seed),
        DataSource::Dir {
            path,
            limit_per_class,
        } => {
            let opts = LoadOptions {
                limit_per_class: *limit_per_class,
                seed,
                ..LoadOptions::default()
            };
            data::load_dir(path, &opts)
                .with_context(|| format!("cannot load the dataset {}", path.display()))?
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The search
// ---------------------------------------------------------------------------------------------

fn build_config(a: &SearchArgs) -> Result<RunConfig> {
    let target = target::resolve(&a.target)?;
    let mut limits = target.limits();
    if let Some(v) = a.max_params {
        limits.max_params = v;
    }
    if let Some(v) = a.max_flops {
        limits.max_flops = v;
    }
    if let Some(v) = a.max_tensor {
        limits.max_tensor = v;
    }
    if let Some(v) = a.max_flash {
        limits.max_flash_bytes = v;
    }
    if let Some(v) = a.max_ram {
        limits.max_ram_bytes = v;
    }
    if a.folds < 2 {
        bail!("--folds must be at least 2");
    }
    if a.epochs == 0 || a.batch_size == 0 || a.children == 0 {
        bail!("--epochs, --batch-size and --children must be positive");
    }
    if a.max_depth == 0 {
        bail!("--max-depth must be at least 1");
    }
    let base = match a.training {
        Training::Proxy => TrainConfig::proxy(),
        Training::Full => TrainConfig::full(),
    };
    let train = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        learning_rate: a.learning_rate,
        early_stop_patience: a.patience.unwrap_or(base.early_stop_patience),
        lr_patience: a.lr_patience.unwrap_or(base.lr_patience),
        lr_factor: a.lr_factor.unwrap_or(base.lr_factor),
        max_steps_per_epoch: a.steps_per_epoch,
        ..base
    };
    let data = match &a.data {
        Some(p) => DataSource::Dir {
            path: std::fs::canonicalize(p)
                .with_context(|| format!("dataset directory {} not found", p.display()))?,
            limit_per_class: a.limit_per_class,
        },
        None => DataSource::Synthetic { seed: a.seed },
    };
    Ok(RunConfig {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        target,
        limits,
        data,
        space: SearchSpace {
            max_depth: a.max_depth,
            ..SearchSpace::default()
        },
        generations: a.generations,
        children: a.children,
        mutations: a.mutations,
        random_start: a.random_start,
        random_walk: a.random_walk,
        seed: a.seed,
        training: a.training,
        folds: a.folds,
        metric: a.metric,
        train,
        inherit: !a.no_inherit,
        max_tries: a.max_tries,
        verify: a.verify,
    })
}

/// What training one candidate produced.
struct Trained {
    weights: Weights,
    /// Validation metrics, averaged over folds for full training.
    val: Metrics,
    epochs_run: usize,
    best_epoch: usize,
    seconds: f64,
    samples_per_sec: f64,
    history: Vec<train::EpochLog>,
}

/// Train one candidate according to the run's training mode.
fn train_candidate(
    spec: &NetSpec,
    init: &Weights,
    train_set: &Dataset,
    folds: &[Vec<usize>],
    cfg: &RunConfig,
    seed: u64,
    bar: &ProgressBar,
) -> Result<Trained> {
    let fold_count = match cfg.training {
        Training::Proxy => 1,
        Training::Full => folds.len(),
    };
    let mut results = Vec::new();
    for f in 0..fold_count {
        let val_idx = &folds[f];
        let tr_idx: Vec<usize> = folds
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != f)
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        let (tr, val) = (train_set.subset(&tr_idx), train_set.subset(val_idx));
        let out = train::train(
            spec,
            init,
            &tr,
            &val,
            &cfg.train,
            seed.wrapping_add(f as u64),
            &mut |done, total| {
                bar.set_length((total * fold_count) as u64);
                bar.set_position((f * total + done) as u64);
            },
        )?;
        results.push(out);
    }
    let n = results.len() as f64;
    // Mean validation metrics over folds; the weights of the best fold are kept.
    let mut val = results[0].val.clone();
    if results.len() > 1 {
        val.accuracy = results.iter().map(|r| r.val.accuracy).sum::<f64>() / n;
        val.weighted_precision = results
            .iter()
            .map(|r| r.val.weighted_precision)
            .sum::<f64>()
            / n;
        val.weighted_recall = results.iter().map(|r| r.val.weighted_recall).sum::<f64>() / n;
        val.weighted_f1 = results.iter().map(|r| r.val.weighted_f1).sum::<f64>() / n;
        val.macro_f1 = results.iter().map(|r| r.val.macro_f1).sum::<f64>() / n;
        val.loss = Some(results.iter().filter_map(|r| r.val.loss).sum::<f64>() / n);
        val.samples = results.iter().map(|r| r.val.samples).sum();
        for r in &results[1..] {
            for (row, other) in val.confusion.iter_mut().zip(&r.val.confusion) {
                for (a, b) in row.iter_mut().zip(other) {
                    *a += b;
                }
            }
        }
    }
    let best = results
        .iter()
        .max_by(|a, b| cfg.metric.of(&a.val).total_cmp(&cfg.metric.of(&b.val)))
        .expect("at least one fold");
    let seconds = results.iter().map(|r| r.seconds).sum();
    let sps = results.iter().map(|r| r.train_samples_per_sec).sum::<f64>() / n;
    Ok(Trained {
        weights: best.weights.clone(),
        val,
        epochs_run: best.epochs_run,
        best_epoch: best.best_epoch,
        seconds,
        samples_per_sec: sps,
        history: best.history.clone(),
    })
}

struct Session<'a> {
    run: &'a Run,
    train_set: Dataset,
    folds: Vec<Vec<usize>>,
    started: Instant,
    time_budget: Option<Duration>,
    trained: usize,
    overall: ProgressBar,
    steps: ProgressBar,
    best: Option<(Record, Weights)>,
}

impl Session<'_> {
    /// Evaluate (or load) one candidate. `None` when the time budget stopped the run first.
    fn candidate(
        &mut self,
        generation: usize,
        index: usize,
        spec: &NetSpec,
        c: &Cost,
        parent: Option<&(Record, Weights)>,
    ) -> Result<Option<(Record, Weights)>> {
        let id = candidate_id(generation, index);
        let cfg = &self.run.config;
        if let Some((rec, w)) = self.run.load_candidate(&id) {
            if rec.spec != *spec {
                bail!(
                    "{}: candidate {id} on disk differs from the one this configuration generates; \
                     the run directory was written by a different configuration or version",
                    self.run.dir.display()
                );
            }
            self.overall.inc(1);
            self.consider_best(&rec, &w, c)?;
            return Ok(Some((rec, w)));
        }
        if let Some(budget) = self.time_budget {
            if self.started.elapsed() >= budget {
                return Ok(None);
            }
        }
        let measured = if cfg.verify {
            Some(measure(spec, cfg)?)
        } else {
            None
        };
        let seed = rng_for(cfg.seed, generation, 3 + index as u64).random::<u64>();
        let mut init = train::initial_weights(spec, seed);
        let inherited = match parent {
            Some((prec, pw)) if cfg.inherit => inherit(spec, &prec.spec, pw, &mut init),
            _ => 0,
        };
        self.steps.reset();
        self.steps.set_message(format!("{id} {}", spec.summary()));
        let t = train_candidate(
            spec,
            &init,
            &self.train_set,
            &self.folds,
            cfg,
            seed,
            &self.steps,
        )?;
        let rec = Record {
            id: id.clone(),
            generation,
            index,
            parent: parent.map(|p| p.0.id.clone()),
            spec: spec.clone(),
            summary: spec.summary(),
            params: c.params,
            flops: c.flops,
            max_tensor: c.max_tensor,
            ram_bytes: c.ram_bytes,
            flash_bytes: c.flash_bytes,
            score: cfg.metric.of(&t.val),
            val: t.val,
            epochs_run: t.epochs_run,
            best_epoch: t.best_epoch,
            inherited_blocks: inherited,
            train_seconds: t.seconds,
            train_samples_per_sec: t.samples_per_sec,
            measured,
            history: t.history,
        };
        self.run.save_candidate(&rec, &t.weights, c)?;
        self.run
            .event(serde_json::json!({"event": "candidate", "record": &rec}))?;
        self.overall.inc(1);
        self.trained += 1;
        self.overall.suspend(|| {
            self.run.log(&format!(
                "{id}  {}  params {}  flops {}  ram {} B  flash {} B{}  val {}  ({:.1} s)",
                rec.summary,
                rec.params,
                rec.flops,
                rec.ram_bytes,
                rec.flash_bytes,
                rec.measured.map_or(String::new(), |m| format!(
                    " (ELF: ram {} B, flash {} B)",
                    m.ram_bytes, m.flash_bytes
                )),
                rec.val.brief(),
                rec.train_seconds
            ))
        })?;
        self.consider_best(&rec, &t.weights, c)?;
        Ok(Some((rec, t.weights)))
    }

    fn consider_best(&mut self, rec: &Record, w: &Weights, c: &Cost) -> Result<()> {
        let better = self.best.as_ref().is_none_or(|(b, _)| rec.score > b.score);
        if better {
            self.run.save_best(rec, w, c)?;
            self.best = Some((rec.clone(), w.clone()));
        }
        Ok(())
    }
}

fn progress_bars(quiet: bool, total: u64) -> (ProgressBar, ProgressBar) {
    // Bars draw on stderr, and only for a person watching: not when either stream is redirected.
    let visible = !quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let mp = indicatif::MultiProgress::with_draw_target(if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let overall = mp.add(ProgressBar::new(total));
    overall.set_style(
        ProgressStyle::with_template("candidates {pos}/{len} [{bar:30}] {elapsed} (ETA {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let steps = mp.add(ProgressBar::new(1));
    steps.set_style(
        ProgressStyle::with_template("  steps {pos}/{len} [{bar:30}] ETA {eta}  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    (overall, steps)
}

/// `nas search`.
pub fn run(a: SearchArgs) -> Result<()> {
    let (run, resumed) = match &a.resume {
        Some(dir) => {
            let mut r = open_run(dir)?;
            r.quiet = a.quiet || a.json;
            (r, true)
        }
        None => {
            let config = build_config(&a)?;
            let name = a.name.clone().unwrap_or_else(|| {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                format!("{}-s{}-{secs}", config.target.name, config.seed)
            });
            let dir = a
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs").join(&name));
            if dir.join("config.json").exists() {
                bail!(
                    "{} already holds a run; continue it with `nas search --resume {}` or choose another --out",
                    dir.display(),
                    dir.display()
                );
            }
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create run directory {}", dir.display()))?;
            write_json(&dir.join("config.json"), &config)?;
            (
                Run {
                    dir,
                    config,
                    quiet: a.quiet || a.json,
                },
                false,
            )
        }
    };
    let summary = search(&run, resumed, a.time_budget)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}

/// Run (or continue) the search of an open run directory.
pub fn search(run: &Run, resumed: bool, time_budget: Option<Duration>) -> Result<Summary> {
    let cfg = &run.config;
    let splits = load_data(&cfg.data, cfg.seed)?;
    if splits.synthetic {
        run.log(
            "NOTE: no --data given: searching on a SYNTHETIC dataset (deterministic byte patterns \
             shaped like sessions) to show the tool working. Pass --data DIR for real data.",
        )?;
    }
    let classes = splits.train.classes;
    let input_len = splits.train.len;
    run.log(&format!(
        "{} run {} on {}: {} train / {} test samples of {} bytes, {} classes; budgets: params ≤ {}, \
         flops ≤ {}, max tensor ≤ {}, flash ≤ {} B, RAM ≤ {} B",
        if resumed { "resuming" } else { "starting" },
        run.dir.display(),
        cfg.target.name,
        splits.train.n(),
        splits.test.n(),
        input_len,
        classes,
        cfg.limits.max_params,
        cfg.limits.max_flops,
        cfg.limits.max_tensor,
        cfg.limits.max_flash_bytes,
        cfg.limits.max_ram_bytes
    ))?;
    let folds = data::stratified_kfold(&splits.train.labels, classes, cfg.folds, cfg.seed)?;
    let total = (1 + cfg.generations * cfg.children) as u64;
    let (overall, steps) = progress_bars(run.quiet, total);
    let mut s = Session {
        run,
        train_set: splits.train.clone(),
        folds,
        started: Instant::now(),
        time_budget,
        trained: 0,
        overall,
        steps,
        best: None,
    };

    let (spec0, cost0) = initial_parent(input_len, classes, cfg)?;
    let Some(mut parent) = s.candidate(0, 0, &spec0, &cost0, None)? else {
        return stopped(&s);
    };
    let mut complete = true;
    'generations: for g in 1..=cfg.generations {
        let mut rng = rng_for(cfg.seed, g, 2);
        let mut children = Vec::new();
        for i in 0..cfg.children {
            let (child, c) = feasible_child(&parent.0.spec, &mut rng, cfg)?;
            match s.candidate(g, i, &child, &c, Some(&parent))? {
                Some(done) => children.push(done),
                None => {
                    complete = false;
                    break 'generations;
                }
            }
        }
        let best_child = children
            .iter()
            .max_by(|a, b| a.0.score.total_cmp(&b.0.score))
            .expect("children > 0")
            .clone();
        let next = if cfg.random_walk || best_child.0.score > parent.0.score {
            best_child
        } else {
            parent.clone()
        };
        s.overall.suspend(|| {
            run.log(&format!(
                "generation {g}: parent {} → {} (score {:.4}); best so far {} ({:.4})",
                parent.0.id,
                next.0.id,
                next.0.score,
                s.best.as_ref().map_or("-", |b| b.0.id.as_str()),
                s.best.as_ref().map_or(0.0, |b| b.0.score)
            ))
        })?;
        run.event(
            serde_json::json!({"event": "generation", "generation": g, "parent": next.0.id}),
        )?;
        parent = next;
    }
    s.overall.finish_and_clear();
    s.steps.finish_and_clear();
    if !complete {
        return stopped(&s);
    }
    finish(&s, &splits)
}

fn stopped(s: &Session) -> Result<Summary> {
    s.overall.finish_and_clear();
    s.steps.finish_and_clear();
    s.run.log(&format!(
        "time budget reached after {:.0} s; the run is saved. Continue with: nas search --resume {}",
        s.started.elapsed().as_secs_f64(),
        s.run.dir.display()
    ))?;
    s.run
        .event(serde_json::json!({"event": "stopped", "reason": "time budget"}))?;
    let (rec, _) = s
        .best
        .clone()
        .context("the time budget ended the run before any candidate finished")?;
    let c = cost_of(&rec.spec, &s.run.config.target, &s.run.config.limits)?;
    Ok(Summary {
        run: s.run.dir.clone(),
        target: s.run.config.target.name.clone(),
        test: None,
        winner: rec,
        cost: c,
        candidates: 0,
        trained_this_session: s.trained,
        seconds_this_session: s.started.elapsed().as_secs_f64(),
        seconds_training_total: 0.0,
        complete: false,
    })
}

fn finish(s: &Session, splits: &Splits) -> Result<Summary> {
    let run = s.run;
    let (rec, w) = s.best.clone().context("no candidate was evaluated")?;
    let c = cost_of(&rec.spec, &run.config.target, &run.config.limits)?;
    // The test split, once, for the winner only.
    let test = train::evaluate(&rec.spec, &w, &splits.test)?;
    write_json(&run.dir.join("best").join("test.json"), &test)?;
    let records: Vec<Record> = std::fs::read_dir(run.dir.join("candidates"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| read_json::<Record>(&e.path().join("record.json")).ok())
        .collect();
    let summary = Summary {
        run: run.dir.clone(),
        target: run.config.target.name.clone(),
        winner: rec.clone(),
        cost: c.clone(),
        test: Some(test.clone()),
        candidates: records.len(),
        trained_this_session: s.trained,
        seconds_this_session: s.started.elapsed().as_secs_f64(),
        seconds_training_total: records.iter().map(|r| r.train_seconds).sum(),
        complete: true,
    };
    write_json(&run.dir.join("summary.json"), &summary)?;
    run.event(serde_json::json!({"event": "finished", "winner": rec.id}))?;
    let mut text = String::new();
    text.push_str(&format!(
        "\nwinner {}: {}\n  validation: {}\n  test:       {}  (test split, used once)\n",
        rec.id,
        rec.summary,
        rec.val.brief(),
        test.brief()
    ));
    text.push_str(&format!(
        "  {} candidates, {:.0} s of training in all, {:.0} s this session\n\n",
        summary.candidates, summary.seconds_training_total, summary.seconds_this_session
    ));
    text.push_str(&c.table(&run.config.target.name));
    text.push_str(&format!(
        "\nnext: nas export --run {} --lang c --out model/   |   nas verify --run {} --target {}",
        run.dir.display(),
        run.dir.display(),
        run.config.target.name
    ));
    for line in text.lines() {
        run.log(line)?;
    }
    write_atomic(&run.dir.join("summary.txt"), text.as_bytes())?;
    Ok(summary)
}

// ---------------------------------------------------------------------------------------------
// nas eval
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory written by `nas search`
    #[arg(long)]
    pub run: PathBuf,
    /// Evaluate on this dataset's test split instead of the run's own data
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
}

/// `nas eval`: the winner's test metrics and confusion matrix.
pub fn eval(a: EvalArgs) -> Result<()> {
    let run = open_run(&a.run)?;
    let (rec, w) = run.best()?;
    let source = match &a.data {
        Some(p) => DataSource::Dir {
            path: p.clone(),
            limit_per_class: None,
        },
        None => run.config.data.clone(),
    };
    let splits = load_data(&source, run.config.seed)?;
    if splits.test.len != rec.spec.input_len {
        bail!(
            "the test samples have length {}, the winner expects {}",
            splits.test.len,
            rec.spec.input_len
        );
    }
    if splits.test.classes > rec.spec.classes {
        bail!(
            "the test split has {} classes, the winner was trained for {}",
            splits.test.classes,
            rec.spec.classes
        );
    }
    let m = train::evaluate(&rec.spec, &w, &splits.test)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"winner": rec.id, "spec": rec.spec, "test": m})
            )?
        );
    } else {
        println!("winner {}: {}", rec.id, rec.summary);
        println!(
            "test split ({} samples{}): {}",
            m.samples,
            if splits.synthetic { ", synthetic" } else { "" },
            m.brief()
        );
        println!(
            "weighted precision {:.2} %  weighted recall {:.2} %\n",
            100.0 * m.weighted_precision,
            100.0 * m.weighted_recall
        );
        print!("{}", m.confusion_table(None));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RunConfig {
        let args = SearchArgs::try_parse_from_default();
        build_config(&args).unwrap()
    }

    impl SearchArgs {
        fn try_parse_from_default() -> SearchArgs {
            #[derive(clap::Parser)]
            struct P {
                #[command(flatten)]
                a: SearchArgs,
            }
            <P as clap::Parser>::parse_from(["x"]).a
        }
    }

    #[test]
    fn mutation_sequence_is_deterministic_and_feasible() {
        let cfg = cfg();
        let parent = NetSpec::smart_start(784, 12);
        let make = || {
            let mut rng = rng_for(42, 1, 2);
            (0..8)
                .map(|_| feasible_child(&parent, &mut rng, &cfg).unwrap())
                .collect::<Vec<_>>()
        };
        let (a, b) = (make(), make());
        for ((sa, ca), (sb, _)) in a.iter().zip(&b) {
            assert_eq!(sa, sb);
            assert!(ca.fits);
            sa.validate().unwrap();
            assert!(sa.blocks.len() <= cfg.space.max_depth);
        }
        assert!(
            a.iter().any(|(s, _)| *s != parent),
            "mutations changed nothing"
        );
    }

    #[test]
    fn impossible_budget_names_the_budget() {
        let mut cfg = cfg();
        cfg.limits.max_params = 10;
        let e = initial_parent(784, 12, &cfg).unwrap_err().to_string();
        assert!(
            e.contains("params") && e.contains("exceeds the budget 10"),
            "{e}"
        );

        // A budget the smart start breaks but small nets meet: the child search names it.
        let mut cfg2 = self::cfg();
        cfg2.limits.max_flops = 20_000;
        cfg2.max_tries = 50;
        let parent = NetSpec::smart_start(784, 12);
        let e = feasible_child(&parent, &mut rng_for(1, 1, 2), &cfg2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("flops ≤ 20000"), "{e}");
    }

    #[test]
    fn inheritance_copies_unchanged_leading_blocks() {
        let parent = NetSpec::smart_start(784, 12);
        let pw = Weights::random(&parent, 1);
        let mut child = parent.clone();
        child.blocks[1].filters = 50;
        let mut init = train::initial_weights(&child, 2);
        assert_eq!(inherit(&child, &parent, &pw, &mut init), 1);
        assert_eq!(init.get("conv0.weight"), pw.get("conv0.weight"));
        assert_ne!(init.get("dense.bias"), pw.get("dense.bias"));
        init.check(&child).unwrap();
        let mut same = train::initial_weights(&parent, 2);
        assert_eq!(inherit(&parent, &parent, &pw, &mut same), 2);
        assert_eq!(same, pw);
    }
}
