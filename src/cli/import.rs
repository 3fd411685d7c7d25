//! `nas import`: an ONNX or TFLite model → `spec.json` + `weights.safetensors`, which every
//! other command takes with `--net` / `--weights` (a TFLite model is also copied, as the int8
//! network it holds is deployed from the file itself with `--tflite`).

use super::OnnxArgs;
use crate::net::{cost, plan};
use crate::target;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  nas import model.onnx --out imported/\n  \
    nas verify --net imported/spec.json --weights imported/weights.safetensors\n  \
    nas import model_int8.tflite --out imported/\n  \
    nas verify --tflite imported/model.tflite\n\n\
    Or skip the files: `nas verify --onnx model.onnx` or `--tflite model.tflite` (also cost, \
    export, eval).")]
pub struct ImportArgs {
    /// The ONNX or TFLite model (a 1-D CNN: conv/BN/ReLU/pool blocks, global average
    /// pooling, dense); a .tflite file is recognised by its content
    pub model: PathBuf,
    /// Output directory (created if needed): spec.json, weights.safetensors, import.json (and
    /// for TFLite model.tflite, the int8 network as the file holds it)
    #[arg(long)]
    pub out: PathBuf,
    /// The model's input is byte × this [default: ONNX: the model's `nas.input_scale` metadata,
    /// else 1 when the graph rescales its input itself, else 1/255; TFLite: 1/255]
    #[arg(long, value_parser = super::positive_f32)]
    pub input_scale: Option<f32>,
    /// Target whose budgets the imported network is costed against
    #[arg(long, default_value = super::DEFAULT_TARGET)]
    pub target: String,
}

pub fn run(a: ImportArgs) -> Result<()> {
    let head = read_head(&a.model)?;
    if crate::tflite::is_tflite(&head) {
        return run_tflite(&a);
    }
    let (im, path) = OnnxArgs {
        onnx: Some(a.model.clone()),
        tflite: None,
        input_scale: a.input_scale,
    }
    .import()?;
    let record = serde_json::json!({
        "source": path,
        "producer": im.producer,
        "input": {"name": im.input_name, "dims": im.input_dims, "layout": im.layout},
        "graph_input_scale": im.graph_input_scale,
        "graph_internal_scale": im.graph_internal_scale,
        "notes": im.notes,
    });
    let (spec_path, weights_path) = write_imported(&a.out, &im.spec, &im.weights, &record)?;
    let t = target::resolve(&a.target)?;
    let c = cost::cost(&plan::lower(&im.spec)?, &t, &t.limits());
    outln!(
        "{} ({}, input {:?} {:?}): {}",
        path.display(),
        producer_label(&im.producer),
        im.input_dims,
        im.layout,
        im.spec.summary()
    )?;
    outln!(
        "wrote {}, {}, {}\n",
        spec_path.display(),
        weights_path.display(),
        a.out.join("import.json").display()
    )?;
    out!("{}", super::tables::cost_table(&c, &t.name))?;
    outln!(
        "\nnext: nas verify --net {} --weights {} --target {}",
        spec_path.display(),
        weights_path.display(),
        t.name
    )?;
    Ok(())
}

/// Write `spec.json`, `weights.safetensors` and `import.json` (`record`) to `out`, created if
/// needed; returns the first two paths.
fn write_imported(
    out: &std::path::Path,
    spec: &crate::net::NetSpec,
    weights: &crate::weights::Weights,
    record: &serde_json::Value,
) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let spec_path = out.join("spec.json");
    let weights_path = out.join("weights.safetensors");
    crate::util::write_atomic(&spec_path, spec.to_json().as_bytes())?;
    weights.save(&weights_path)?;
    crate::util::write_atomic(
        &out.join("import.json"),
        serde_json::to_string_pretty(record)?.as_bytes(),
    )?;
    Ok((spec_path, weights_path))
}

/// A model's producer as printed.
fn producer_label(producer: &str) -> &str {
    if producer.is_empty() {
        "unknown producer"
    } else {
        producer
    }
}

/// The first bytes of the model file (enough for TFLite's file identifier).
fn read_head(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(8);
    std::fs::File::open(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .take(8)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(head)
}

/// A `.tflite` model: its spec and float view, and a copy of the file, which holds the int8
/// network (`--tflite DIR/model.tflite` deploys it as it is).
fn run_tflite(a: &ImportArgs) -> Result<()> {
    let (im, path) = OnnxArgs {
        onnx: None,
        tflite: Some(a.model.clone()),
        input_scale: a.input_scale,
    }
    .import_tflite()?;
    let int8 = im.int8.as_ref();
    let record = serde_json::json!({
        "source": path,
        "format": "tflite",
        "producer": im.producer,
        "input": {"dims": im.input_dims, "type": im.input_type, "byte_scale": im.input_scale},
        "dtype": if int8.is_some() { "int8" } else { "f32" },
        "int8": int8.map(|q| serde_json::json!({
            "input": q.layers[0].input,
            "logits": q.output_params(),
        })),
        "notes": im.notes,
    });
    let (spec_path, weights_path) = write_imported(&a.out, &im.spec, &im.weights, &record)?;
    let model_path = a.out.join("model.tflite");
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    crate::util::write_atomic(&model_path, &bytes)?;
    let dtype = if int8.is_some() {
        crate::net::Dtype::Int8
    } else {
        crate::net::Dtype::F32
    };
    let t = target::resolve(&a.target)?;
    let means = super::requantizing_means(int8, dtype);
    let c = cost::cost_deployed(&plan::lower(&im.spec)?, &t, &t.limits(), dtype, means);
    outln!(
        "{} ({}, {} input {:?}): {}",
        path.display(),
        producer_label(&im.producer),
        im.input_type,
        im.input_dims,
        im.spec.summary()
    )?;
    if let Some(q) = int8 {
        let (i, o) = (q.layers[0].input, q.output_params());
        outln!(
            "int8, its own quantization kept: input scale {} zero point {}, logits scale {} zero point {}",
            i.scale,
            i.zero_point,
            o.scale,
            o.zero_point
        )?;
    }
    outln!(
        "wrote {}, {}, {}, {}\n",
        spec_path.display(),
        weights_path.display(),
        model_path.display(),
        a.out.join("import.json").display()
    )?;
    out!("{}", super::tables::cost_table(&c, &t.name))?;
    outln!(
        "\nnext: nas verify --tflite {} --target {}{}",
        model_path.display(),
        t.name,
        if int8.is_some() {
            " (the int8 network as the file quantizes it; spec.json + weights.safetensors are \
             its float view)"
        } else {
            ""
        }
    )?;
    Ok(())
}
