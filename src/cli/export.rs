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
    nas export --onnx theirs.onnx --lang c --out out/c\n  \
    nas export --run runs/r1 --project c --out board-c       # then: make -C board-c flash\n  \
    nas export --run runs/r1 --project rust --dtype int8 --out board-rs   # cargo run --release\n\n\
    --project writes a complete firmware project for the target's board (its profile's [board]):\n\
    start-up, linker script, clock and UART set-up, cycle timing, --samples test samples of\n\
    --data (default: the run's dataset) and a main loop printing predictions, cycles and accuracy."
)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: super::ModelArgs,
    /// Output language of the kernel alone
    #[arg(
        long,
        value_enum,
        required_unless_present = "project",
        conflicts_with = "project"
    )]
    pub lang: Option<ExportLang>,
    /// Write a complete firmware project for the target's board instead: C (Makefile) or Rust
    /// (cargo, cortex-m-rt), around the kernel in that language
    #[arg(long, value_enum)]
    pub project: Option<ProjectLang>,
    /// With --project: test samples to embed (spread over the classes)
    #[arg(long, default_value_t = 16, requires = "project", value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub samples: u64,
    /// With --project: dataset directory whose test split the samples come from [default: the
    /// run's dataset; synthetic, unlabelled bytes when there is none]
    #[arg(long, requires = "project")]
    pub data: Option<PathBuf>,
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

/// The language of a `--project`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProjectLang {
    /// Makefile project for arm-none-eabi-gcc
    C,
    /// cargo project on cortex-m-rt, flashed with probe-rs
    Rust,
}

pub fn run(a: ExportArgs) -> Result<()> {
    let m = a.model.load()?;
    if let Some(lang) = a.project {
        return write_project(&a, &m, lang);
    }
    let lang = a.lang.context("give --lang or --project")?;
    let plan = plan::lower(&m.spec)?;
    let dtype = a.dtype.resolve_for(&m, a.model.run.as_deref());
    let footprint = m.footprint(&plan, &m.target, dtype);
    let quant = a.dtype.quantize(&m, None, a.model.run.as_deref())?;
    let name = sanitize_identifier(&a.name).context("invalid --name")?;
    if name != a.name {
        note!("note: --name {:?} sanitised to `{name}`", a.name);
    }
    let note = Provenance::new(m.source.clone()).with_footprint(&m.target, footprint.clone());
    let files = match (lang, &quant) {
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
    if lang == ExportLang::Rust && quant.is_some() && m.target.has_dsp() {
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

/// `--project c|rust`: the kernel in that language inside a firmware project for the board.
fn write_project(a: &ExportArgs, m: &super::LoadedModel, lang: ProjectLang) -> Result<()> {
    use crate::codegen::Lang;
    // The board first: a profile without one fails before any work.
    let target = crate::project::with_board(&m.target)?;
    let plan = plan::lower(&m.spec)?;
    let dtype = a.dtype.resolve_for(m, a.model.run.as_deref());
    let footprint = m.footprint(&plan, &target, dtype);
    // A project is for the chip, so the chip's memory bounds it (not the search budgets): a
    // model that cannot fit would only fail at the link, far from the reason.
    let mem = &target.memory;
    anyhow::ensure!(
        footprint.flash_bytes <= mem.flash_bytes && footprint.ram_bytes <= mem.ram_bytes,
        "the {} model needs about {} B of flash and {} B of RAM (cost model), but the {} has \
         {} B and {} B: search for this target (nas search --target {}) or choose a smaller \
         candidate",
        dtype.label(),
        footprint.flash_bytes,
        footprint.ram_bytes,
        target.name,
        mem.flash_bytes,
        mem.ram_bytes,
        target.name
    );
    let quant = a
        .dtype
        .quantize(m, a.data.as_deref(), a.model.run.as_deref())?;
    let name = sanitize_identifier(&a.name).context("invalid --name")?;
    let note = Provenance::new(m.source.clone()).with_footprint(&target, footprint.clone());
    let lang = match lang {
        ProjectLang::C => Lang::C,
        ProjectLang::Rust => Lang::Rust,
    };
    let kernel = match (lang, &quant) {
        (Lang::C, None) => generate_c(&m.spec, &m.weights, &name, &note)?,
        (Lang::Rust, None) => generate_rust(&m.spec, &m.weights, &name, &note)?,
        (Lang::C, Some(q)) => crate::codegen::int8::generate_c_int8(&m.spec, q, &name, &note)?,
        (Lang::Rust, Some(q)) => {
            crate::codegen::int8::generate_rust_int8(&m.spec, q, &name, &note)?
        }
    };
    let n = a.samples as usize;
    let len = m.spec.input_len * m.spec.input_channels;
    let data = match &a.data {
        Some(d) => Some(d.clone()),
        None => a.model.run.as_deref().and_then(run_dataset),
    };
    let samples = match &data {
        Some(dir) => crate::firmware::Samples::from_dir(dir, n)?,
        None => {
            note!("note: no dataset (give --data DIR): the project embeds synthetic, unlabelled bytes and prints no accuracy");
            crate::firmware::Samples::synthetic(n, len)
        }
    };
    // What the host reference predicts: the firmware prints it beside its own prediction.
    let reference: Vec<usize> = match &quant {
        None => {
            let low = crate::lower::lower_weights(&m.spec, &m.weights)?;
            samples
                .inputs
                .iter()
                .map(|x| crate::metrics::argmax(&crate::lower::reference_logits(&low, x)))
                .collect()
        }
        Some(q) => samples
            .inputs
            .iter()
            .map(|x| crate::quant::reference_int8(q, x).predict())
            .collect(),
    };
    let project = crate::project::render(crate::project::ProjectInput {
        lang,
        spec: &m.spec,
        dtype,
        kernel,
        kernel_name: &name,
        target: &target,
        samples: &samples,
        reference: &reference,
        source: &m.source,
        candidate: a.model.candidate.as_deref(),
        arena_bytes: footprint.arena_bytes,
        flash_bytes: footprint.flash_bytes,
    })?;
    refuse_foreign_dir(&a.out)?;
    write_files(&project.files, &a.out)?;
    let board = &project.manifest.board;
    outln!("{}", m.spec.summary())?;
    outln!(
        "wrote a {} {} firmware project for {board} ({}) to {}: {} files, embedding {}",
        lang.label(),
        dtype.label(),
        target.name,
        a.out.display(),
        project.files.len(),
        samples.source
    )?;
    let dir = a.out.display();
    let readme = a.out.join("README.md");
    let readme = readme.display();
    match lang {
        Lang::C => outln!("build: make -C {dir}    flash: make -C {dir} flash    (see {readme})")?,
        Lang::Rust => outln!("build: cd {dir} && cargo build --release    flash and run: cargo run --release    (see {readme})")?,
    }
    Ok(())
}

/// The dataset directory a run was trained on, when it has one.
fn run_dataset(run: &std::path::Path) -> Option<PathBuf> {
    let m = crate::search::rundir::ModelDir::open(run).ok()?;
    match m.data {
        crate::data::DataSource::Dir { path, .. } if path.is_dir() => Some(path),
        _ => None,
    }
}

/// A project goes into a new or empty directory, or over an earlier project (its
/// `nas-project.json`): never over other files.
fn refuse_foreign_dir(dir: &std::path::Path) -> Result<()> {
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    if entries.next().is_some() && !dir.join("nas-project.json").is_file() {
        anyhow::bail!(
            "{} is not empty and holds no nas-project.json: refusing to write a project over \
             other files (choose a new --out)",
            dir.display()
        );
    }
    Ok(())
}
