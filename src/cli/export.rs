//! `nas export`: render a run's winner, or a spec with its weights, as a C or Rust kernel.

use crate::codegen::{
    generate_c, generate_rust, sanitize_identifier, write_files, Lang, Provenance,
};
use crate::net::plan;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nas export --run runs/r1 --lang c --out out/c\n  \
    nas export --net spec.json --weights w.safetensors --lang rust --out out/kernel --name kws"
)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: super::ModelArgs,
    /// Output language
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Output directory (created if needed; generated files in it are overwritten)
    #[arg(long)]
    pub out: PathBuf,
    /// Name of the kernel: C prefix (NAME_infer, NAME.h) or Rust crate name; sanitised to a
    /// lower_snake identifier
    #[arg(long, default_value = "model")]
    pub name: String,
}

pub fn run(a: ExportArgs) -> Result<()> {
    let m = a.model.load()?;
    let plan = plan::lower(&m.spec)?;
    let footprint = crate::net::cost::cost(&plan, &m.target, &m.limits);
    let name = sanitize_identifier(&a.name).context("invalid --name")?;
    if name != a.name {
        eprintln!("note: --name {:?} sanitised to `{name}`", a.name);
    }
    let note = Provenance::new(m.source).with_footprint(&m.target, footprint.clone());
    let files = match a.lang {
        Lang::C => generate_c(&m.spec, &m.weights, &name, &note)?,
        Lang::Rust => generate_rust(&m.spec, &m.weights, &name, &note)?,
    };
    write_files(&files, &a.out)?;
    println!("{}", m.spec.summary());
    for f in &files {
        println!(
            "wrote {} ({} lines)",
            a.out.join(&f.path).display(),
            f.contents.lines().count()
        );
    }
    println!(
        "arena {} bytes (cost model: {}), {} deployed parameters, {} MACs per inference",
        plan.arena_bytes, footprint.arena_bytes, footprint.deployed_params, footprint.executed_macs
    );
    Ok(())
}
