//! `--dtype` and the int8 calibration options shared by `export` and `verify`.

use super::LoadedModel;
use crate::net::Dtype;
use crate::quant::{calibrate::DEFAULT_CALIBRATION_SAMPLES, CalibrationMethod, QuantLowered};
use anyhow::{ensure, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct DtypeArgs {
    /// Element type of the deployed kernel: int8 quantizes the network first (post-training,
    /// TFLite/CMSIS-NN arithmetic, activation ranges calibrated on training samples)
    /// [default: the run's (`nas search --dtype`), else f32]
    #[arg(long, value_enum)]
    pub dtype: Option<Dtype>,
    /// int8: dataset directory whose training split calibrates the activation ranges
    /// [default: the run's dataset (so that every command deploys the same int8 model), else
    /// --data where the command has it]
    #[arg(long)]
    pub calibration_data: Option<PathBuf>,
    /// int8: training samples the activation ranges are calibrated on
    #[arg(long, default_value_t = DEFAULT_CALIBRATION_SAMPLES)]
    pub calibration_samples: usize,
    /// int8: take each activation range at this percentile (e.g. 99.99) instead of min/max
    #[arg(long)]
    pub calibration_percentile: Option<f64>,
}

impl DtypeArgs {
    /// `--dtype`, else the dtype the run in `run` was searched for, else f32.
    pub fn resolve(&self, run: Option<&Path>) -> Dtype {
        self.dtype
            .or_else(|| {
                // A search run's config.json, or a `nas train` directory's train.json.
                let run = run?;
                [
                    crate::search::rundir::CONFIG,
                    crate::search::rundir::TRAIN_CONFIG,
                ]
                .iter()
                .find_map(|name| {
                    let v: serde_json::Value = crate::util::read_json(&run.join(name)).ok()?;
                    serde_json::from_value(v.get("dtype")?.clone()).ok()
                })
            })
            .unwrap_or_default()
    }

    /// [`DtypeArgs::resolve`] for a loaded model: an int8 TFLite model is int8 unless
    /// `--dtype` says otherwise.
    pub fn resolve_for(&self, m: &LoadedModel, run: Option<&Path>) -> Dtype {
        match (self.dtype, &m.int8) {
            (None, Some(_)) => Dtype::Int8,
            _ => self.resolve(run),
        }
    }

    /// An int8 TFLite model's own network (`int8`), unless `--dtype f32` asks for the float
    /// view; calibration options are refused for it.
    pub fn own_int8<'q>(&self, int8: Option<&'q QuantLowered>) -> Result<Option<&'q QuantLowered>> {
        match int8 {
            Some(q) if self.dtype != Some(Dtype::F32) => {
                self.refuse_calibration("an int8 TFLite model")?;
                note!("int8: the TFLite model's own quantization (scales, zero points, per-channel weights)");
                Ok(Some(q))
            }
            _ => Ok(None),
        }
    }

    /// Calibration options make no sense for a model quantized already (`what`).
    fn refuse_calibration(&self, what: &str) -> Result<()> {
        ensure!(
            self.calibration_data.is_none()
                && self.calibration_percentile.is_none()
                && self.calibration_samples == DEFAULT_CALIBRATION_SAMPLES,
            "{what} carries its own quantization: --calibration-* options do not apply"
        );
        Ok(())
    }

    /// The calibration method the options ask for.
    pub fn method(&self) -> Result<CalibrationMethod> {
        ensure!(
            self.calibration_samples > 0,
            "--calibration-samples must be at least 1"
        );
        Ok(match self.calibration_percentile {
            None => CalibrationMethod::MinMax,
            Some(p) => {
                ensure!(
                    (50.0..=100.0).contains(&p),
                    "--calibration-percentile {p} is outside 50..=100"
                );
                CalibrationMethod::Percentile(p)
            }
        })
    }

    /// The model quantized when `--dtype int8`, calibrated on the training split of
    /// `--calibration-data`, else of the run's dataset, else of `data`: a run's int8 model is
    /// the same whatever data a command evaluates or embeds. Says on stderr what it calibrated
    /// on.
    pub fn quantize(
        &self,
        m: &LoadedModel,
        data: Option<&Path>,
        run: Option<&Path>,
    ) -> Result<Option<QuantLowered>> {
        if self.resolve_for(m, run) == Dtype::F32 {
            return Ok(None);
        }
        if let Some(q) = self.own_int8(m.int8.as_ref())? {
            return Ok(Some(q.clone()));
        }
        let method = self.method()?;
        let dir = self
            .calibration_data
            .as_deref()
            .or(if run.is_some() { None } else { data });
        let len = m.spec.input_len * m.spec.input_channels;
        let (calib, what) = calibration_data(dir, run, len)?;
        note!(
            "int8: calibrating activation ranges on {} samples of {what}",
            self.calibration_samples.min(calib.n())
        );
        Ok(Some(crate::quant::ptq(
            &m.spec,
            &m.weights,
            &calib,
            self.calibration_samples,
            method,
        )?))
    }
}

/// The samples int8 calibration uses on the command line: the training split of `data` when
/// given, else of the dataset the run in `run` was searched on, else synthetic samples (said so
/// in the returned description) of `sample_len` bytes, the network's input. Never the test
/// split.
pub fn calibration_data(
    data: Option<&std::path::Path>,
    run: Option<&std::path::Path>,
    sample_len: usize,
) -> anyhow::Result<(crate::data::Dataset, String)> {
    use anyhow::Context;
    if let Some(dir) = data {
        let s = crate::data::load_dir(dir, &crate::data::LoadOptions::default())
            .with_context(|| format!("cannot load the calibration dataset {}", dir.display()))?;
        return Ok((s.train, format!("the training split of {}", dir.display())));
    }
    if let Some(run) = run {
        // A search run or a `nas train` directory: the data it was trained on.
        let m = crate::search::rundir::ModelDir::open(run)?;
        let s = crate::search::load_data(&m.data, m.seed)?;
        let what = if s.synthetic {
            "the run's synthetic training set".to_string()
        } else {
            format!("the training split of the run's dataset ({})", s.train.name)
        };
        return Ok((s.train, what));
    }
    Ok((
        crate::data::synthetic(2_400, sample_len, 12, crate::data::DEFAULT_SEED),
        "SYNTHETIC samples (give --data DIR to calibrate on real training data)".to_string(),
    ))
}
