//! `nas search`: its arguments, their validation into a [`RunConfig`], and starting or resuming
//! a run.

use crate::net::SearchSpace;
use crate::search::rundir::{self, DirKind, OutDir};
use crate::search::{
    self, DataSource, Executor, Metric, Objective, Run, RunConfig, RunSummary, SlurmOptions,
    Training,
};
use crate::target;
use crate::train::TrainConfig;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// `nas search`'s arguments, and which of them the command line gave (a resumed run refuses
/// the ones that would change it and applies the ones that extend it; defaults say nothing).
#[derive(Debug)]
pub struct SearchArgs {
    pub flags: SearchFlags,
    /// The ids of the arguments given on the command line (not defaulted).
    pub given: Vec<&'static str>,
}

impl std::ops::Deref for SearchArgs {
    type Target = SearchFlags;
    fn deref(&self) -> &SearchFlags {
        &self.flags
    }
}

/// The arguments a resumed run refuses: they make the run what it is, so its `config.json`
/// keeps them. `(argument id, flag, where config.json holds it)`.
const IDENTITY: &[(&str, &str, &str)] = &[
    ("target", "--target", "/target/name"),
    ("seed", "--seed", "/seed"),
    ("children", "--children", "/children"),
    ("mutations", "--mutations", "/mutations"),
    ("max_depth", "--max-depth", "/space/max_depth"),
    (
        "embedding_dims",
        "--embedding-dims",
        "/space/embedding_dims",
    ),
    ("no_embedding", "--no-embedding", "/space/embedding_dims"),
    ("random_start", "--random-start", "/random_start"),
    ("random_walk", "--random-walk", "/random_walk"),
    ("objective", "--objective", "/objective"),
    ("training", "--training", "/training"),
    ("folds", "--folds", "/folds"),
    ("metric", "--metric", "/metric"),
    ("epochs", "--epochs", "/train/epochs"),
    ("batch_size", "--batch-size", "/train/batch_size"),
    ("shards", "--shards", "/train/shards"),
    ("learning_rate", "--learning-rate", "/train/learning_rate"),
    ("patience", "--patience", "/train/early_stop_patience"),
    ("lr_patience", "--lr-patience", "/train/lr_patience"),
    ("lr_factor", "--lr-factor", "/train/lr_factor"),
    (
        "steps_per_epoch",
        "--steps-per-epoch",
        "/train/max_steps_per_epoch",
    ),
    (
        "limit_per_class",
        "--limit-per-class",
        "/data/limit_per_class",
    ),
    (
        "relabel_conflicts",
        "--relabel-conflicts",
        "/data/relabel_conflicts",
    ),
    ("no_inherit", "--no-inherit", "/inherit"),
    ("max_params", "--max-params", "/limits/max_params"),
    ("max_flops", "--max-flops", "/limits/max_flops"),
    ("max_tensor", "--max-tensor", "/limits/max_tensor"),
    ("max_flash", "--max-flash", "/limits/max_flash_bytes"),
    ("max_ram", "--max-ram", "/limits/max_ram_bytes"),
    (
        "max_latency_ms",
        "--max-latency-ms",
        "/limits/max_latency_ms",
    ),
    ("budgets", "--budgets", "/limits/max_params"),
    ("max_tries", "--max-tries", "/max_tries"),
    ("verify", "--verify", "/verify"),
    ("dtype", "--dtype", "/dtype"),
    ("final_epochs", "--final-epochs", "/final_train/epochs"),
    (
        "final_batch_size",
        "--final-batch-size",
        "/final_train/batch_size",
    ),
    (
        "final_patience",
        "--final-patience",
        "/final_train/early_stop_patience",
    ),
    ("final_top", "--final-top", "/final_top"),
    (
        "final_from_scratch",
        "--final-from-scratch",
        "/final_warm_start",
    ),
];

/// The arguments of one session, which a resumed run applies: `(argument id, flag)`.
const SESSION: &[(&str, &str)] = &[
    ("time_budget", "--time-budget"),
    ("jobs", "--jobs"),
    ("executor", "--executor"),
    ("partition", "--partition"),
    ("sbatch_args", "--sbatch-arg"),
];

impl clap::FromArgMatches for SearchArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(SearchArgs {
            flags: SearchFlags::from_arg_matches(m)?,
            given: given(m),
        })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.flags.update_from_arg_matches(m)?;
        self.given = given(m);
        Ok(())
    }
}

impl clap::Args for SearchArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        SearchFlags::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        SearchFlags::augment_args_for_update(cmd)
    }

    fn group_id() -> Option<clap::Id> {
        SearchFlags::group_id()
    }
}

/// The ids of [`IDENTITY`], [`SESSION`] and `generations` that the command line gave.
fn given(m: &clap::ArgMatches) -> Vec<&'static str> {
    IDENTITY
        .iter()
        .map(|(id, _, _)| *id)
        .chain(SESSION.iter().map(|(id, _)| *id))
        .chain(["generations"])
        .filter(|id| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        .collect()
}

#[derive(Debug, Args)]
pub struct SearchFlags {
    /// Target MCU: a name or alias from `nas targets`, or a path to a TOML profile
    #[arg(long, default_value = "stm32f401re")]
    pub target: String,
    /// Dataset directory (IDX files, see `nas data inspect`). Without it the search runs on a
    /// small synthetic dataset, to try the tool out
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Continue an interrupted run; its configuration is read from the run directory. The
    /// arguments that define a run (target, seed, budgets, training…) are refused with it:
    /// config.json keeps them. --generations continues a run further (raised, not lowered);
    /// --time-budget, --jobs and the executor apply to this session
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["data", "out", "name", "force"])]
    pub resume: Option<PathBuf>,
    /// Run directory (default: runs/<name>): new or empty
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run name, a plain name: the run goes to runs/<name> (default: <target>-<seed>-<unix
    /// time>)
    #[arg(long)]
    pub name: Option<String>,
    /// Write the run into a non-empty --out that holds other files (never over a run or a
    /// `nas train` directory)
    #[arg(long)]
    pub force: bool,
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
    /// Input embedding widths the search may try besides byte/255 (comma-separated). An
    /// embedding reads each byte as a symbol: a learned 256-row table of this many values per
    /// byte feeds the first block (256 × width parameters; width × the input length in the
    /// first activation). The smart start uses width 8 when it is listed
    #[arg(long, value_delimiter = ',', default_value = "4,8,16")]
    pub embedding_dims: Vec<usize>,
    /// Keep the input byte/255 (the seed's and the paper's representation): no embedding
    #[arg(long, conflicts_with = "embedding_dims")]
    pub no_embedding: bool,
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
    #[arg(long, value_parser = super::at_least_one)]
    pub limit_per_class: Option<usize>,
    /// Give every training sample whose bytes (DNS-format queries' random transaction IDs
    /// masked) occur under several labels the most frequent of them: background sessions that
    /// belong to no class (Windows' LLMNR lookups for `wpad`, SSDP) then teach one answer
    /// instead of noise. The test split is never changed; `nas data inspect` counts them.
    #[arg(long, requires = "data")]
    pub relabel_conflicts: bool,
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
    /// Which budgets a candidate must meet. seed: the profile's parameter and FLOP budgets
    /// (the seed's stand-ins for flash and compute) as well as flash, RAM and the largest
    /// tensor. hardware: flash, RAM, the largest tensor and --max-latency-ms only, the limits
    /// the chip really has; with --dtype int8 this admits the ~4× larger networks whose int8
    /// weights fit. --max-params / --max-flops still apply when given
    #[arg(long, value_enum, default_value_t = Budgets::Seed)]
    pub budgets: Budgets,
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
    #[arg(long, value_enum, default_value_t = crate::net::Dtype::F32)]
    pub dtype: crate::net::Dtype,
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

/// The budgets `nas search --budgets` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Budgets {
    /// The profile's parameter and FLOP budgets too (the seed's proxies)
    Seed,
    /// Flash, RAM, largest tensor and latency only
    Hardware,
}

fn build_config(a: &SearchArgs) -> Result<RunConfig> {
    let target = target::resolve(&a.target)?;
    let mut limits = target.limits();
    if a.budgets == Budgets::Hardware {
        limits.max_params = None;
        limits.max_flops = None;
    }
    if let Some(v) = a.max_params {
        limits.max_params = Some(v);
    }
    if let Some(v) = a.max_flops {
        limits.max_flops = Some(v);
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
            relabel_conflicts: a.relabel_conflicts,
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
            embedding_dims: if a.no_embedding {
                Vec::new()
            } else {
                a.embedding_dims.clone()
            },
            first_reads_every_byte: true,
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
    let terminal = std::sync::Arc::new(super::out::SearchTerminal::new(quiet));
    let (run, resumed) = match &a.resume {
        Some(dir) => {
            let mut run = Run::resume(dir)?;
            if let Some(note) = run.lock_note() {
                note!("note: {note}");
            }
            for note in resume_arguments(&a, &mut run)? {
                note!("note: {note}");
            }
            (run.observed(terminal), true)
        }
        None => {
            let config = build_config(&a)?;
            if let Some(name) = &a.name {
                rundir::check_run_name(name)?;
            }
            let dir = match (&a.out, &a.name) {
                (Some(out), _) => out.clone(),
                (None, Some(name)) => PathBuf::from("runs").join(name),
                (None, None) => {
                    let secs = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let name = format!("{}-s{}-{secs}", config.target.name, config.seed);
                    // The target's name comes from its profile: it must not lead out of runs/.
                    rundir::check_run_name(&name).with_context(|| {
                        format!(
                            "the target's name {:?} makes no run name: give --name or --out",
                            config.target.name
                        )
                    })?;
                    PathBuf::from("runs").join(name)
                }
            };
            let out = OutDir::claim(&dir, DirKind::Search, a.force)?;
            if let Some(note) = out.lock_note() {
                note!("note: {note}");
            }
            (Run::create(out, config)?.observed(terminal), false)
        }
    };
    let opts = search::SessionOptions {
        resumed,
        time_budget: a.time_budget,
        executor,
        reserve_after: Some(crate::report::time_estimate),
    };
    let summary = search::search(&run, &opts)?;
    // summary.txt, also logged: the file first, so a closed stdout stops the log lines, not
    // the run's record.
    let text = summary_text(&run, &summary);
    crate::util::write_atomic(&run.files().summary_txt(), text.as_bytes())?;
    for line in text.lines() {
        run.log(line)?;
    }
    // The report is a view of the run: failing to draw it does not fail the search.
    let page = run.files().report();
    match crate::report::write_report(&run.dir, &page) {
        Ok(_) if !quiet => outln!("report: {}", page.display())?,
        Ok(_) => {}
        Err(e) => note!("warning: the report was not written: {e:#}"),
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(())
}

/// What the arguments given with `--resume` do to the run: the ones that define it are refused
/// (all named at once, each with the value `config.json` keeps); a larger `--generations`
/// continues the run further and is saved in `config.json`. Returns the notes to show: what
/// was applied.
fn resume_arguments(a: &SearchArgs, run: &mut Run) -> Result<Vec<String>> {
    let cfg = serde_json::to_value(&run.config)?;
    let refused: Vec<String> = IDENTITY
        .iter()
        .filter(|(id, _, _)| a.given.contains(id))
        .map(|(_, flag, at)| {
            let kept = cfg.pointer(at).map_or("unset".to_string(), |v| match v {
                serde_json::Value::Null => "unset".to_string(),
                v => v.to_string(),
            });
            format!("{flag} (config.json keeps {}: {kept})", &at[1..])
        })
        .collect();
    if !refused.is_empty() {
        bail!(
            "--resume continues {} as it was configured; these arguments would change the run \
             and are refused: {}. Drop them, or start a new run with --out",
            run.dir.display(),
            refused.join(", ")
        );
    }
    let mut notes = Vec::new();
    if a.given.contains(&"generations") {
        let was = run.config.generations;
        let want = a.generations;
        if want < was {
            bail!(
                "--generations {want}: {} is configured for {was} generations; a resumed run \
                 continues further, it does not stop earlier (--time-budget ends a session early)",
                run.dir.display()
            );
        }
        if want > was {
            run.update_config(|c| c.generations = want)?;
            notes.push(format!(
                "--generations {want}: the run continues to generation {want} (config.json said \
                 {was}; updated)"
            ));
        }
    }
    for (id, flag) in SESSION {
        if a.given.contains(id) {
            notes.push(format!("{flag} applies to this session"));
        }
    }
    Ok(notes)
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

/// `summary.txt`, also logged: the winner's validation and test figures, its cost table, the
/// Pareto front and what to do next.
fn summary_text(run: &Run, summary: &RunSummary) -> String {
    let rec = &summary.winner;
    // In an int8 run the candidates were scored in int8, final training validates in float32
    // and the int8 network is what is deployed: each figure says which it is.
    let int8 = summary.dtype == crate::net::Dtype::Int8;
    let tag = |label: &str, what: &str| {
        if int8 {
            format!("{label} ({what}):")
        } else {
            format!("{label}:")
        }
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    match &summary.delivered {
        Some(f) => {
            rows.push((tag("proxy validation", "int8"), rec.val.brief()));
            rows.push((
                tag("final validation", "float32"),
                format!(
                    "{}  ({} epochs, best {}, batch {}{}{})",
                    f.val.brief(),
                    f.epochs_run,
                    f.best_epoch + 1,
                    f.train.batch_size,
                    if f.warm_start {
                        ", from the proxy weights"
                    } else {
                        ""
                    },
                    if f.cut_by_time_budget {
                        ", stopped by the time budget"
                    } else {
                        ""
                    }
                ),
            ));
        }
        None => rows.push((
            tag("validation", "int8"),
            format!("{}  (proxy training; no final training)", rec.val.brief()),
        )),
    }
    rows.push((
        tag("test", "int8, deployed"),
        summary.test.as_ref().map_or("-".to_string(), |t| {
            format!("{}  (test split, used once)", t.brief())
        }),
    ));
    if let Some(f) = &summary.test_float32 {
        rows.push((
            tag("test", "float32"),
            format!("{}  (the same network before quantization)", f.brief()),
        ));
    }
    // "proxy validation:" sets the column, as it always did.
    let width = rows
        .iter()
        .map(|r| r.0.chars().count())
        .fold(17, usize::max);
    let mut text = String::new();
    text.push_str(&format!("\nwinner {}: {}\n", rec.id, rec.summary));
    for (label, value) in &rows {
        text.push_str(&format!("  {label:<width$} {value}\n"));
    }
    text.push_str(&format!(
        "  {} candidates, {:.0} s of training in all, {:.0} s this session{}\n\n",
        summary.candidates,
        summary.seconds_training_total,
        summary.seconds_this_session,
        if summary.evolution_cut {
            "; the time budget ended the evolution early (--resume continues it)"
        } else {
            ""
        }
    ));
    text.push_str(&super::tables::cost_table(
        &summary.cost,
        &run.config.target.name,
    ));
    text.push_str(&format!(
        "\n{}",
        super::tables::pareto_table(&summary.pareto)
    ));
    text.push_str(&format!(
        "\nnext: nas export --run {} --lang c --out model/   |   nas verify --run {} --target {}",
        run.dir.display(),
        run.dir.display(),
        run.config.target.name
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_from(args: &[&str]) -> RunConfig {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: SearchArgs,
        }
        let argv = std::iter::once("nas").chain(args.iter().copied());
        build_config(&<P as clap::Parser>::try_parse_from(argv).unwrap().a).unwrap()
    }

    /// `--budgets hardware` drops the seed's parameter and FLOP budgets and keeps the chip's:
    /// an int8 network over the F401RE's 120 K parameters whose int8 weights fit in flash is
    /// feasible, and one that does not fit in flash is still refused.
    #[test]
    fn hardware_budgets_drop_the_proxies_and_keep_the_chip() {
        let seed = config_from(&["--dtype", "int8"]);
        assert_eq!(seed.limits.max_params, Some(120_000));
        let hw = config_from(&["--dtype", "int8", "--budgets", "hardware"]);
        assert_eq!((hw.limits.max_params, hw.limits.max_flops), (None, None));
        assert_eq!(hw.limits.max_flash_bytes, seed.limits.max_flash_bytes);
        assert_eq!(hw.limits.max_ram_bytes, seed.limits.max_ram_bytes);
        assert_eq!(hw.limits.max_tensor, seed.limits.max_tensor);
        // An explicit cap still applies.
        let capped = config_from(&["--budgets", "hardware", "--max-params", "5000"]);
        assert_eq!(capped.limits.max_params, Some(5000));

        // ~300 K parameters: over the seed's budget, within the flash in int8.
        let mut big = crate::net::NetSpec::smart_start(784, 12);
        big.blocks[1].filters = 240;
        let mut b = big.blocks[1].clone();
        b.filters = 240;
        b.kernel = 5;
        b.stride = 1;
        b.pool = None;
        big.blocks.push(b);
        let cost = |c: &RunConfig| search::cost_of(&big, &c.target, &c.limits, c.dtype).unwrap();
        let (s, h) = (cost(&seed), cost(&hw));
        assert!(s.params > 120_000, "{}", s.params);
        assert!(
            s.violations
                .iter()
                .any(|v| v.budget == crate::net::cost::BudgetKind::Params),
            "{:?}",
            s.violations
        );
        assert!(h.fits, "{:?}", h.violations);
        let table = super::super::tables::cost_table(&h, &hw.target.name);
        assert!(table.contains("no budget (--budgets hardware)"), "{table}");
        // Flash is still checked.
        let mut tiny = hw.clone();
        tiny.limits.max_flash_bytes = 1000;
        assert!(!cost(&tiny).fits);
        // An old config.json (numbers) and a hardware one (null) both read back.
        let back: RunConfig = serde_json::from_str(&serde_json::to_string(&hw).unwrap()).unwrap();
        assert_eq!(back.limits, hw.limits);
    }

    /// Every argument of `nas search` has a rule for `--resume`: it defines the run (refused),
    /// belongs to the session (applied), is `--generations` (raised), or only matters when
    /// starting a run or printing. A new argument must be placed, so that `--resume` never
    /// ignores it silently.
    #[test]
    fn every_argument_has_a_resume_rule() {
        let cmd = <SearchArgs as clap::Args>::augment_args(clap::Command::new("search"));
        let other = [
            "resume",
            "data",
            "out",
            "name",
            "force",
            "generations",
            "json",
            "quiet",
            "help",
        ];
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            let placed = IDENTITY.iter().any(|(i, _, _)| *i == id)
                || SESSION.iter().any(|(i, _)| *i == id)
                || other.contains(&id);
            assert!(placed, "--{id}: add it to IDENTITY or SESSION");
        }
        let flags = IDENTITY
            .iter()
            .map(|(id, flag, _)| (id, flag))
            .chain(SESSION.iter().map(|(id, flag)| (id, flag)));
        for (id, flag) in flags {
            assert!(
                cmd.get_arguments()
                    .any(|a| a.get_id() == *id && a.get_long() == Some(&flag[2..])),
                "{id} is not the argument {flag}"
            );
        }
    }

    /// Each refused argument names where `config.json` keeps its value.
    #[test]
    fn refused_arguments_point_into_the_configuration() {
        let mut cfg = default_config();
        cfg.data = DataSource::Dir {
            path: "d".into(),
            limit_per_class: None,
            relabel_conflicts: true,
        };
        let v = serde_json::to_value(&cfg).unwrap();
        for (id, _, at) in IDENTITY {
            assert!(v.pointer(at).is_some(), "{id}: {at}");
        }
    }
}
