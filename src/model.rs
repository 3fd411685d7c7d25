//! The burn model of a [`NetSpec`]: construction from plain [`Weights`], extraction back to
//! them, and batched inference.
//!
//! Operator semantics match the cost model and the generated kernels: Keras `same` padding
//! (burn's `PaddingConfig1d::Same` splits it the TensorFlow way), BatchNorm with Keras's
//! momentum and epsilon, ReLU, max/avg pooling with stride = window ('valid'), dropout, global
//! average pooling and a dense head. Layout is burn's `[batch, channels, length]`.

use crate::arch::{NetSpec, Padding, PoolKind};
use crate::weights::{Weights, BN_EPSILON};
use anyhow::Result;
use burn::module::{Module, Param, RunningState};
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::pool::{AvgPool1d, AvgPool1dConfig, MaxPool1d, MaxPool1dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig1d};
use burn::tensor::{Bool, Device, Tensor, TensorData};

/// Keras's BatchNorm momentum (0.99) in burn's convention (weight of the new batch).
pub const BN_MOMENTUM: f64 = 0.01;

/// The compute device: burn's pure-Rust `flex` CPU backend.
///
/// GPU backends (`cuda`, `wgpu`) plug in here when burn is built with their features; every
/// other part of the trainer is device-agnostic.
pub fn default_device() -> Device {
    Device::flex()
}

#[derive(Module, Debug)]
pub struct ConvBlock {
    pub conv: Conv1d,
    pub bn: Option<BatchNorm>,
    pub max_pool: Option<MaxPool1d>,
    pub avg_pool: Option<AvgPool1d>,
    #[module(skip)]
    pub dropout: f32,
}

#[derive(Module, Debug)]
pub struct Net {
    pub blocks: Vec<ConvBlock>,
    pub dense: Linear,
}

fn tensor<const D: usize>(w: &Weights, name: &str, dev: &Device) -> Tensor<D> {
    let t = &w.tensors[name];
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), dev)
}

impl Net {
    /// Build the model of `spec` holding `weights` (checked against the spec first).
    pub fn from_weights(spec: &NetSpec, weights: &Weights, dev: &Device) -> Result<Net> {
        spec.validate()?;
        weights.check(spec)?;
        let mut ch = spec.input_channels;
        let mut blocks = Vec::with_capacity(spec.blocks.len());
        for (i, b) in spec.blocks.iter().enumerate() {
            let padding = match b.padding {
                Padding::Same => PaddingConfig1d::Same,
                Padding::Valid => PaddingConfig1d::Valid,
            };
            let mut conv = Conv1dConfig::new(ch, b.filters, b.kernel)
                .with_stride(b.stride)
                .with_padding(padding)
                .init(dev);
            conv.weight = Param::from_tensor(tensor(weights, &format!("conv{i}.weight"), dev));
            conv.bias = Some(Param::from_tensor(tensor(
                weights,
                &format!("conv{i}.bias"),
                dev,
            )));
            let bn = b.batch_norm.then(|| {
                let mut bn = BatchNormConfig::new(b.filters)
                    .with_momentum(BN_MOMENTUM)
                    .with_epsilon(BN_EPSILON as f64)
                    .init(dev);
                bn.gamma = Param::from_tensor(tensor(weights, &format!("bn{i}.gamma"), dev));
                bn.beta = Param::from_tensor(tensor(weights, &format!("bn{i}.beta"), dev));
                bn.running_mean = RunningState::new(tensor(weights, &format!("bn{i}.mean"), dev));
                bn.running_var = RunningState::new(tensor(weights, &format!("bn{i}.var"), dev));
                bn
            });
            let (max_pool, avg_pool) = match b.pool {
                Some(p) if p.kind == PoolKind::Max => {
                    (Some(MaxPool1dConfig::new(p.size).init()), None)
                }
                Some(p) => (None, Some(AvgPool1dConfig::new(p.size).init())),
                None => (None, None),
            };
            blocks.push(ConvBlock {
                conv,
                bn,
                max_pool,
                avg_pool,
                dropout: b.dropout,
            });
            ch = b.filters;
        }
        let mut dense = LinearConfig::new(ch, spec.classes).init(dev);
        dense.weight = Param::from_tensor(tensor(weights, "dense.weight", dev));
        dense.bias = Some(Param::from_tensor(tensor(weights, "dense.bias", dev)));
        Ok(Net { blocks, dense })
    }

    /// Read the model's parameters back into plain weights.
    pub fn to_weights(&self) -> Weights {
        fn put<const D: usize>(w: &mut Weights, name: String, t: Tensor<D>) {
            let shape = t.dims().to_vec();
            let data = t
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            w.insert(name, shape, data);
        }
        let mut w = Weights::default();
        for (i, b) in self.blocks.iter().enumerate() {
            put(&mut w, format!("conv{i}.weight"), b.conv.weight.val());
            if let Some(bias) = &b.conv.bias {
                put(&mut w, format!("conv{i}.bias"), bias.val());
            }
            if let Some(bn) = &b.bn {
                put(&mut w, format!("bn{i}.gamma"), bn.gamma.val());
                put(&mut w, format!("bn{i}.beta"), bn.beta.val());
                put(&mut w, format!("bn{i}.mean"), bn.running_mean.value());
                put(&mut w, format!("bn{i}.var"), bn.running_var.value());
            }
        }
        put(&mut w, "dense.weight".into(), self.dense.weight.val());
        if let Some(bias) = &self.dense.bias {
            put(&mut w, "dense.bias".into(), bias.val());
        }
        w
    }

    /// Logits `[batch, classes]` for inputs `[batch, channels, length]` scaled to [0, 1].
    /// `dropout` draws the training-time dropout masks; `None` disables dropout.
    pub fn forward(
        &self,
        mut x: Tensor<3>,
        mut dropout: Option<&mut dyn rand::RngCore>,
    ) -> Tensor<2> {
        for b in &self.blocks {
            x = b.conv.forward(x);
            if let Some(bn) = &b.bn {
                x = bn.forward(x);
            }
            x = burn::tensor::activation::relu(x);
            if let Some(p) = &b.max_pool {
                x = p.forward(x);
            }
            if let Some(p) = &b.avg_pool {
                x = p.forward(x);
            }
            if let Some(rng) = dropout.as_deref_mut() {
                if b.dropout > 0.0 {
                    x = apply_dropout(x, b.dropout, rng);
                }
            }
        }
        let [batch, ch, _] = x.dims();
        let pooled = x.mean_dim(2).reshape([batch, ch]);
        self.dense.forward(pooled)
    }
}

/// Inverted dropout with a keep-mask drawn on the host: burn's `Dropout` draws its mask element
/// by element from one locked generator, which dominated the step time on the CPU backend.
fn apply_dropout(x: Tensor<3>, rate: f32, rng: &mut dyn rand::RngCore) -> Tensor<3> {
    let dims = x.dims();
    let n = dims.iter().product::<usize>();
    // One random u32 gives the drop decision for one element: compare against a threshold.
    let threshold = (rate as f64 * u32::MAX as f64) as u32;
    let drop: Vec<bool> = (0..n).map(|_| rng.next_u32() < threshold).collect();
    let mask = Tensor::<3, Bool>::from_data(TensorData::new(drop, dims.to_vec()), &x.device());
    x.mask_fill(mask, 0.0).mul_scalar(1.0 / (1.0 - rate))
}

/// Turn `n` raw byte samples of length `len` into a `[n, 1, len]` tensor scaled by 1/255.
pub fn input_tensor(samples: &[u8], n: usize, len: usize, dev: &Device) -> Tensor<3> {
    let data: Vec<f32> = samples[..n * len]
        .iter()
        .map(|&b| b as f32 / 255.0)
        .collect();
    Tensor::from_data(TensorData::new(data, vec![n, 1, len]), dev)
}

/// Logits of a spec with given weights for `n` raw byte samples (row-major `n × classes`),
/// computed by burn in inference mode, in batches.
pub fn infer_logits(
    spec: &NetSpec,
    weights: &Weights,
    samples: &[u8],
    n: usize,
) -> Result<Vec<f32>> {
    let dev = default_device();
    let net = Net::from_weights(spec, weights, &dev)?;
    Ok(predict_logits(&net, samples, n, spec.input_len, &dev))
}

/// Batched inference with an already built model (not in training mode).
pub fn predict_logits(net: &Net, samples: &[u8], n: usize, len: usize, dev: &Device) -> Vec<f32> {
    const BATCH: usize = 512;
    assert!(
        samples.len() >= n * len,
        "{} samples of length {len} need {} bytes",
        n,
        n * len
    );
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + BATCH).min(n);
        let x = input_tensor(&samples[start * len..end * len], end - start, len, dev);
        let logits = net.forward(x, None);
        out.extend(
            logits
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default(),
        );
        start = end;
    }
    out
}

/// Draw a keep/drop decision source from a seed (used by tests).
pub fn rng_from_seed(seed: u64) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Block, Head};

    /// One 'same' conv with an even kernel (asymmetric padding), checked against values
    /// computed by hand.
    #[test]
    fn same_padding_conv_by_hand() {
        // L = 5, k = 4, s = 1, same: out 5, total pad 3 → left 1, right 2 (TensorFlow's split).
        let spec = NetSpec {
            input_len: 5,
            input_channels: 1,
            classes: 2,
            blocks: vec![Block {
                filters: 1,
                kernel: 4,
                stride: 1,
                padding: Padding::Same,
                batch_norm: false,
                pool: None,
                dropout: 0.0,
            }],
            head: Head::GapDense,
        };
        let mut w = Weights::random(&spec, 1);
        w.insert(
            "conv0.weight",
            vec![1, 1, 4],
            vec![1.0, 10.0, 100.0, 1000.0],
        );
        w.insert("conv0.bias", vec![1], vec![0.0]);
        // Dense: identity-like so the logits are the mean conv output and its negation.
        w.insert("dense.weight", vec![1, 2], vec![1.0, -1.0]);
        w.insert("dense.bias", vec![2], vec![0.0, 0.0]);
        let dev = default_device();
        let net = Net::from_weights(&spec, &w, &dev).unwrap();
        let x: Tensor<3> = Tensor::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0], vec![1, 1, 5]),
            &dev,
        );
        let conv = net.blocks[0].conv.forward(x);
        let got = conv.into_data().try_to_vec::<f32>().unwrap();
        // Padded input: [0, 1, 2, 3, 4, 5, 0, 0]; output o = Σ_j x[o + j] · w[j].
        let expect = [
            0.0 + 10.0 * 1.0 + 100.0 * 2.0 + 1000.0 * 3.0,
            1.0 + 10.0 * 2.0 + 100.0 * 3.0 + 1000.0 * 4.0,
            2.0 + 10.0 * 3.0 + 100.0 * 4.0 + 1000.0 * 5.0,
            3.0 + 10.0 * 4.0 + 100.0 * 5.0,
            4.0 + 10.0 * 5.0,
        ];
        assert_eq!(got, expect);
    }

    #[test]
    fn weights_round_trip_through_the_model() {
        let spec = NetSpec::smart_start(784, 12);
        let w = Weights::random(&spec, 3);
        let net = Net::from_weights(&spec, &w, &default_device()).unwrap();
        assert_eq!(net.to_weights(), w);
    }

    #[test]
    fn pooling_lengths_match_the_spec() {
        let spec = NetSpec::smart_start(784, 12);
        let dev = default_device();
        let net = Net::from_weights(&spec, &Weights::random(&spec, 3), &dev).unwrap();
        let mut x = input_tensor(&vec![7u8; 784 * 2], 2, 784, &dev);
        for (b, shape) in net.blocks.iter().zip(spec.shapes().unwrap()) {
            x = b.conv.forward(x);
            if let Some(p) = &b.avg_pool {
                x = p.forward(x);
            }
            assert_eq!(x.dims(), [2, shape.out_channels, shape.out_len]);
        }
    }
}
