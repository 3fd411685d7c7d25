//! `nas search`: its arguments, their validation into a [`RunConfig`], and starting or resuming
//! a run.

use crate::net::SearchSpace;
use crate::search::{
    self, DataSource, Executor, Metric, Objective, Run, RunConfig, SlurmOptions, Training,
};
use crate::target;
use crate::train::TrainConfig;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

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
    /// How the next parent is chosen. score: the child with the best validation score (with
    /// elitism, only if it beats the parent). pareto: a child on the run's Pareto front over
    /// (validation score ↑, flash ↓, RAM ↓, estimated latency ↓), drawn at random with a
    /// generator seeded by --seed and the generation (so reruns and resumes draw the same);
    /// when no child of the generation is on the front, the score rule applies. The front is
    /// written to pareto.json either way.
    #[arg(long, value_enum, default_value_t = Objective::Score)]
    pub objective: Objective,
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
    /// Data-parallel shards of each mini-batch, trained on the cores at once with their
    /// gradients summed; BatchNorm normalises each shard by its own statistics. Results depend
    /// on this, not on the number of cores
    #[arg(long, default_value_t = crate::train::DEFAULT_SHARDS)]
    pub shards: usize,
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
    /// Cap the steps of an epoch, final training included (quick runs)
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
    /// Latency budget for one inference, in milliseconds, by the target's latency model
    /// (instructions estimated from a QEMU calibration, at the profile's clock and its assumed
    /// cycles per instruction; see `nas cost`). Needs a [latency] section in the profile
    #[arg(long, value_name = "MS")]
    pub max_latency_ms: Option<f64>,
    /// Wall time for this session, final training included (e.g. 30m, 2h): the evolution stops
    /// starting candidates when what is left is the estimated final training of the best so
    /// far, which then runs (it starts no epoch that would overrun the budget and keeps its best
    /// epoch so far) and is delivered with its test figure. `--resume` continues the evolution
    /// later
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
    /// Element type the candidates are deployed in: int8 costs them as int8 kernels and scores
    /// them after post-training quantization (calibrated on their training folds), so
    /// selection sees the deployed accuracy
    #[arg(long, value_enum, default_value_t = crate::quant::Dtype::F32)]
    pub dtype: crate::quant::Dtype,
    /// Final training of the delivered model: at most this many epochs with the full routine
    /// (early stopping with the best epoch restored, learning-rate plateau)
    #[arg(long, default_value_t = 60)]
    pub final_epochs: usize,
    /// Mini-batch size of the final training
    #[arg(long, default_value_t = 64)]
    pub final_batch_size: usize,
    /// Early-stopping patience of the final training, in epochs
    #[arg(long, default_value_t = 12)]
    pub final_patience: usize,
    /// Give final training to the best K distinct architectures and deliver the best of them
    /// by final validation score; 0 delivers the best candidate with its proxy training
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub final_top: usize,
    /// Start final training from scratch instead of from the candidate's proxy weights
    #[arg(long)]
    pub final_from_scratch: bool,
    /// Train this many candidates at once, each in a worker process on this machine (the cores
    /// are split between them); the results are those of --jobs 1. Each candidate's batches
    /// already run on --shards cores, so this pays where there are more cores than shards
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub jobs: u64,
    /// Where candidates are trained: on this machine, or as one Slurm job array per generation
    /// (the run directory must be on a filesystem the nodes share)
    #[arg(long, value_enum, default_value_t = ExecutorKind::Local)]
    pub executor: ExecutorKind,
    /// Slurm partition for --executor slurm
    #[arg(long)]
    pub partition: Option<String>,
    /// Further sbatch argument for --executor slurm (repeatable), e.g. --sbatch-arg=--cpus-per-task=4
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Print the run summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// No progress bars or log lines on the terminal
    #[arg(long, short)]
    pub quiet: bool,
}

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
    limits.max_latency_ms = a.max_latency_ms;
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
        shards: a.shards,
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
    let config = RunConfig {
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
        dtype: a.dtype,
        final_train: TrainConfig {
            epochs: a.final_epochs,
            batch_size: a.final_batch_size,
            early_stop_patience: a.final_patience,
            learning_rate: a.learning_rate,
            max_steps_per_epoch: a.steps_per_epoch,
            shards: a.shards,
            ..TrainConfig::delivery()
        },
        final_top: a.final_top,
        final_warm_start: !a.final_from_scratch,
        objective: a.objective,
    };
    config.validate()?;
    Ok(config)
}

/// `nas search`.
/// `--executor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// This machine: in this process, or in --jobs worker processes
    Local,
    /// Slurm job arrays (sbatch/squeue on this host)
    Slurm,
}

fn executor(a: &SearchArgs) -> Result<Executor> {
    match a.executor {
        ExecutorKind::Local => anyhow::ensure!(
            a.partition.is_none() && a.sbatch_args.is_empty(),
            "--partition and --sbatch-arg are for --executor slurm"
        ),
        ExecutorKind::Slurm => anyhow::ensure!(
            a.jobs == 1,
            "--jobs is for the local executor: with --executor slurm every child of a \
             generation is a task of one job array"
        ),
    }
    Ok(match a.executor {
        ExecutorKind::Slurm => Executor::Slurm(SlurmOptions {
            partition: a.partition.clone(),
            sbatch_args: a.sbatch_args.clone(),
            poll: Duration::from_secs(1),
        }),
        ExecutorKind::Local if a.jobs > 1 => Executor::Local {
            jobs: a.jobs as usize,
        },
        ExecutorKind::Local => Executor::Inline,
    })
}

pub fn run(a: SearchArgs) -> Result<()> {
    let executor = executor(&a)?;
    let quiet = a.quiet || a.json;
    let (run, resumed) = match &a.resume {
        Some(dir) => (Run::open(dir)?.quiet(quiet), true),
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
            (Run::create(&dir, config)?.quiet(quiet), false)
        }
    };
    let opts = search::SessionOptions {
        resumed,
        time_budget: a.time_budget,
        executor,
        reserve_after: Some(crate::report::time_estimate),
    };
    let summary = search::search(&run, &opts)?;
    // The report is a view of the run: failing to draw it does not fail the search.
    let page = run.dir.join(crate::report::REPORT_FILE);
    match crate::report::write_report(&run.dir, &page) {
        Ok(_) if !quiet => println!("report: {}", page.display()),
        Ok(_) => {}
        Err(e) => eprintln!("warning: the report was not written: {e:#}"),
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}

/// The configuration `nas search` builds with every argument at its default (for tests of the
/// search stage).
#[cfg(test)]
pub(crate) fn default_config() -> RunConfig {
    #[derive(clap::Parser)]
    struct P {
        #[command(flatten)]
        a: SearchArgs,
    }
    build_config(&<P as clap::Parser>::parse_from(["nas"]).a).expect("defaults are valid")
}
