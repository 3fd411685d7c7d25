//! The burn model of a [`NetSpec`]: construction from plain [`Weights`], extraction back to
//! them, and batched inference.
//!
//! Operator semantics match the cost model and the generated kernels: Keras `same` padding
//! (burn's `PaddingConfig1d::Same` splits it the TensorFlow way), BatchNorm with Keras's
//! momentum and epsilon, ReLU, max/avg pooling with stride = window ('valid'), dropout, global
//! average pooling and a dense head. Layout is burn's `[batch, channels, length]`.

use crate::net::{conv_out_len, conv_padding, NetSpec, Padding, PoolKind, EMBEDDING_ROWS};
use crate::weights::{BnParam, Param as Name, Weights, BN_EPSILON};
use anyhow::Result;
use burn::module::{Module, Param, RunningState};
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::pool::{AvgPool1d, AvgPool1dConfig, MaxPool1d, MaxPool1dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Embedding, EmbeddingConfig, Linear, LinearConfig, PaddingConfig1d,
};
use burn::tensor::ops::PadMode;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use rayon::prelude::*;

mod fake_quant;
pub use fake_quant::FakeQuant;

/// Keras's BatchNorm momentum (0.99) in burn's convention (weight of the new batch).
pub const BN_MOMENTUM: f64 = 0.01;

/// The compute device: burn's pure-Rust `flex` CPU backend.
///
/// GPU backends (`cuda`, `wgpu`) plug in here when burn is built with their features; every
/// other part of the trainer is device-agnostic.
///
/// The first call also tunes glibc's allocator for training: the step allocates and frees
/// tensors of tens of megabytes, which glibc by default maps and unmaps (or trims) each time,
/// so every step paid for a million page faults (measured: 1.0 M minor faults and 1.8 s of
/// system time for 30 steps of reference network A; 0.06 M and 0.2 s after).
pub fn default_device() -> Device {
    tune_allocator();
    Device::flex()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only sets allocator parameters; it is called before training
        // allocates and is safe to call at any time.
        unsafe {
            // Keep freed memory for reuse instead of returning it to the kernel, and serve
            // blocks up to glibc's largest threshold (32 MiB on 64-bit) from the heap.
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
        }
    });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

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
    /// The input embedding's table `[256, dim]`, when the spec's input is embedded.
    pub embedding: Option<Embedding>,
    pub blocks: Vec<ConvBlock>,
    pub dense: Linear,
    /// Quantization-aware training: when set, [`Net::forward`] computes the int8 network's
    /// function with fake quantization ([`fake_quant`]).
    #[module(skip)]
    pub fake_quant: Option<FakeQuant>,
}

fn tensor<const D: usize>(w: &Weights, name: Name, dev: &Device) -> Result<Tensor<D>> {
    let t = w.tensor(name)?;
    Ok(Tensor::from_data(
        TensorData::new(t.data.clone(), t.shape.clone()),
        dev,
    ))
}

impl Net {
    /// Build the model of `spec` holding `weights` (checked against the spec first).
    pub fn from_weights(spec: &NetSpec, weights: &Weights, dev: &Device) -> Result<Net> {
        spec.validate()?;
        weights.check(spec)?;
        let embedding = match spec.input.embedding_dim() {
            Some(dim) => {
                let mut e = EmbeddingConfig::new(EMBEDDING_ROWS, dim).init(dev);
                e.weight = Param::from_tensor(tensor(weights, Name::Embedding, dev)?);
                Some(e)
            }
            None => None,
        };
        let mut ch = spec.first_channels();
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
            conv.weight = Param::from_tensor(tensor(weights, Name::ConvWeight(i), dev)?);
            conv.bias = Some(Param::from_tensor(tensor(weights, Name::ConvBias(i), dev)?));
            let bn = if b.batch_norm {
                let mut bn = BatchNormConfig::new(b.filters)
                    .with_momentum(BN_MOMENTUM)
                    .with_epsilon(BN_EPSILON as f64)
                    .init(dev);
                let v = |p| tensor(weights, Name::Bn(i, p), dev);
                bn.gamma = Param::from_tensor(v(BnParam::Gamma)?);
                bn.beta = Param::from_tensor(v(BnParam::Beta)?);
                bn.running_mean = RunningState::new(v(BnParam::Mean)?);
                bn.running_var = RunningState::new(v(BnParam::Var)?);
                Some(bn)
            } else {
                None
            };
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
        dense.weight = Param::from_tensor(tensor(weights, Name::DenseWeight, dev)?);
        dense.bias = Some(Param::from_tensor(tensor(weights, Name::DenseBias, dev)?));
        Ok(Net {
            embedding,
            blocks,
            dense,
            fake_quant: None,
        })
    }

    /// Read the model's parameters back into plain weights.
    pub fn to_weights(&self) -> Weights {
        fn put<const D: usize>(w: &mut Weights, name: Name, t: Tensor<D>) {
            let shape = t.dims().to_vec();
            let data = t
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            w.insert(name, shape, data);
        }
        let mut w = Weights::default();
        if let Some(e) = &self.embedding {
            put(&mut w, Name::Embedding, e.weight.val());
        }
        for (i, b) in self.blocks.iter().enumerate() {
            put(&mut w, Name::ConvWeight(i), b.conv.weight.val());
            if let Some(bias) = &b.conv.bias {
                put(&mut w, Name::ConvBias(i), bias.val());
            }
            if let Some(bn) = &b.bn {
                put(&mut w, Name::Bn(i, BnParam::Gamma), bn.gamma.val());
                put(&mut w, Name::Bn(i, BnParam::Beta), bn.beta.val());
                put(
                    &mut w,
                    Name::Bn(i, BnParam::Mean),
                    bn.running_mean.value_sync(),
                );
                put(
                    &mut w,
                    Name::Bn(i, BnParam::Var),
                    bn.running_var.value_sync(),
                );
            }
        }
        put(&mut w, Name::DenseWeight, self.dense.weight.val());
        if let Some(bias) = &self.dense.bias {
            put(&mut w, Name::DenseBias, bias.val());
        }
        w
    }

    /// Logits `[batch, classes]` for inputs `[batch, channels, length]` scaled to [0, 1].
    /// `dropout` draws the training-time dropout masks; `None` disables dropout.
    ///
    /// Computed channels-last (`[batch, length, channels]`, flattened to `[batch·length,
    /// channels]` where possible), which measured 2-3× faster to train on the `flex` CPU
    /// backend than burn's own layers (see `nas bench`):
    /// - every convolution is one im2col matrix product over the whole batch
    ///   (`conv_channels_last`); burn's `conv1d` runs one small product per sample, and its
    ///   weight gradient one per input channel;
    /// - BatchNorm runs on the rows with reductions along contiguous memory
    ///   (`batch_norm_rows`); outside training it is folded into the convolution;
    /// - dropout's mask is drawn on the host (`keep_mask_tensor`); when ReLU and dropout are
    ///   adjacent they are one multiplication by `(x > 0) ∧ keep`, and the 1 / (1 − rate)
    ///   rescaling is applied to the next layer's weights instead of the activation.
    ///
    /// The result is the same function as burn's layers in `[batch, channels, length]`
    /// ([`Net::forward_reference`]), with the same gradients and running statistics (tests).
    pub fn forward(&self, x: Tensor<3>, dropout: Option<&mut dyn rand::RngCore>) -> Tensor<2> {
        let (y, stats) = self.forward_collect(x, dropout);
        self.update_running_stats(&[stats]);
        y
    }

    /// [`Net::forward`] without moving BatchNorm's running statistics: the statistics of the
    /// batch at each training-mode BatchNorm are returned instead (one entry per block, `None`
    /// where the block has none or does not normalise with batch statistics), for
    /// [`Net::update_running_stats`]. A training step that splits its batch into shards runs
    /// this on each shard and moves the running statistics once, by the whole batch's.
    pub fn forward_collect(
        &self,
        x: Tensor<3>,
        mut dropout: Option<&mut dyn rand::RngCore>,
    ) -> (Tensor<2>, Vec<Option<BatchStats>>) {
        if let Some(fq) = &self.fake_quant {
            // BatchNorm is frozen under quantization-aware training: no batch statistics.
            return (fake_quant::forward(self, x, fq), Vec::new());
        }
        let mut stats = Vec::with_capacity(self.blocks.len());
        let [batch, _, _] = x.dims();
        let mut x = self.input_channels_last(x, self.embedding.as_ref().map(|e| e.weight.val()));
        let training = x.device().is_autodiff();
        // Inverted dropout's 1 / (1 − rate) is applied to the next layer's weights, which is
        // the same function and spares a pass over the activation.
        let mut scale = 1.0f32;
        for b in &self.blocks {
            let mut w = b.conv.weight.val();
            let mut bias = b.conv.bias.as_ref().map(|p| p.val());
            if scale != 1.0 {
                w = w.mul_scalar(scale);
            }
            // Outside training, BatchNorm (running statistics) is an affine map per channel:
            // folded into the convolution, as the generated kernels do.
            let bn = match &b.bn {
                Some(bn) if !(training && bn.training.is_enabled()) => {
                    let (w2, b2) = fold_batch_norm(w, bias, bn);
                    (w, bias) = (w2, Some(b2));
                    None
                }
                other => other.as_ref(),
            };
            let y = conv_channels_last(x, w, bias, b.conv.stride, &b.conv.padding);
            let [_, l, c] = y.dims();
            let mut y = y.reshape([batch * l, c]);
            let mut block_stats = None;
            if let Some(bn) = bn {
                (y, block_stats) = batch_norm_rows(y, bn);
            }
            stats.push(block_stats);
            let rate = dropout.is_some().then_some(b.dropout).filter(|&r| r > 0.0);
            let pooled = b.max_pool.is_some() || b.avg_pool.is_some();
            scale = rate.map_or(1.0, |r| 1.0 / (1.0 - r));
            x = match (rate, dropout.as_deref_mut()) {
                // ReLU then dropout, with nothing between them: one multiplication by the
                // mask (x > 0) ∧ keep, whose gradient is the product of theirs.
                (Some(rate), Some(rng)) if !pooled => {
                    let keep = keep_mask_tensor(y.dims(), rate, rng, &y.device());
                    let mask = y.clone().greater_elem(0.0).bool_and(keep).float();
                    (y * mask).reshape([batch, l, c])
                }
                (rate, rng) => {
                    let y = burn::tensor::activation::relu(y);
                    let mut y = y.reshape([batch, l, c]);
                    if let Some(p) = &b.max_pool {
                        y = pool_channels_last(y, p.kernel_size, true);
                    }
                    if let Some(p) = &b.avg_pool {
                        y = pool_channels_last(y, p.kernel_size, false);
                    }
                    match (rate, rng) {
                        (Some(rate), Some(rng)) => {
                            let keep = keep_mask_tensor(y.dims(), rate, rng, &y.device());
                            y * keep.float()
                        }
                        _ => y,
                    }
                }
            };
        }
        let [_, _, ch] = x.dims();
        let mut pooled = x.mean_dim(1).reshape([batch, ch]);
        if scale != 1.0 {
            pooled = pooled.mul_scalar(scale);
        }
        (self.dense.forward(pooled), stats)
    }

    /// Move each BatchNorm's running statistics by `momentum` towards the statistics of one
    /// batch, given as the [`Net::forward_collect`] results of its shards (in any order): their
    /// rows pooled, so the mean and biased variance are exactly those of the whole batch
    /// (`var = Σ nᵢ (varᵢ + (meanᵢ − mean)²) / Σ nᵢ`).
    pub fn update_running_stats(&self, shards: &[Vec<Option<BatchStats>>]) {
        for (i, b) in self.blocks.iter().enumerate() {
            let Some(bn) = &b.bn else { continue };
            let parts: Vec<&BatchStats> = shards
                .iter()
                .filter_map(|s| s.get(i).and_then(Option::as_ref))
                .collect();
            let Some((mean, var)) = BatchStats::pooled(&parts) else {
                continue;
            };
            let m = bn.momentum;
            let device = mean.device();
            let running_mean = bn.running_mean.value_sync().to_device(&device);
            let running_var = bn.running_var.value_sync().to_device(&device);
            bn.running_mean.update(
                running_mean
                    .mul_scalar(1.0 - m)
                    .add(mean.mul_scalar(m))
                    .detach(),
            );
            bn.running_var.update(
                running_var
                    .mul_scalar(1.0 - m)
                    .add(var.mul_scalar(m))
                    .detach(),
            );
        }
    }

    /// The first block's input, channels-last `[batch, length, channels]`, from the model's
    /// input `[batch, channels, length]` of bytes scaled to [0, 1]: a free reshape for one
    /// input channel, or, with an input embedding, each byte's row of `table` (`[256, dim]`;
    /// the bytes are recovered exactly, `round(x · 255)`).
    pub(super) fn input_channels_last(&self, x: Tensor<3>, table: Option<Tensor<2>>) -> Tensor<3> {
        let [batch, ch, len] = x.dims();
        match table {
            Some(table) => {
                let bytes = x.reshape([batch, len]).mul_scalar(255.0).round().int();
                burn::tensor::module::embedding(table, bytes)
            }
            None if ch == 1 => x.reshape([batch, len, 1]),
            None => x.swap_dims(1, 2),
        }
    }

    /// The same function as [`Net::forward`] without dropout, computed with burn's own layers
    /// in `[batch, channels, length]` layout (the reference the fast path is tested against).
    pub fn forward_reference(&self, mut x: Tensor<3>) -> Tensor<2> {
        if let Some(e) = &self.embedding {
            let [batch, _, len] = x.dims();
            let bytes = x.reshape([batch, len]).mul_scalar(255.0).round().int();
            x = e.forward(bytes).swap_dims(1, 2);
        }
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
        }
        let [batch, ch, _] = x.dims();
        let pooled = x.mean_dim(2).reshape([batch, ch]);
        self.dense.forward(pooled)
    }
}

/// Conv weights and bias with an inference-mode BatchNorm folded in:
/// `W'[o] = W[o] · a[o]`, `b'[o] = (b[o] − mean[o]) · a[o] + β[o]`, `a = γ / √(var + ε)`.
pub(super) fn fold_batch_norm(
    w: Tensor<3>,
    bias: Option<Tensor<1>>,
    bn: &BatchNorm,
) -> (Tensor<3>, Tensor<1>) {
    let [c_out, _, _] = w.dims();
    let a = bn.gamma.val()
        * bn.running_var
            .value_sync()
            .add_scalar(bn.epsilon)
            .sqrt()
            .recip();
    let mean = bn.running_mean.value_sync();
    let centred = match bias {
        Some(b) => b - mean,
        None => mean.neg(),
    };
    let bias = centred * a.clone() + bn.beta.val();
    (w * a.reshape([c_out, 1, 1]), bias)
}

/// A 1D convolution on channels-last input `[B, L, C]` giving `[B, L_out, C_out]`, with
/// weights `[C_out, C, k]`, an optional bias, the stride and the padding (Keras `same` or
/// `valid`), as one matrix product: `cols [B·L_out, k·C] × W [k·C, C_out]`.
///
/// The columns are built without gathering: the padded input `[B, L_p, C]` is viewed as
/// `[B, L_p / s, s·C]` (stride s), where kernel offsets `q·s .. q·s + s` of output `o` are the
/// contiguous row `o + q`. So `ceil(k / s)` row-shifted slices, concatenated on the last axis,
/// are the im2col matrix with columns ordered (offset, channel). When k = s and nothing is
/// padded the input itself is the matrix (no copy). When the columns are copied anyway, a
/// column of ones joins them and the bias becomes a row of `W`, which spares a pass over the
/// output (and the bias gradient falls out of the product's).
pub(super) fn conv_channels_last(
    x: Tensor<3>,
    weight: Tensor<3>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: &PaddingConfig1d,
) -> Tensor<3> {
    let [b, l, c] = x.dims();
    let [c_out, c_in, k] = weight.dims();
    debug_assert_eq!(c, c_in, "channel mismatch");
    let s = stride;
    let padding = match padding {
        PaddingConfig1d::Same => Padding::Same,
        _ => Padding::Valid,
    };
    let l_out = conv_out_len(l, k, s, padding).expect("a valid spec");
    let (pad_left, _) = conv_padding(l, k, s, padding);
    let q = k.div_ceil(s);
    let rows = l_out + q - 1;
    let need = rows * s;
    // Pad (or crop) the length to exactly `need` = pad_left + L + right.
    let right = need as isize - (pad_left + l) as isize;
    let x = if right < 0 {
        x.slice([0..b, 0..(l as isize + right) as usize, 0..c])
    } else {
        x
    };
    let right = right.max(0) as usize;
    let x = if pad_left > 0 || right > 0 {
        x.pad([(0, 0), (pad_left, right), (0, 0)], PadMode::Constant(0.0))
    } else {
        x
    };
    let x = x.reshape([b, rows, s * c]);
    // [C_out, C_in, k] → [k, C_in, C_out] → [k·C_in, C_out]: rows ordered (offset, channel).
    let w = weight.permute([2, 1, 0]).reshape([k * c, c_out]);
    let direct = q == 1 && k == s && rows == l_out;
    let fold_bias = bias.is_some() && !direct;
    let cols = if direct {
        x
    } else {
        let mut parts: Vec<Tensor<3>> = (0..q)
            .map(|i| {
                let width = (k - i * s).min(s) * c;
                x.clone().slice([0..b, i..i + l_out, 0..width])
            })
            .collect();
        if fold_bias {
            parts.push(Tensor::ones([b, l_out, 1], &x.device()));
        }
        Tensor::cat(parts, 2)
    };
    let width = k * c + usize::from(fold_bias);
    let cols = cols.reshape([b * l_out, width]);
    let y = match bias {
        Some(bias) if fold_bias => {
            let w = Tensor::cat(vec![w, bias.reshape([1, c_out])], 0);
            cols.matmul(w)
        }
        Some(bias) => cols.matmul(w).add(bias.reshape([1, c_out])),
        None => cols.matmul(w),
    };
    y.reshape([b, l_out, c_out])
}

/// One training-mode BatchNorm's statistics over the rows (samples × positions) of a batch or
/// of one shard of it: the per-channel mean and biased variance, detached from the graph.
#[derive(Debug, Clone)]
pub struct BatchStats {
    pub rows: usize,
    pub mean: Tensor<1>,
    pub var: Tensor<1>,
}

impl BatchStats {
    /// The mean and biased variance of the union of the parts' rows; `None` for no parts.
    fn pooled(parts: &[&BatchStats]) -> Option<(Tensor<1>, Tensor<1>)> {
        match parts {
            [] => None,
            [one] => Some((one.mean.clone(), one.var.clone())),
            _ => {
                let total = parts.iter().map(|p| p.rows).sum::<usize>() as f64;
                let share = |p: &BatchStats| (p.rows as f64 / total) as f32;
                let mean = parts
                    .iter()
                    .map(|p| p.mean.clone().mul_scalar(share(p)))
                    .reduce(|a, b| a + b)?;
                let var = parts
                    .iter()
                    .map(|p| {
                        let d = p.mean.clone() - mean.clone();
                        (p.var.clone() + d.clone() * d).mul_scalar(share(p))
                    })
                    .reduce(|a, b| a + b)?;
                Some((mean, var))
            }
        }
    }
}

/// BatchNorm of `[rows, channels]` (rows = samples × positions), the same function as
/// burn's `BatchNorm::forward` on `[B, C, L]`: in training (autodiff device, layer not
/// frozen) it normalises with the batch's mean and biased variance and returns them, for the
/// running statistics ([`Net::update_running_stats`]); otherwise it uses the running
/// statistics.
///
/// The training path is written with tensor operations on the rows, whose reductions run
/// along the contiguous axis: burn's fused `batch_norm_train` transposes its input to
/// `[C, rows]` twice in the forward pass and twice more in the backward pass, and measured
/// 1.4× slower here (forward and backward of a [12544, 140] batch: 17.5-19.3 ms vs
/// 12.5-13.4 ms).
fn batch_norm_rows(x: Tensor<2>, bn: &BatchNorm) -> (Tensor<2>, Option<BatchStats>) {
    let device = x.device();
    if !(device.is_autodiff() && bn.training.is_enabled()) {
        return (bn.forward(x), None);
    }
    let [rows, c] = x.dims();
    let mean = x.clone().mean_dim(0);
    let centred = x - mean.clone();
    let var = (centred.clone() * centred.clone()).mean_dim(0);
    let inv_std = var.clone().add_scalar(bn.epsilon).sqrt().recip();
    let y = centred * (inv_std * bn.gamma.val().reshape([1, c])) + bn.beta.val().reshape([1, c]);
    let stats = BatchStats {
        rows,
        mean: mean.detach().reshape([c]),
        var: var.detach().reshape([c]),
    };
    (y, Some(stats))
}

/// Max or average pooling over the length of `[B, L, C]`, window = stride = `size`, 'valid'.
pub(super) fn pool_channels_last(x: Tensor<3>, size: usize, max: bool) -> Tensor<3> {
    let [b, l, c] = x.dims();
    let l_out = l / size;
    let x = if l_out * size != l {
        x.slice([0..b, 0..l_out * size, 0..c])
    } else {
        x
    };
    let x = x
        .reshape([b, l_out, size * c])
        .reshape([b * l_out, size, c]);
    let y = if max { x.max_dim(1) } else { x.mean_dim(1) };
    y.reshape([b, l_out, c])
}

/// A dropout keep-mask of shape `dims` (true = keep) at `rate`, drawn on the host. burn's
/// `Dropout` draws its mask element by element from one locked generator, which dominated the
/// step time on the CPU backend; this mask is one byte per element, filled by all cores, and
/// applied by [`Net::forward`] as a multiplication by its 0/1 float copy, whose gradient is
/// the same vectorised multiplication (`mask_fill` was slower: flex's in-place `mask_fill`
/// branches per element, which mispredicts at the dropout rate).
///
/// One draw from `rng` seeds a SplitMix64 sequence, whose `i`-th word is a pure function of
/// the seed and `i`; word `i` gives the 16-bit draws of elements `4i .. 4i + 4`, and an element
/// is dropped when its draw falls under `rate · 2¹⁶` (the rate is quantised to 1 / 65536). So
/// the mask is the same for the same `rng` state, whatever the number of threads.
fn keep_mask_tensor<const D: usize>(
    dims: [usize; D],
    rate: f32,
    rng: &mut dyn rand::RngCore,
    device: &Device,
) -> Tensor<D, Bool> {
    let n = dims.iter().product::<usize>();
    let keep = keep_mask(n, rate, rng.next_u64());
    Tensor::from_data(TensorData::new(keep, dims.to_vec()), device)
}

/// `n` keep decisions (false = drop) at `rate`, from `seed`; see [`keep_mask_tensor`].
fn keep_mask(n: usize, rate: f32, seed: u64) -> Vec<bool> {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    fn word(seed: u64, i: usize) -> u64 {
        // SplitMix64 (Steele, Lea & Flood 2014): output i of the stream started at `seed`.
        let mut z = seed.wrapping_add((i as u64).wrapping_add(1).wrapping_mul(GAMMA));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let threshold = (rate as f64 * 65536.0).round() as u64;
    // Fill `out`, whose first element is element `4 · first_word` of the mask.
    let fill = |out: &mut [bool], first_word: usize| {
        let keep = |r: u64, k: usize| (r >> (16 * k)) & 0xffff >= threshold;
        let mut chunks = out.chunks_exact_mut(4);
        let mut j = first_word;
        for c in &mut chunks {
            let r = word(seed, j);
            c.copy_from_slice(&[keep(r, 0), keep(r, 1), keep(r, 2), keep(r, 3)]);
            j += 1;
        }
        let r = word(seed, j);
        for (k, m) in chunks.into_remainder().iter_mut().enumerate() {
            *m = keep(r, k);
        }
    };
    let mut mask = vec![false; n];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    // Below this many elements a thread costs more than it saves.
    const MIN_PER_THREAD: usize = 1 << 18;
    if threads <= 1 || n < 2 * MIN_PER_THREAD {
        fill(&mut mask, 0);
    } else {
        let per = n.div_ceil(threads).div_ceil(4) * 4;
        std::thread::scope(|sc| {
            for (t, part) in mask.chunks_mut(per).enumerate() {
                let fill = &fill;
                sc.spawn(move || fill(part, t * per / 4));
            }
        });
    }
    mask
}

/// Turn `n` raw byte samples of length `len` into a `[n, 1, len]` tensor scaled by 1/255.
pub fn input_tensor(samples: &[u8], n: usize, len: usize, dev: &Device) -> Tensor<3> {
    let data: Vec<f32> = samples[..n * len]
        .iter()
        .map(|&b| crate::data::input_value(b))
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

/// Batched inference with an already built model (not in training mode). The batches run on
/// the cores at once (each batch's logits depend on its samples only, so the result is the
/// same on any number of cores): flex runs most of a small batch's operations on one core.
pub fn predict_logits(net: &Net, samples: &[u8], n: usize, len: usize, dev: &Device) -> Vec<f32> {
    // Measured on reference networks A and B (2 cores): 128-256 samples per batch stay in
    // cache and run 15-40 % faster than 1024-2048.
    const BATCH: usize = 128;
    assert!(
        samples.len() >= n * len,
        "{} samples of length {len} need {} bytes",
        n,
        n * len
    );
    let parts: Vec<Vec<f32>> = samples[..n * len]
        .par_chunks(BATCH * len)
        .map(|chunk| {
            let x = input_tensor(chunk, chunk.len() / len, len, dev);
            net.forward(x, None)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default()
        })
        .collect();
    parts.concat()
}

/// Draw a keep/drop decision source from a seed (used by tests).
pub fn rng_from_seed(seed: u64) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Block, Head};

    /// One 'same' conv with an even kernel (asymmetric padding), checked against values
    /// computed by hand.
    #[test]
    fn same_padding_conv_by_hand() {
        // L = 5, k = 4, s = 1, same: out 5, total pad 3 → left 1, right 2 (TensorFlow's split).
        let spec = NetSpec {
            input_len: 5,
            input_channels: 1,
            input: Default::default(),
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

    fn spec(blocks: Vec<Block>, len: usize) -> NetSpec {
        NetSpec {
            input_len: len,
            input_channels: 1,
            input: Default::default(),
            classes: 5,
            blocks,
            head: Head::GapDense,
        }
    }

    fn block(filters: usize, kernel: usize, stride: usize, padding: Padding) -> Block {
        Block {
            dropout: 0.3,
            ..Block::new(filters, kernel, stride, padding)
        }
    }

    /// Specs exercising the channels-last path: kernel shorter than, equal to and longer than
    /// the stride, 'same' with odd and even padding, 'valid' with a cropped tail, max and avg
    /// pooling with a dropped tail.
    fn varied_specs() -> Vec<NetSpec> {
        use crate::net::Pool;
        let mut first = block(6, 7, 4, Padding::Same);
        first.batch_norm = false;
        let mut pooled = block(5, 4, 1, Padding::Valid);
        pooled.pool = Some(Pool {
            kind: PoolKind::Max,
            size: 2,
        });
        let mut avg = block(7, 2, 3, Padding::Same);
        avg.pool = Some(Pool {
            kind: PoolKind::Avg,
            size: 3,
        });
        vec![
            spec(
                vec![
                    first.clone(),
                    block(8, 4, 4, Padding::Same),
                    block(4, 3, 2, Padding::Same),
                ],
                61,
            ),
            spec(vec![first, pooled, avg, block(3, 5, 1, Padding::Same)], 97),
            spec(
                vec![
                    block(4, 3, 4, Padding::Valid),
                    block(6, 5, 2, Padding::Valid),
                ],
                50,
            ),
            NetSpec::smart_start(784, 12),
        ]
    }

    fn random_input(n: usize, len: usize, seed: u64, dev: &Device) -> Tensor<3> {
        use rand::Rng;
        let mut rng = rng_from_seed(seed);
        let bytes: Vec<u8> = (0..n * len).map(|_| rng.random()).collect();
        input_tensor(&bytes, n, len, dev)
    }

    fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        let a = a.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let b = b.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// The channels-last forward is burn's layers' function, in inference mode (running
    /// statistics) and in training mode (batch statistics), with the same gradients.
    #[test]
    fn channels_last_forward_matches_burn_layers() {
        for (i, spec) in varied_specs().into_iter().enumerate() {
            spec.validate().unwrap();
            let w = Weights::random(&spec, 10 + i as u64);
            let dev = default_device();
            let net = Net::from_weights(&spec, &w, &dev).unwrap();
            let x = random_input(3, spec.input_len, i as u64, &dev);
            let d = max_abs_diff(
                net.forward(x.clone(), None),
                net.forward_reference(x.clone()),
            );
            assert!(d < 1e-4, "spec {i}: inference differs by {d}");
            // With dropout: the same masks, applied with their 1 / (1 − rate) on the
            // activations, in burn's layout.
            let mut rng = rng_from_seed(3);
            let fast = net.forward(x.clone(), Some(&mut rng));
            let mut rng = rng_from_seed(3);
            let mut y = x;
            for (blk, sb) in net.blocks.iter().zip(&spec.blocks) {
                y = blk.conv.forward(y);
                if let Some(bn) = &blk.bn {
                    y = bn.forward(y);
                }
                y = burn::tensor::activation::relu(y);
                if let Some(p) = &blk.max_pool {
                    y = p.forward(y);
                }
                if let Some(p) = &blk.avg_pool {
                    y = p.forward(y);
                }
                let [bs, c, l] = y.dims();
                let keep: Vec<f32> =
                    keep_mask(bs * l * c, sb.dropout, rand::RngCore::next_u64(&mut rng))
                        .into_iter()
                        .map(|k| if k { 1.0 / (1.0 - sb.dropout) } else { 0.0 })
                        .collect();
                let keep = Tensor::<3>::from_data(TensorData::new(keep, vec![bs, l, c]), &dev);
                y = y * keep.swap_dims(1, 2);
            }
            let [bs, c, _] = y.dims();
            let slow = net.dense.forward(y.mean_dim(2).reshape([bs, c]));
            let d = max_abs_diff(fast, slow);
            assert!(d < 1e-4, "spec {i}: forward with dropout differs by {d}");

            let ad = dev.clone().autodiff();
            let net = Net::from_weights(&spec, &w, &ad).unwrap();
            let twin = Net::from_weights(&spec, &w, &ad).unwrap();
            let x = random_input(4, spec.input_len, 7 + i as u64, &ad);
            let fast = net.forward(x.clone(), None);
            let slow = twin.forward_reference(x);
            // The running statistics moved the same way.
            let (a, b) = (net.to_weights(), twin.to_weights());
            for (name, t) in &a.tensors {
                let u = &b.tensors[name];
                let d = t
                    .data
                    .iter()
                    .zip(&u.data)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f32::max);
                assert!(d < 1e-6, "spec {i}: {name} differs by {d}");
            }
            let probe = random_input(4, spec.classes, 99, &ad).reshape([4, spec.classes]);
            let gf = (fast.clone() * probe.clone()).sum().backward();
            let gs = (slow.clone() * probe).sum().backward();
            let gradients = |n: &Net, g: &burn::tensor::Gradients| {
                n.blocks
                    .iter()
                    .map(|b| b.conv.weight.grad(g).unwrap())
                    .collect::<Vec<_>>()
            };
            let d = max_abs_diff(fast, slow);
            assert!(d < 1e-4, "spec {i}: training forward differs by {d}");
            for (a, c) in gradients(&net, &gf).into_iter().zip(gradients(&twin, &gs)) {
                let [o, ci, k] = a.dims();
                let d = max_abs_diff(a.reshape([o, ci * k]), c.reshape([o, ci * k]));
                assert!(d < 1e-3, "spec {i}: conv weight gradients differ by {d}");
            }
        }
    }

    /// Statistics collected shard by shard move the running statistics exactly as the whole
    /// batch's do (unequal shards, every spec), and a collecting forward pass leaves them
    /// alone. Compared at the first BatchNorm: the later ones see activations normalised by
    /// each shard's own statistics, which differ from the whole batch's by design.
    #[test]
    fn shard_statistics_pool_to_the_batch_statistics() {
        let ad = default_device().autodiff();
        for (i, spec) in varied_specs().into_iter().enumerate() {
            let w = Weights::random(&spec, 20 + i as u64);
            let x = random_input(7, spec.input_len, 30 + i as u64, &ad);
            let whole = Net::from_weights(&spec, &w, &ad).unwrap();
            drop(whole.forward(x.clone(), None));
            let sharded = Net::from_weights(&spec, &w, &ad).unwrap();
            let stats: Vec<_> = [0..2, 2..7]
                .into_iter()
                .map(|rows| sharded.forward_collect(x.clone().slice([rows]), None).1)
                .collect();
            assert_eq!(
                sharded.to_weights(),
                w,
                "spec {i}: collecting moved the statistics"
            );
            assert!(
                stats[0].iter().any(Option::is_some),
                "spec {i}: no statistics"
            );
            sharded.update_running_stats(&stats);
            let (a, b) = (whole.to_weights(), sharded.to_weights());
            assert_ne!(a, w, "spec {i}: the statistics did not move");
            let first = spec.blocks.iter().position(|b| b.batch_norm).unwrap();
            for name in [format!("bn{first}.mean"), format!("bn{first}.var")] {
                let t = &a.tensors[&name];
                let d = t
                    .data
                    .iter()
                    .zip(&b.tensors[&name].data)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f32::max);
                assert!(d < 1e-6, "spec {i}: {name} differs by {d}");
            }
        }
    }

    #[test]
    fn dropout_drops_the_expected_share_whatever_the_threads() {
        let dev = default_device();
        let x = Tensor::<3>::ones([4, 100, 500], &dev);
        let mut rng = rng_from_seed(5);
        let y = x.clone() * keep_mask_tensor(x.dims(), 0.3, &mut rng, &dev).float();
        let v = y.into_data().try_to_vec::<f32>().unwrap();
        let kept = v.iter().filter(|&&e| e != 0.0).count() as f64 / v.len() as f64;
        assert!((kept - 0.7).abs() < 0.01, "kept {kept}");
        assert!(v.iter().all(|&e| e == 0.0 || e == 1.0));
        // The threaded fill is the sequential one.
        let n = 1_000_003;
        let whole = keep_mask(n, 0.25, 9);
        let mut seq = Vec::new();
        for i in 0..n {
            let w = {
                let mut z =
                    9u64.wrapping_add((i as u64 / 4 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            };
            seq.push((w >> (16 * (i % 4))) & 0xffff >= 16384);
        }
        assert_eq!(whole, seq);
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
