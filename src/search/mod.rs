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

mod eval;
mod evolve;
mod rundir;

pub use eval::{eval, EvalArgs};
pub use evolve::{feasible_child, inherit, initial_parent, measure, mutate, MeasuredFootprint};
pub use rundir::{candidate_id, load_data, open_run, Record, Run, Summary};

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
use std::collections::HashMap;
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
    /// Training mini-batch size
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Adam's initial learning rate
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
    /// Architectures evaluated so far (spec JSON → candidate id), so that a mutation that
    /// recreates an earlier network reuses its result instead of training it again.
    seen: HashMap<String, String>,
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
            self.seen.entry(spec.to_json()).or_insert(id);
            self.overall.inc(1);
            self.consider_best(&rec, &w, c)?;
            return Ok(Some((rec, w)));
        }
        if let Some(earlier) = self.seen.get(&spec.to_json()).cloned() {
            return self
                .reuse(&earlier, id, generation, index, parent, c)
                .map(Some);
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
            duplicate_of: None,
            history: t.history,
        };
        self.run.save_candidate(&rec, &t.weights, c)?;
        self.seen.insert(spec.to_json(), rec.id.clone());
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

    /// Record candidate `id` as the same architecture as the earlier candidate `earlier`: its
    /// trained weights and validation result are taken over, nothing is trained.
    fn reuse(
        &mut self,
        earlier: &str,
        id: String,
        generation: usize,
        index: usize,
        parent: Option<&(Record, Weights)>,
        c: &Cost,
    ) -> Result<(Record, Weights)> {
        let (orig, w) = self.run.load_candidate(earlier).with_context(|| {
            format!(
                "candidate {earlier} is missing from {}",
                self.run.dir.display()
            )
        })?;
        let rec = Record {
            id,
            generation,
            index,
            parent: parent.map(|p| p.0.id.clone()),
            duplicate_of: Some(orig.duplicate_of.clone().unwrap_or(orig.id.clone())),
            train_seconds: 0.0,
            inherited_blocks: 0,
            ..orig
        };
        self.run.save_candidate(&rec, &w, c)?;
        self.run
            .event(serde_json::json!({"event": "candidate", "record": &rec}))?;
        self.overall.inc(1);
        self.overall.suspend(|| {
            self.run.log(&format!(
                "{}  {}  same architecture as {}: its result is reused, nothing trained",
                rec.id,
                rec.summary,
                rec.duplicate_of.as_deref().unwrap_or("?")
            ))
        })?;
        self.consider_best(&rec, &w, c)?;
        Ok((rec, w))
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
        seen: HashMap::new(),
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
