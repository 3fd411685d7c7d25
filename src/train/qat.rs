//! Quantization-aware fine-tuning (`nas train --qat-epochs N`): a few epochs of training through
//! the int8 network's function, so the float weights move to where they quantize well.
//!
//! burn has no QAT, so the forward pass fake-quantizes with a straight-through estimator,
//! `x + (fq(x) − x).detach()`: the value is the quantized one, the gradient passes as if
//! nothing had been rounded. What is quantized is what the int8 kernels quantize
//! ([`crate::quant`]):
//! - BatchNorm is frozen (running statistics, γ and β still trained) and folded into the conv,
//!   and the folded weights are rounded per output channel to `max|w| / 127` steps, as the
//!   quantizer does (the int32 bias is left in float: its step `s_in · s_w` is far below the
//!   weights');
//! - every activation the kernels store as int8 is rounded to its calibrated scale and zero
//!   point: each conv's ReLU output (before pooling; average pooling rounds again), the global
//!   average and the logits;
//! - the input needs nothing: `byte / 255` is exactly the int8 input grid; dropout is off.
//!
//! The activation parameters come from a post-training quantization of the starting weights
//! and stay fixed while fine-tuning; each epoch is validated by quantizing the weights again
//! (calibrated on training samples) and running the int8 host reference on the validation
//! set, so the epoch kept is the best *deployed* one.

use super::model::{FakeQuant, Net};
use super::{check_data, fit, Progress, TrainConfig, TrainOutcome};
use crate::data::Dataset;
use crate::metrics::Metrics;
use crate::net::NetSpec;
use crate::quant::CalibrationMethod;
use crate::weights::Weights;
use anyhow::{Context, Result};
use burn::module::Module;

/// Samples the activation ranges are calibrated on, as `nas eval --dtype int8` does.
pub const CALIBRATION_SAMPLES: usize = 1000;

/// Fine-tune `init` through the int8 function for `cfg.epochs` epochs on `train`, validating
/// each epoch by its post-training quantization's int8 metrics on `val`.
pub fn fine_tune(
    spec: &NetSpec,
    init: &Weights,
    train: &Dataset,
    val: &Dataset,
    cfg: &TrainConfig,
    seed: u64,
    observe: &mut dyn FnMut(Progress),
) -> Result<TrainOutcome> {
    check_data(spec, train, val)?;
    let quantize = |w: &Weights| {
        crate::quant::ptq(
            spec,
            w,
            train,
            CALIBRATION_SAMPLES,
            CalibrationMethod::MinMax,
        )
    };
    let start = quantize(init).context("quantizing the starting weights")?;
    let dev = super::model::default_device().autodiff();
    dev.seed(seed);
    let mut net = Net::from_weights(spec, init, &dev)?;
    net.fake_quant = Some(FakeQuant::of(&start)?);
    for b in &mut net.blocks {
        if let Some(bn) = &mut b.bn {
            bn.training = bn.training.clone().with_value(false);
        }
    }
    fit(
        net,
        train,
        spec.input_len,
        cfg,
        seed,
        None,
        observe,
        &mut |net| {
            let weights = net.valid().to_weights();
            let metrics: Metrics = crate::quant::evaluate_int8(&quantize(&weights)?, val);
            Ok((weights, metrics))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::reference_int8;
    use crate::train::tests::iscx;
    use burn::tensor::{Tensor, TensorData};

    /// Briefly trained weights of the smart start (BatchNorm statistics that are not the
    /// identity), on a small real subset.
    fn trained(s: &crate::data::Splits, spec: &NetSpec) -> Weights {
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 64,
            max_steps_per_epoch: Some(6),
            ..TrainConfig::proxy()
        };
        let (tr, val) = (s.train.stratified_head(30), s.test.stratified_head(5));
        let init = super::super::initial_weights(spec, 3);
        super::super::train(spec, &init, &tr, &val, &cfg, 5, &mut |_, _| {})
            .unwrap()
            .weights
    }

    /// The fake-quantized forward pass is the int8 network's function: on real ISCX test
    /// samples its logits sit on the int8 output grid within two steps of the int8 host
    /// reference's (float rounding where the kernels use fixed-point multipliers), and the
    /// predictions agree.
    #[test]
    fn fake_quant_forward_computes_the_int8_network() {
        let s = iscx();
        let spec = NetSpec::smart_start(784, 12);
        let w = trained(&s, &spec);
        let q = crate::quant::ptq(&spec, &w, &s.train, 300, CalibrationMethod::MinMax).unwrap();
        let dev = super::super::model::default_device();
        let mut net = Net::from_weights(&spec, &w, &dev).unwrap();
        net.fake_quant = Some(FakeQuant::of(&q).unwrap());
        let test = s.test.stratified_head(4);
        let x: Vec<f32> = test
            .samples
            .iter()
            .map(|&b| crate::data::input_value(b))
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(x, vec![test.n(), 1, 784]), &dev);
        let logits: Vec<f32> = net
            .forward(x, None)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let step = q.output_params().scale;
        let (mut worst, mut agree) = (0.0f32, 0);
        for i in 0..test.n() {
            let ours = reference_int8(&q, test.sample(i));
            let fq = &logits[i * 12..(i + 1) * 12];
            for (a, b) in ours.logits.iter().zip(fq) {
                worst = worst.max((a - b).abs() / step);
            }
            let best = (0..12).fold(0, |m, k| if fq[k] > fq[m] { k } else { m });
            agree += usize::from(best == ours.predict());
        }
        println!(
            "fake quant vs int8 reference: {agree}/{} predictions, worst {worst} steps",
            test.n()
        );
        assert!(worst <= 2.0, "logits {worst} output steps apart");
        assert!(
            agree * 10 >= test.n() * 9,
            "{agree} of {} predictions agree",
            test.n()
        );
    }

    /// A short fine-tuning on a small real subset runs through the int8 function, keeps its
    /// BatchNorm statistics, and reports the int8 validation metrics of the weights it returns.
    #[test]
    fn fine_tune_validates_the_int8_network() {
        let s = iscx();
        let spec = NetSpec::smart_start(784, 12);
        let w = trained(&s, &spec);
        let (tr, val) = (s.train.stratified_head(30), s.test.stratified_head(5));
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 64,
            learning_rate: 1e-4,
            max_steps_per_epoch: Some(4),
            ..TrainConfig::proxy()
        };
        let out = fine_tune(&spec, &w, &tr, &val, &cfg, 9, &mut |_| {}).unwrap();
        assert_eq!(out.epochs_run, 2);
        out.weights.check(&spec).unwrap();
        assert_eq!(
            out.weights.tensors["bn1.mean"], w.tensors["bn1.mean"],
            "BatchNorm frozen"
        );
        assert_ne!(
            out.weights.tensors["conv1.weight"],
            w.tensors["conv1.weight"]
        );
        let q = crate::quant::ptq(
            &spec,
            &out.weights,
            &tr,
            CALIBRATION_SAMPLES,
            CalibrationMethod::MinMax,
        )
        .unwrap();
        assert_eq!(
            crate::quant::evaluate_int8(&q, &val).accuracy,
            out.val.accuracy
        );
    }
}
