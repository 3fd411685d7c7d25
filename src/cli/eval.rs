//! `nas eval`: a run's delivered model (or an ONNX model) on the test split.

use crate::search::rundir::ModelDir;
use crate::search::{load_data, DataSource};
use crate::train;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory written by `nas search` or `nas train`
    #[arg(long, required_unless_present = "onnx", conflicts_with = "onnx")]
    pub run: Option<PathBuf>,
    #[command(flatten)]
    pub onnx: super::OnnxArgs,
    /// Evaluate on this dataset's test split instead of the run's own data (required with
    /// --onnx)
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
}

/// `nas eval`: the delivered model's test metrics and confusion matrix.
pub fn run(a: EvalArgs) -> Result<()> {
    let (spec, w, name, own_data, seed) = match (&a.run, &a.onnx.onnx) {
        (_, Some(_)) => {
            let (im, path) = a.onnx.import()?;
            (im.spec, im.weights, path, None, 0)
        }
        (Some(run), None) => {
            let md = ModelDir::open(run)?;
            (md.spec, md.weights, run.clone(), Some(md.data), md.seed)
        }
        (None, None) => bail!("give --run DIR, or --onnx MODEL.onnx with --data DIR"),
    };
    let (spec, w) = (&spec, &w);
    let source = match (&a.data, own_data) {
        (Some(p), _) => DataSource::Dir {
            path: p.clone(),
            limit_per_class: None,
        },
        (None, Some(d)) => d,
        (None, None) => bail!("--onnx needs --data DIR: the dataset to evaluate on"),
    };
    let splits = load_data(&source, seed)?;
    if splits.test.len != spec.input_len {
        bail!(
            "the test samples have length {}, the winner expects {}",
            splits.test.len,
            spec.input_len
        );
    }
    if splits.test.classes > spec.classes {
        bail!(
            "the test split has {} classes, the winner was trained for {}",
            splits.test.classes,
            spec.classes
        );
    }
    let m = train::evaluate(spec, w, &splits.test)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"run": name, "spec": spec, "test": m})
            )?
        );
    } else {
        println!("{}: {}", name.display(), spec.summary());
        println!(
            "test split ({} samples{}): {}",
            m.samples,
            if splits.synthetic { ", synthetic" } else { "" },
            m.brief()
        );
        println!(
            "weighted precision {:.2} %  weighted recall {:.2} %\n",
            100.0 * m.weighted_precision,
            100.0 * m.weighted_recall
        );
        print!("{}", m.confusion_table(None));
    }
    Ok(())
}
