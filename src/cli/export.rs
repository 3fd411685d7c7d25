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
    nas export --run runs/r1 --lang onnx --dtype int8 --out out/onnx   # QDQ int8\n  \
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
    /// NAME.onnx: opset 13, input byte/255 as [N, C, L] (with an input embedding the bytes as
    /// int64 [N, L]), output the logits (for Netron,
    /// onnxruntime, ST Edge AI). float32 (`nas import` reads it back to the same spec and
    /// weights) or, with --dtype int8, QDQ int8 with the kernels' scales and zero points
    Onnx,
}

pub fn run(a: ExportArgs) -> Result<()> {
    let m = a.model.load()?;
    let plan = plan::lower(&m.spec)?;
    let dtype = a.dtype.resolve(a.model.run.as_deref());
    let footprint = crate::net::cost::cost_as(&plan, &m.target, &m.limits, dtype);
    let quant = a.dtype.quantize(&m, None, a.model.run.as_deref())?;
    let name = sanitize_identifier(&a.name).context("invalid --name")?;
    if name != a.name {
        note!("note: --name {:?} sanitised to `{name}`", a.name);
    }
    let note = Provenance::new(m.source.clone()).with_footprint(&m.target, footprint.clone());
    let files = match (a.lang, &quant) {
        (ExportLang::Onnx, q) => return write_onnx(&a, &m, &note, &name, q.as_ref()),
        (ExportLang::C, None) => generate_c(&m.spec, &m.weights, &name, &note)?,
        (ExportLang::Rust, None) => generate_rust(&m.spec, &m.weights, &name, &note)?,
        (ExportLang::C, Some(q)) => {
            crate::codegen::int8::generate_c_int8(&m.spec, q, &name, &note)?
        }
        (ExportLang::Rust, Some(q)) => {
            crate::codegen::int8::generate_rust_int8(&m.spec, q, &name, &note)?
        }
    };
    write_files(&files, &a.out)?;
    outln!("{}", m.spec.summary())?;
    for f in &files {
        outln!(
            "wrote {} ({} lines)",
            a.out.join(&f.path).display(),
            f.contents.lines().count()
        )?;
    }
    if a.lang == ExportLang::Rust && quant.is_some() && m.target.has_dsp() {
        outln!(
            "{} has the DSP extension: enable the crate's `dsp` feature there (SMLAD path)",
            m.target.core
        )?;
    }
    outln!(
        "{} kernel: arena {} bytes (cost model), {} deployed parameters, {} MACs per inference",
        dtype.label(),
        footprint.arena_bytes,
        footprint.deployed_params,
        footprint.executed_macs
    )?;
    Ok(())
}

/// `--lang onnx`: the float model, or with `--dtype int8` its QDQ form.
fn write_onnx(
    a: &ExportArgs,
    m: &super::LoadedModel,
    note: &Provenance,
    name: &str,
    quant: Option<&crate::quant::QuantLowered>,
) -> Result<()> {
    let (c, l) = (m.spec.input_channels, m.spec.input_len);
    let what = match quant {
        None => "float32".to_string(),
        Some(_) => {
            "int8 QDQ: int8 weights per channel, int32 biases, Q/DQ on every activation".to_string()
        }
    };
    let input = match m.spec.input.embedding_dim() {
        None => format!("[N, {c}, {l}] = byte × 1/255 (channels-first)"),
        Some(dim) => format!("[N, {l}] = byte as int64, looked up in a 256×{dim} embedding"),
    };
    let doc = format!(
        "{} from {} by nas {} ({what}); input: {input}; output: logits",
        m.spec.summary(),
        note.source,
        note.tool_version,
    );
    let bytes = match quant {
        None => crate::onnx::export(&m.spec, &m.weights, &doc)?,
        Some(q) => crate::onnx::export_int8(&m.spec, q, &doc)?,
    };
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let path = a.out.join(format!("{name}.onnx"));
    crate::util::write_atomic(&path, &bytes)?;
    outln!("{}", m.spec.summary())?;
    outln!(
        "wrote {} ({} bytes, opset {}, {what}; input {input}, output logits)",
        path.display(),
        bytes.len(),
        crate::onnx::EXPORT_OPSET,
    )?;
    Ok(())
}
