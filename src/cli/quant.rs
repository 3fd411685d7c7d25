//! `--dtype` and the int8 calibration options shared by `export` and `verify`.

use super::LoadedModel;
use crate::quant::{
    calibrate::DEFAULT_CALIBRATION_SAMPLES, CalibrationMethod, Dtype, QuantLowered,
};
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
    /// [default: --data where the command has it, else the run's dataset]
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
    /// `--calibration-data`, else of `data`, else of the run's dataset. Says on stderr what it
    /// calibrated on.
    pub fn quantize(
        &self,
        m: &LoadedModel,
        data: Option<&Path>,
        run: Option<&Path>,
    ) -> Result<Option<QuantLowered>> {
        if self.resolve(run) == Dtype::F32 {
            return Ok(None);
        }
        let method = self.method()?;
        let dir = self.calibration_data.as_deref().or(data);
        let len = m.spec.input_len * m.spec.input_channels;
        let (calib, what) = crate::quant::calibration_data(dir, run, len)?;
        eprintln!(
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
