//! Command-line interface: every clap argument, their validation into the stages' plain
//! configurations, and everything printed. The stages return data; this module renders it.
//! One file per command that has more than a few lines; the small ones (`targets`, `cost`,
//! `data inspect`) are here. Everything goes to the terminal through [`out`]: `outln!`/`out!`
//! for stdout (a closed stdout ends the command quietly), `note!` for stderr.

/// A line on stdout, as `println!`, returning the write's result (see [`out::print`]).
macro_rules! outln {
    () => {
        $crate::cli::out::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Text on stdout, as `print!`, returning the write's result.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::print(format_args!($($arg)*))
    };
}

/// A line on stderr, as `eprintln!`, that a closed stderr cannot turn into a panic.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::cli::out::eprint(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod bench;
mod board_log;
mod eval;
mod export;
mod import;
mod inspect;
pub mod out;
mod pcap;
pub mod quant;
mod report;
pub(crate) mod search;
mod tables;
mod train;
mod values;
mod verify;

pub use bench::BenchArgs;
pub use eval::EvalArgs;
pub use export::ExportArgs;
pub use import::ImportArgs;
pub use pcap::FromPcapArgs;
pub use report::ReportArgs;
pub use search::SearchArgs;
pub use train::TrainArgs;
pub use verify::VerifyArgs;

use crate::net::{cost, plan, NetSpec};
use crate::target;
use crate::target::{Limits, Target};
use crate::weights::Weights;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "nas",
    version,
    about = "Find a 1D-CNN that fits a microcontroller, train it, and export firmware-ready code",
    long_about = "Hardware-aware neural architecture search for microcontrollers.\n\n\
        `nas search` evolves and trains 1D-CNNs under a target's flash, RAM, parameter and FLOP \
        budgets; `nas export` renders the winner as a C or no_std Rust kernel; `nas verify` \
        cross-compiles it into firmware, measures flash and RAM from the ELF and runs it on an \
        emulated Cortex-M.",
    after_help = "Start with `nas targets`, then `nas search --target stm32f401re` \
        (synthetic data) or `nas search --target stm32f401re --data DIR`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evolve and train networks that fit a target; writes a resumable run directory
    Search(Box<SearchArgs>),
    /// Train any network spec with the full routine; writes a directory like a run's
    Train(Box<TrainArgs>),
    /// Evaluate a run's delivered model on the test split: metrics and confusion matrix
    Eval(EvalArgs),
    /// Render a run's winner (or a spec + weights, or an ONNX model) as a C or no_std Rust
    /// kernel, or as ONNX
    Export(ExportArgs),
    /// Import a trained 1D-CNN from an ONNX file (PyTorch, Keras + tf2onnx) or a TFLite file
    /// (TensorFlow's converter, int8 or float) as spec + weights
    Import(ImportArgs),
    /// Cross-compile the kernel into firmware, measure flash/RAM from the ELF, run it in QEMU
    Verify(VerifyArgs),
    /// One HTML page (SVG plots) or JSON with a run's search progress, Pareto fronts, the
    /// winner's layers, arena, training and confusion matrix, and the verify measurement
    Report(ReportArgs),
    /// Print the cost of a network spec on a target: per-layer table and budget check
    Cost(CostArgs),
    /// List the MCU profiles and their budgets
    Targets(TargetsArgs),
    /// Train one candidate of a run from its task files (started by `search --jobs` and
    /// `--executor slurm`; not needed by hand)
    Worker(WorkerArgs),
    /// Dataset tools
    #[command(subcommand)]
    Data(DataCommand),
    /// Measure training and inference throughput on the reference networks
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct CostArgs {
    /// NetSpec JSON file (as written to a run directory, or by hand)
    #[arg(long, required_unless_present_any = ["onnx", "tflite"], conflicts_with_all = ["onnx", "tflite"])]
    pub net: Option<PathBuf>,
    #[command(flatten)]
    pub onnx: OnnxArgs,
    /// Target name or alias (see `nas targets`), or a path to a TOML profile
    #[arg(long, default_value = "stm32f401re")]
    pub target: String,
    /// Element type of the deployed kernel (int8: int8 arena, int8 constants, int8 code model)
    /// [default: int8 for an int8 --tflite model, else f32]
    #[arg(long, value_enum)]
    pub dtype: Option<crate::net::Dtype>,
    /// Print a JSON object instead of the table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The run directory
    #[arg(long)]
    pub run: PathBuf,
    /// The candidate to train (its candidates/ID/task.json)
    #[arg(long, required_unless_present = "task_list")]
    pub candidate: Option<String>,
    /// A file of candidate ids, one per line: train line $SLURM_ARRAY_TASK_ID (Slurm arrays)
    #[arg(long, conflicts_with = "candidate")]
    pub task_list: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TargetsArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Sample count, length, classes, per-class counts and imbalance of a dataset directory
    Inspect {
        /// Directory with train-*/t10k-* IDX files (raw or .gz), or a single images/labels pair
        dir: PathBuf,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Turn packet captures (one folder per class) into an IDX dataset: sessions or flows,
    /// all layers or L7, trimmed/padded, anonymized, deduplicated, split
    FromPcap(FromPcapArgs),
}

impl Cli {
    /// Whether the command prints JSON on stdout (`--json`, `report --format json` without
    /// `--out`): an error is then a JSON object there too (see [`error_json`]).
    pub fn json_output(&self) -> bool {
        match &self.command {
            Command::Search(a) => a.json,
            Command::Train(a) => a.json,
            Command::Eval(a) => a.json,
            Command::Verify(a) => a.json,
            Command::Report(a) => a.format == report::ReportFormat::Json && a.out.is_none(),
            Command::Cost(a) => a.json,
            Command::Targets(a) => a.json,
            Command::Data(DataCommand::Inspect { json, .. }) => *json,
            Command::Data(DataCommand::FromPcap(a)) => a.json,
            Command::Bench(a) => a.json,
            Command::Export(_) | Command::Import(_) | Command::Worker(_) => false,
        }
    }
}

/// A failed command's error as JSON for stdout: `{"error": "…"}` with the whole chain of
/// causes, as `error: …` on stderr shows it.
pub fn error_json(e: &anyhow::Error) -> String {
    serde_json::json!({ "error": format!("{e:#}") }).to_string()
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Search(a) => search::run(*a),
        Command::Train(a) => train::run(*a),
        Command::Worker(a) => {
            let id = match (&a.candidate, &a.task_list) {
                (Some(id), _) => id.clone(),
                (None, Some(list)) => crate::search::task_from_list(list)?,
                (None, None) => bail!("give --candidate ID or --task-list FILE"),
            };
            crate::search::work(&a.run, &id, &mut |line| outln!("{line}"))
        }
        Command::Eval(a) => eval::run(a),
        Command::Export(a) => export::run(a),
        Command::Import(a) => import::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Cost(a) => cost_cmd(a),
        Command::Targets(a) => targets_cmd(a),
        Command::Report(a) => report::run(a),
        Command::Data(DataCommand::Inspect { dir, json }) => inspect::run(&dir, json),
        Command::Data(DataCommand::FromPcap(a)) => pcap::run(a),
        Command::Bench(a) => bench::run(a),
    }
}

fn cost_cmd(a: CostArgs) -> Result<()> {
    let imported = a.onnx.load()?;
    // An int8 TFLite model is costed as what it is unless --dtype says otherwise.
    let dtype = a.dtype.unwrap_or(match &imported {
        Some(m) if m.int8.is_some() => crate::net::Dtype::Int8,
        _ => crate::net::Dtype::F32,
    });
    let means = requantizing_means(imported.as_ref().and_then(|m| m.int8.as_ref()), dtype);
    let spec = match (imported, &a.net) {
        (Some(m), _) => m.spec,
        (None, Some(net)) => read_spec(net)?,
        (None, None) => bail!("give --net SPEC.json, --onnx MODEL.onnx or --tflite MODEL.tflite"),
    };
    let t = target::resolve(&a.target)?;
    let c = cost::cost_deployed(&plan::lower(&spec)?, &t, &t.limits(), dtype, means);
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&c)?)?;
    } else {
        outln!("{}\n", spec.summary())?;
        if dtype != crate::net::Dtype::F32 {
            outln!(
                "deployed as {} (arena, constants and code of the {} kernel)\n",
                dtype.label(),
                dtype.label()
            )?;
        }
        out!("{}", tables::cost_table(&c, &t.name))?;
        if let Some(f) = cost::compare_forms(&spec, &t, &t.limits(), dtype)? {
            outln!("\n{}", f.describe())?;
        }
    }
    Ok(())
}

fn targets_cmd(a: TargetsArgs) -> Result<()> {
    let all = target::builtin();
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&all)?)?;
        return Ok(());
    }
    outln!(
        "{:<12} {:<14} {:>4} {:>5} {:>7} {:>6} | {:>8} {:>10} {:>8} {:>7} {:>6} | {:<13} aliases",
        "name",
        "core",
        "fpu",
        "MHz",
        "flash",
        "RAM",
        "params",
        "FLOPs",
        "tensor",
        "flash",
        "RAM",
        "qemu"
    )?;
    for t in &all {
        let l = t.limits();
        outln!(
            "{:<12} {:<14} {:>4} {:>5} {:>6}K {:>5}K | {:>8} {:>10} {:>8} {:>6}K {:>5}K | {:<13} {}",
            t.name,
            t.core,
            if t.fpu { "yes" } else { "no" },
            t.clock_hz / 1_000_000,
            t.memory.flash_bytes / 1024,
            t.memory.ram_bytes / 1024,
            l.max_params.map_or("-".to_string(), |v| v.to_string()),
            l.max_flops.map_or("-".to_string(), |v| v.to_string()),
            l.max_tensor,
            l.max_flash_bytes / 1024,
            l.max_ram_bytes / 1024,
            t.emulator.as_ref().map_or("-", |e| e.machine.as_str()),
            t.aliases.join(", ")
        )?;
    }
    outln!("\nLeft: the chip. Middle: the model's budgets (flash and RAM after the application's reserve).")?;
    outln!("Use --target NAME, an alias, or a path to your own TOML profile (see targets/ in the repository).")?;
    Ok(())
}

/// Where a command finds a trained model: a run directory (its winner, with the target and
/// budgets it was searched for), or a spec with its weights. Shared by `export` and `verify`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Run directory of `nas search` or `nas train`: its delivered model (best/)
    #[arg(long, conflicts_with_all = ["net", "weights", "onnx", "tflite"], required_unless_present_any = ["net", "weights", "onnx", "tflite"])]
    pub run: Option<PathBuf>,
    /// With --run: this candidate of the search (e.g. g003-c01, a member of pareto.json)
    /// instead of the delivered model; its final training when it had one
    #[arg(long, requires = "run", value_name = "ID")]
    pub candidate: Option<String>,
    /// Network spec JSON (instead of --run; needs --weights)
    #[arg(long, requires = "weights", conflicts_with_all = ["onnx", "tflite"])]
    pub net: Option<PathBuf>,
    /// Trained weights, safetensors (instead of --run; needs --net)
    #[arg(long, requires = "net", conflicts_with_all = ["onnx", "tflite"])]
    pub weights: Option<PathBuf>,
    #[command(flatten)]
    pub onnx: OnnxArgs,
    /// Target name or alias (see `nas targets`), or a TOML profile [default: the run's, else
    /// stm32f401re]
    #[arg(long)]
    pub target: Option<String>,
}

/// A trained model in a file of another framework: ONNX (PyTorch, Keras + tf2onnx, or `nas
/// export --lang onnx`) or TFLite (TensorFlow's converter, Edge Impulse).
#[derive(Debug, Args)]
pub struct OnnxArgs {
    /// ONNX model to import instead of --run or --net/--weights (see `nas import`)
    #[arg(long, conflicts_with = "tflite")]
    pub onnx: Option<PathBuf>,
    /// TFLite model (.tflite, float32 or full-integer int8) to import instead of --run or
    /// --net/--weights; an int8 model keeps its own quantization (see `nas import`)
    #[arg(long)]
    pub tflite: Option<PathBuf>,
    /// With --onnx or --tflite: the model's input is byte × this [default: ONNX: the model's
    /// `nas.input_scale` metadata, else 1 when the graph rescales its input itself, else 1/255;
    /// TFLite: 1/255]
    #[arg(long, value_parser = positive_f32)]
    pub input_scale: Option<f32>,
}

/// A model imported from another framework's file.
pub struct ImportedModel {
    pub spec: NetSpec,
    pub weights: Weights,
    /// A TFLite int8 model's own int8 network.
    pub int8: Option<crate::quant::QuantLowered>,
    pub path: PathBuf,
}

impl OnnxArgs {
    /// Whether a model file is given.
    pub fn given(&self) -> bool {
        self.onnx.is_some() || self.tflite.is_some()
    }

    /// Import the ONNX file, printing what was folded or dropped to stderr.
    pub fn import(&self) -> Result<(crate::onnx::Imported, PathBuf)> {
        let path = self.onnx.clone().context("no --onnx file")?;
        let im = crate::onnx::import_file(
            &path,
            &crate::onnx::ImportOptions {
                input_scale: self.input_scale,
            },
        )?;
        for n in &im.notes {
            note!("note: {n}");
        }
        Ok((im, path))
    }

    /// Import the TFLite file, printing what was folded or dropped to stderr.
    pub fn import_tflite(&self) -> Result<(crate::tflite::Imported, PathBuf)> {
        let path = self.tflite.clone().context("no --tflite file")?;
        let im = crate::tflite::import_file(
            &path,
            &crate::tflite::ImportOptions {
                input_scale: self.input_scale,
            },
        )?;
        for n in &im.notes {
            note!("note: {n}");
        }
        Ok((im, path))
    }

    /// The model of --onnx or --tflite, whichever is given (`None`: neither, and then
    /// --input-scale is refused).
    pub fn load(&self) -> Result<Option<ImportedModel>> {
        if self.tflite.is_some() {
            let (im, path) = self.import_tflite()?;
            return Ok(Some(ImportedModel {
                spec: im.spec,
                weights: im.weights,
                int8: im.int8,
                path,
            }));
        }
        if self.onnx.is_some() {
            let (im, path) = self.import()?;
            return Ok(Some(ImportedModel {
                spec: im.spec,
                weights: im.weights,
                int8: None,
                path,
            }));
        }
        anyhow::ensure!(
            self.input_scale.is_none(),
            "--input-scale describes the input of an --onnx or --tflite model; none is given"
        );
        Ok(None)
    }
}

fn positive_f32(s: &str) -> std::result::Result<f32, String> {
    let v: f32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number (e.g. 0.00392156863 for 1/255)"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not a positive number"))
    }
}

/// A count that must be at least 1 (`--limit-per-class`, `--max-per-class`, `--len`): 0 would
/// keep nothing, so it is refused with the arguments rather than as an empty dataset later.
fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number"))?;
    if n == 0 {
        return Err("must be at least 1 (0 would keep no sample)".to_string());
    }
    Ok(n)
}

/// A model resolved from [`ModelArgs`].
pub struct LoadedModel {
    pub spec: NetSpec,
    pub weights: Weights,
    /// Where it came from, for generated comments.
    pub source: String,
    pub target: Target,
    /// The run's budgets (its overrides included), else the target's.
    pub limits: Limits,
    /// An int8 TFLite model's own int8 network: deployed as it is, never re-quantized.
    pub int8: Option<crate::quant::QuantLowered>,
}

impl LoadedModel {
    /// The cost model's footprint of this model deployed in `dtype` on `target` (an int8
    /// TFLite model's requantizing mean included).
    pub fn footprint(
        &self,
        plan: &crate::net::plan::Plan,
        target: &Target,
        dtype: crate::net::Dtype,
    ) -> cost::Cost {
        let means = requantizing_means(self.int8.as_ref(), dtype);
        cost::cost_deployed(plan, target, &self.limits, dtype, means)
    }
}

/// The requantizing global averages the code-size model counts for a model deployed in
/// `dtype` (an int8 TFLite model's MEAN; never in float).
pub(super) fn requantizing_means(
    int8: Option<&crate::quant::QuantLowered>,
    dtype: crate::net::Dtype,
) -> usize {
    match dtype {
        crate::net::Dtype::Int8 => int8.map_or(0, |q| q.requantizing_means()),
        crate::net::Dtype::F32 => 0,
    }
}

/// Target of the footprint when neither --target nor a run names one.
pub const DEFAULT_TARGET: &str = "stm32f401re";

impl ModelArgs {
    pub fn load(&self) -> Result<LoadedModel> {
        let mut int8 = None;
        let imported = self.onnx.load()?;
        let (spec, weights, source, recorded) = match (&self.run, &self.net, &self.weights) {
            _ if imported.is_some() => {
                let m = imported.expect("checked");
                int8 = m.int8;
                (m.spec, m.weights, m.path.display().to_string(), None)
            }
            (Some(dir), _, _) => {
                let m =
                    crate::search::rundir::ModelDir::open_model(dir, self.candidate.as_deref())?;
                (
                    m.spec,
                    m.weights,
                    match &self.candidate {
                        Some(id) => format!("{} candidate {id}", dir.display()),
                        None => dir.display().to_string(),
                    },
                    Some((m.target, m.limits)),
                )
            }
            (None, Some(net), Some(w)) => {
                let spec = read_spec(net)?;
                let weights = Weights::load(w)?;
                weights.check(&spec).with_context(|| {
                    format!(
                        "weights {} do not match the spec {}",
                        w.display(),
                        net.display()
                    )
                })?;
                (
                    spec,
                    weights,
                    format!("{} + {}", net.display(), w.display()),
                    None,
                )
            }
            _ => bail!(
                "give --run DIR, --net SPEC.json with --weights W.safetensors, --onnx MODEL.onnx \
                 or --tflite MODEL.tflite"
            ),
        };
        let (target, limits) = match (&self.target, recorded) {
            (Some(name), Some((t, l))) if t.answers_to(name) => (t, l),
            (Some(name), _) => {
                let t = target::resolve(name)?;
                let l = t.limits();
                (t, l)
            }
            (None, Some(tl)) => tl,
            (None, None) => {
                let t = target::resolve(DEFAULT_TARGET)?;
                let l = t.limits();
                (t, l)
            }
        };
        Ok(LoadedModel {
            spec,
            weights,
            source,
            target,
            limits,
            int8,
        })
    }
}

/// Read and validate a NetSpec JSON file.
pub fn read_spec(path: &std::path::Path) -> Result<NetSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the network spec {}", path.display()))?;
    NetSpec::from_json(&text).with_context(|| format!("invalid network spec {}", path.display()))
}
