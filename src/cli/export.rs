//! `nas export`: render a run's winner, or a spec with its weights, as a C or Rust kernel.

use crate::codegen::{generate_c, generate_rust, sanitize_identifier, write_files, Provenance};
use crate::net::plan;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nas export --run runs/r1 --lang c --out out/c\n  \
    nas export --net spec.json --weights w.safetensors --lang rust --out out/kernel --name kws\n  \
    nas export --run runs/r1 --lang onnx --out out/onnx   # out/onnx/model.onnx\n  \
    nas export --onnx theirs.onnx --lang c --out out/c"
)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: super::ModelArgs,
    /// Output language
    #[arg(long, value_enum)]
    pub lang: ExportLang,
    /// Output directory (created if needed; generated files in it are overwritten)
    #[arg(long)]
    pub out: PathBuf,
    /// Name of the kernel: C prefix (NAME_infer, NAME.h), Rust crate name or NAME.onnx;
    /// sanitised to a lower_snake identifier
    #[arg(long, default_value = "model")]
    pub name: String,
    #[command(flatten)]
    pub dtype: super::quant::DtypeArgs,
}

/// What `nas export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportLang {
    /// C99: NAME.h, NAME.c and NAME_weights.h
    C,
    /// A no_std Rust crate: Cargo.toml, src/lib.rs, src/weights.rs
    Rust,
    /// NAME.onnx: float32, opset 13, input byte/255 as [N, C, L], output the logits (for
    /// Netron, onnxruntime, ST Edge AI; `nas import` reads it back to the same spec and weights)
    Onnx,
}

pub fn run(a: ExportArgs) -> Result<()> {
    let m = a.model.load()?;
    let plan = plan::lower(&m.spec)?;
    let dtype = a.dtype.resolve(a.model.run.as_deref());
    let footprint = crate::net::cost::cost_as(&plan, &m.target, &m.limits, dtype);
    anyhow::ensure!(
        !(a.lang == ExportLang::Onnx && dtype == crate::quant::Dtype::Int8),
        "ONNX export writes the float32 model; int8 QDQ export is not built yet: \
         pass --dtype f32 to export the float model"
    );
    let quant = a.dtype.quantize(&m, None, a.model.run.as_deref())?;
    let name = sanitize_identifier(&a.name).context("invalid --name")?;
    if name != a.name {
        eprintln!("note: --name {:?} sanitised to `{name}`", a.name);
    }
    let note = Provenance::new(m.source).with_footprint(&m.target, footprint.clone());
    let files = match (a.lang, &quant) {
        (ExportLang::Onnx, _) => {
            let doc = format!(
                "{} from {} by nas {}; input: byte × 1/255 as [N, {}, {}] (channels-first); output: logits",
                m.spec.summary(),
                note.source,
                note.tool_version,
                m.spec.input_channels,
                m.spec.input_len
            );
            let bytes = crate::onnx::export(&m.spec, &m.weights, &doc)?;
            std::fs::create_dir_all(&a.out)
                .with_context(|| format!("cannot create {}", a.out.display()))?;
            let path = a.out.join(format!("{name}.onnx"));
            crate::util::write_atomic(&path, &bytes)?;
            println!("{}", m.spec.summary());
            println!(
                "wrote {} ({} bytes, opset {}, float32; input [N, {}, {}] = byte × 1/255, output logits)",
                path.display(),
                bytes.len(),
                crate::onnx::EXPORT_OPSET,
                m.spec.input_channels,
                m.spec.input_len
            );
            return Ok(());
        }
        (ExportLang::C, None) => generate_c(&m.spec, &m.weights, &name, &note)?,
        (ExportLang::Rust, None) => generate_rust(&m.spec, &m.weights, &name, &note)?,
        (ExportLang::C, Some(q)) => {
            crate::quant::export::generate_c_int8(&m.spec, q, &name, &note)?
        }
        (ExportLang::Rust, Some(q)) => {
            crate::quant::export::generate_rust_int8(&m.spec, q, &name, &note)?
        }
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
        "{} kernel: arena {} bytes (cost model), {} deployed parameters, {} MACs per inference",
        dtype.label(),
        footprint.arena_bytes,
        footprint.deployed_params,
        footprint.executed_macs
    );
    Ok(())
}
