//! Command-line interface: argument parsing and the small commands (`targets`, `cost`,
//! `data inspect`). The stage commands parse their own arguments in their modules.

use crate::{arch::NetSpec, cost, data, plan, target};
use anyhow::{Context, Result};
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
    Search(Box<crate::search::SearchArgs>),
    /// Evaluate a run's winner on the test split: metrics and confusion matrix
    Eval(crate::search::EvalArgs),
    /// Render a run's winner (or a spec + weights) as a C or no_std Rust inference kernel
    Export(crate::codegen::ExportArgs),
    /// Cross-compile the kernel into firmware, measure flash/RAM from the ELF, run it in QEMU
    Verify(crate::firmware::VerifyArgs),
    /// Print the cost of a network spec on a target: per-layer table and budget check
    Cost(CostArgs),
    /// List the MCU profiles and their budgets
    Targets(TargetsArgs),
    /// Dataset tools
    #[command(subcommand)]
    Data(DataCommand),
    /// Measure training and inference throughput on the reference networks
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Args)]
pub struct CostArgs {
    /// NetSpec JSON file (as written to a run directory, or by hand)
    #[arg(long)]
    pub net: PathBuf,
    /// Target name or alias (see `nas targets`), or a path to a TOML profile
    #[arg(long, default_value = "stm32f401re")]
    pub target: String,
    /// Print a JSON object instead of the table
    #[arg(long)]
    pub json: bool,
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
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Search(a) => crate::search::run(*a),
        Command::Eval(a) => crate::search::eval(a),
        Command::Export(a) => crate::codegen::run(a),
        Command::Verify(a) => crate::firmware::run(a),
        Command::Cost(a) => cost_cmd(a),
        Command::Targets(a) => targets_cmd(a),
        Command::Data(DataCommand::Inspect { dir, json }) => inspect_cmd(&dir, json),
        Command::Bench(a) => crate::bench::run(a),
    }
}

fn cost_cmd(a: CostArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.net)
        .with_context(|| format!("cannot read {}", a.net.display()))?;
    let spec =
        NetSpec::from_json(&text).with_context(|| format!("invalid spec {}", a.net.display()))?;
    let t = target::resolve(&a.target)?;
    let c = cost::cost(&plan::lower(&spec)?, &t, &t.limits());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        println!("{}\n", spec.summary());
        print!("{}", c.table(&t.name));
    }
    Ok(())
}

fn targets_cmd(a: TargetsArgs) -> Result<()> {
    let all = target::builtin();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
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
    );
    for t in &all {
        let l = t.limits();
        println!(
            "{:<12} {:<14} {:>4} {:>5} {:>6}K {:>5}K | {:>8} {:>10} {:>8} {:>6}K {:>5}K | {:<13} {}",
            t.name,
            t.core,
            if t.fpu { "yes" } else { "no" },
            t.clock_hz / 1_000_000,
            t.memory.flash_bytes / 1024,
            t.memory.ram_bytes / 1024,
            l.max_params,
            l.max_flops,
            l.max_tensor,
            l.max_flash_bytes / 1024,
            l.max_ram_bytes / 1024,
            t.emulator.as_ref().map_or("-", |e| e.machine.as_str()),
            t.aliases.join(", ")
        );
    }
    println!("\nLeft: the chip. Middle: the model's budgets (flash and RAM after the application's reserve).");
    println!("Use --target NAME, an alias, or a path to your own TOML profile (see targets/ in the repository).");
    Ok(())
}

fn inspect_cmd(dir: &std::path::Path, json: bool) -> Result<()> {
    let splits = data::load_dir(dir, &data::LoadOptions::default())?;
    let train = data::summarize(&splits.train);
    let test = data::summarize(&splits.test);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"train": train, "test": test, "test_held_out": splits.test_held_out})
            )?
        );
    } else {
        println!("train split:\n{train}");
        let how = if splits.test_held_out {
            " (held out from the single pair, stratified)"
        } else {
            ""
        };
        println!("test split{how}:\n{test}");
    }
    Ok(())
}
