//! `nas import`: an ONNX model → `spec.json` + `weights.safetensors`, which every other command
//! takes with `--net` / `--weights`.

use super::OnnxArgs;
use crate::net::{cost, plan};
use crate::target;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  nas import model.onnx --out imported/\n  \
    nas verify --net imported/spec.json --weights imported/weights.safetensors\n\n\
    Or skip the files: `nas verify --onnx model.onnx` (also cost, export, eval).")]
pub struct ImportArgs {
    /// The ONNX model (a 1-D CNN: conv/BN/ReLU/pool blocks, global average pooling, dense)
    pub model: PathBuf,
    /// Output directory (created if needed): spec.json, weights.safetensors, import.json
    #[arg(long)]
    pub out: PathBuf,
    /// The graph's input is byte × this [default: the model's `nas.input_scale` metadata, else
    /// 1 when the graph rescales its input itself, else 1/255]
    #[arg(long, value_parser = super::positive_f32)]
    pub input_scale: Option<f32>,
    /// Target whose budgets the imported network is costed against
    #[arg(long, default_value = super::DEFAULT_TARGET)]
    pub target: String,
}

pub fn run(a: ImportArgs) -> Result<()> {
    let (im, path) = OnnxArgs {
        onnx: Some(a.model.clone()),
        input_scale: a.input_scale,
    }
    .import()?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let spec_path = a.out.join("spec.json");
    let weights_path = a.out.join("weights.safetensors");
    crate::util::write_atomic(&spec_path, im.spec.to_json().as_bytes())?;
    im.weights.save(&weights_path)?;
    let record = serde_json::json!({
        "source": path,
        "producer": im.producer,
        "input": {"name": im.input_name, "dims": im.input_dims, "layout": im.layout},
        "graph_input_scale": im.graph_input_scale,
        "graph_internal_scale": im.graph_internal_scale,
        "notes": im.notes,
    });
    crate::util::write_atomic(
        &a.out.join("import.json"),
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )?;
    let t = target::resolve(&a.target)?;
    let c = cost::cost(&plan::lower(&im.spec)?, &t, &t.limits());
    outln!(
        "{} ({}, input {:?} {:?}): {}",
        path.display(),
        if im.producer.is_empty() {
            "unknown producer"
        } else {
            &im.producer
        },
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
