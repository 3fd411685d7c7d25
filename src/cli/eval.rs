//! `nas eval`: a run's delivered model (a candidate of it, or an ONNX or TFLite model) on the
//! test split.

use crate::data::Splits;
use crate::metrics::Metrics;
use crate::net::NetSpec;
use crate::search::rundir::ModelDir;
use crate::search::{load_data, DataSource};
use crate::train;
use crate::weights::Weights;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory written by `nas search` or `nas train`
    #[arg(long, required_unless_present_any = ["onnx", "tflite"], conflicts_with_all = ["onnx", "tflite"])]
    pub run: Option<PathBuf>,
    /// Evaluate this candidate of the search (e.g. g003-c01) instead of the delivered model;
    /// its final training when it had one
    #[arg(long, value_name = "ID", requires = "run")]
    pub candidate: Option<String>,
    #[command(flatten)]
    pub onnx: super::OnnxArgs,
    /// Evaluate on this dataset's test split instead of the run's own data (required with
    /// --onnx and --tflite)
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
    /// int8: also quantize the model (post-training, calibrated on the run's training split
    /// unless --calibration-data, whatever --data) and report its test metrics next to the
    /// float ones
    #[command(flatten)]
    pub dtype: super::quant::DtypeArgs,
    /// Write the deployed model's prediction for every test sample to this CSV file: `index`
    /// (the sample's position in the test split: the order of the t10k file, or of the split
    /// held out of a single images file), `label`, `predicted`, `correct` (0/1) and
    /// `confidence` (the predicted class's softmax probability)
    #[arg(long, value_name = "FILE")]
    pub predictions: Option<PathBuf>,
}

/// `nas eval`: the delivered model's test metrics and confusion matrix.
pub fn run(a: EvalArgs) -> Result<()> {
    let (spec, w, name, own_data, seed, fixed) = load_model(&a)?;
    let (spec, w) = (&spec, &w);
    let splits = test_splits(&a, own_data, seed, spec)?;
    let test = &splits.test;
    let float_logits = train::model::infer_logits(spec, w, &test.samples, test.n())?;
    let m = crate::metrics::from_logits(&float_logits, &test.labels, spec.classes);
    let calibrated;
    let quantized = match a.dtype.own_int8(fixed.as_ref())? {
        Some(q) => Some(q),
        None => {
            calibrated = int8_model(&a, spec, w, &splits)?;
            calibrated.as_ref()
        }
    };
    let int8_outputs = quantized.map(|q| crate::quant::infer_int8(q, test));
    let int8 = quantized
        .zip(int8_outputs.as_ref())
        .map(|(q, outs)| crate::quant::int8_metrics(outs, &test.labels, q.plan.classes));
    if let Some(path) = &a.predictions {
        // What is deployed: the int8 kernel's argmax with --dtype int8, else the float one.
        let rows: Vec<(usize, &[f32])> = match &int8_outputs {
            Some(outs) => outs.iter().map(|o| (o.predict(), &o.logits[..])).collect(),
            None => float_logits
                .chunks_exact(spec.classes)
                .map(|row| (crate::metrics::argmax(row), row))
                .collect(),
        };
        write_predictions(path, &test.labels, &rows)?;
        note!(
            "wrote the predictions for {} test samples to {}",
            rows.len(),
            path.display()
        );
    }
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json(&a, &name, spec, &m, int8.as_ref()))?
        )?;
    } else {
        print_tables(&a, &name, spec, &splits, &m, int8.as_ref())?;
    }
    Ok(())
}

/// `--json`: `test` holds the figures of what is deployed (`dtype`): with int8 the quantized
/// network's, and the float32 network's beside them as `test_float32`.
fn json(
    a: &EvalArgs,
    name: &Path,
    spec: &NetSpec,
    float: &Metrics,
    int8: Option<&Metrics>,
) -> serde_json::Value {
    let mut v = serde_json::json!({"run": name, "candidate": a.candidate, "spec": spec});
    match int8 {
        Some(q) => {
            v["dtype"] = serde_json::json!(crate::net::Dtype::Int8);
            v["test"] = serde_json::json!(q);
            v["test_float32"] = serde_json::json!(float);
        }
        None => {
            v["dtype"] = serde_json::json!(crate::net::Dtype::F32);
            v["test"] = serde_json::json!(float);
        }
    }
    v
}

/// The model to evaluate (from --onnx, or the run's delivered model or --candidate): its spec,
/// weights and name, and the run's own data and seed.
#[allow(clippy::type_complexity)]
fn load_model(
    a: &EvalArgs,
) -> Result<(
    NetSpec,
    Weights,
    PathBuf,
    Option<DataSource>,
    u64,
    Option<crate::quant::QuantLowered>,
)> {
    if let Some(m) = a.onnx.load()? {
        return Ok((m.spec, m.weights, m.path, None, 0, m.int8));
    }
    Ok(match &a.run {
        Some(run) => {
            let md = ModelDir::open_model(run, a.candidate.as_deref())?;
            (
                md.spec,
                md.weights,
                run.clone(),
                Some(md.data),
                md.seed,
                None,
            )
        }
        None => {
            bail!("give --run DIR, or --onnx MODEL.onnx / --tflite MODEL.tflite with --data DIR")
        }
    })
}

/// The splits to evaluate on (--data, else the run's own data), checked against the spec's
/// input length and classes.
fn test_splits(
    a: &EvalArgs,
    own_data: Option<DataSource>,
    seed: u64,
    spec: &NetSpec,
) -> Result<Splits> {
    let source = match (&a.data, own_data) {
        (Some(p), _) => DataSource::Dir {
            path: p.clone(),
            limit_per_class: None,
            relabel_conflicts: false,
        },
        (None, Some(d)) => d,
        (None, None) => bail!("--onnx and --tflite need --data DIR: the dataset to evaluate on"),
    };
    let splits = load_data(&source, seed)?;
    // The model in the words of the command line: the ONNX file, the candidate or the run.
    let model = match (
        a.onnx.onnx.as_ref().or(a.onnx.tflite.as_ref()),
        &a.run,
        &a.candidate,
    ) {
        (Some(m), _, _) => format!("the model {}", m.display()),
        (None, Some(r), Some(id)) => format!("candidate {id} of {}", r.display()),
        (None, Some(r), None) => format!("the model of {}", r.display()),
        (None, None, _) => "the model".to_string(),
    };
    let data = match &source {
        DataSource::Dir { path, .. } => format!("the dataset {}", path.display()),
        DataSource::Synthetic { .. } => "the synthetic dataset".to_string(),
    };
    if splits.test.len != spec.input_len {
        bail!(
            "{model} takes samples of {} bytes, but the samples of {data} have {} bytes",
            spec.input_len,
            splits.test.len
        );
    }
    if splits.test.classes > spec.classes {
        bail!(
            "{model} has {} output classes, but the labels of {data} use {} classes (0..={})",
            spec.classes,
            splits.test.classes,
            splits.test.classes - 1
        );
    }
    Ok(splits)
}

/// With int8: the post-training-quantized model, calibrated on
/// --calibration-data, else the run's training split, else the evaluated data's.
fn int8_model(
    a: &EvalArgs,
    spec: &NetSpec,
    w: &Weights,
    splits: &Splits,
) -> Result<Option<crate::quant::QuantLowered>> {
    Ok(match a.dtype.resolve(a.run.as_deref()) {
        crate::net::Dtype::F32 => None,
        crate::net::Dtype::Int8 => {
            let method = a.dtype.method()?;
            let (calib, what) = match &a.dtype.calibration_data {
                Some(dir) => super::quant::calibration_data(
                    Some(dir),
                    None,
                    spec.input_len * spec.input_channels,
                )?,
                // The run's own calibration set, whatever data is evaluated: the int8 model
                // export and verify deploy.
                None if a.run.is_some() => super::quant::calibration_data(
                    None,
                    a.run.as_deref(),
                    spec.input_len * spec.input_channels,
                )?,
                None => (
                    splits.train.clone(),
                    format!("the training split of {}", splits.train.name),
                ),
            };
            note!(
                "int8: calibrating activation ranges on {} samples of {what}",
                a.dtype.calibration_samples.min(calib.n())
            );
            Some(crate::quant::ptq(
                spec,
                w,
                &calib,
                a.dtype.calibration_samples,
                method,
            )?)
        }
    })
}

/// `--predictions`: one CSV row per test sample, `rows[i]` its predicted class and logits.
fn write_predictions(path: &Path, labels: &[u8], rows: &[(usize, &[f32])]) -> Result<()> {
    use std::fmt::Write as _;
    let mut csv = String::from("index,label,predicted,correct,confidence\n");
    for (i, (&label, &(pred, logits))) in labels.iter().zip(rows).enumerate() {
        let _ = writeln!(
            csv,
            "{i},{label},{pred},{},{:.4}",
            u8::from(label as usize == pred),
            crate::metrics::softmax_at(logits, pred)
        );
    }
    std::fs::write(path, csv).with_context(|| format!("cannot write {}", path.display()))
}

/// The metrics and confusion matrix as tables, and the int8 figures next to the float ones.
fn print_tables(
    a: &EvalArgs,
    name: &Path,
    spec: &NetSpec,
    splits: &Splits,
    m: &Metrics,
    int8: Option<&Metrics>,
) -> Result<()> {
    match &a.candidate {
        Some(id) => outln!("{} candidate {id}: {}", name.display(), spec.summary())?,
        None => outln!("{}: {}", name.display(), spec.summary())?,
    }
    outln!(
        "test split ({} samples{}): {}",
        m.samples,
        if splits.synthetic { ", synthetic" } else { "" },
        m.brief()
    )?;
    outln!(
        "weighted precision {:.2} %  weighted recall {:.2} %\n",
        100.0 * m.weighted_precision,
        100.0 * m.weighted_recall
    )?;
    out!("{}", m.confusion_table(None))?;
    if let Some(q) = int8 {
        outln!(
            "\nint8 (post-training quantization) on the same split: {}",
            q.brief()
        )?;
        outln!(
            "  float32 accuracy {:.2} %, int8 {:.2} % ({:+.2} points); weighted F1 {:.2} % vs {:.2} %",
            100.0 * m.accuracy,
            100.0 * q.accuracy,
            100.0 * (q.accuracy - m.accuracy),
            100.0 * m.weighted_f1,
            100.0 * q.weighted_f1
        )?;
    }
    Ok(())
}
