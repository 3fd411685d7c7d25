//! The int8 network's function in float, for quantization-aware training: the forward pass
//! [`Net::forward`] takes when `Net::fake_quant` is set. Fake quantization rounds with a
//! straight-through estimator, `x + (fq(x) − x).detach()`; see `train::qat` for what is
//! quantized and why.

use super::{conv_channels_last, fold_batch_norm, pool_channels_last, Net};
use crate::net::plan::Op;
use crate::quant::{QuantLowered, QuantParams};
use anyhow::{bail, Result};
use burn::tensor::Tensor;

/// The int8 parameters of every activation the kernels quantize, in network order.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeQuant {
    /// The input embedding's table, where the network has one.
    pub embed: Option<QuantParams>,
    /// Each conv block's output (after ReLU, before and after pooling).
    pub convs: Vec<QuantParams>,
    /// The global average.
    pub gap: QuantParams,
    /// The logits.
    pub dense: QuantParams,
}

impl FakeQuant {
    /// The activation parameters of a quantized network.
    pub fn of(q: &QuantLowered) -> Result<FakeQuant> {
        let (mut embed, mut convs, mut gap, mut dense) = (None, Vec::new(), None, None);
        for (layer, ql) in q.plan.layers.iter().zip(&q.layers) {
            match layer.op {
                Op::Embed { .. } => embed = Some(ql.output),
                Op::Conv(_) => convs.push(ql.output),
                // Folded, the table is quantized with the conv's input parameters.
                Op::LutConv(_) => {
                    embed = Some(ql.input);
                    convs.push(ql.output);
                }
                Op::GlobalAvgPool { .. } => gap = Some(ql.output),
                Op::Dense { .. } => dense = Some(ql.output),
            }
        }
        match (gap, dense) {
            (Some(gap), Some(dense)) => Ok(FakeQuant {
                embed,
                convs,
                gap,
                dense,
            }),
            _ => bail!("the quantized network has no global pooling or dense layer"),
        }
    }
}

/// `x` rounded to the int8 grid of `p` (clamped to −128..=127), with a straight-through
/// gradient.
fn fake_quant<const D: usize>(x: Tensor<D>, p: QuantParams) -> Tensor<D> {
    let zp = p.zero_point as f32;
    let q = x
        .clone()
        .div_scalar(p.scale)
        .round()
        .add_scalar(zp)
        .clamp(-128.0, 127.0)
        .sub_scalar(zp)
        .mul_scalar(p.scale);
    x.clone() + (q - x).detach()
}

/// Weights rounded symmetrically to int8 per slice along `axis` (the output channel: axis 0
/// of conv weights `[out, in, k]`, axis 1 of burn's dense weights `[in, out]`), with a
/// straight-through gradient.
fn fake_quant_weights<const D: usize>(w: Tensor<D>, axis: usize) -> Tensor<D> {
    let mut amax = w.clone().abs();
    for d in (0..D).filter(|&d| d != axis) {
        amax = amax.max_dim(d);
    }
    let step = amax.clamp_min(1e-30).div_scalar(127.0).detach();
    let q = (w.clone() / step.clone()).round().clamp(-127.0, 127.0) * step;
    w.clone() + (q - w).detach()
}

/// The int8 network's function in float: [`Net::forward`] when `net.fake_quant` is set.
pub(super) fn forward(net: &Net, x: Tensor<3>, fq: &FakeQuant) -> Tensor<2> {
    let [batch, _, _] = x.dims();
    // The table as the kernels hold it: int8 with its own scale and zero point.
    let table = match (&net.embedding, fq.embed) {
        (Some(e), Some(p)) => Some(fake_quant(e.weight.val(), p)),
        (Some(_), None) => panic!("an embedding network's FakeQuant has the table's parameters"),
        (None, _) => None,
    };
    let mut x = net.input_channels_last(x, table);
    for (b, &p) in net.blocks.iter().zip(&fq.convs) {
        let (mut w, mut bias) = (b.conv.weight.val(), b.conv.bias.as_ref().map(|p| p.val()));
        if let Some(bn) = &b.bn {
            let (w2, b2) = fold_batch_norm(w, bias, bn);
            (w, bias) = (w2, Some(b2));
        }
        let y = conv_channels_last(
            x,
            fake_quant_weights(w, 0),
            bias,
            b.conv.stride,
            &b.conv.padding,
        );
        let y = fake_quant(burn::tensor::activation::relu(y), p);
        x = match (&b.max_pool, &b.avg_pool) {
            (Some(m), _) => pool_channels_last(y, m.kernel_size, true),
            (_, Some(a)) => fake_quant(pool_channels_last(y, a.kernel_size, false), p),
            _ => y,
        };
    }
    let [_, _, ch] = x.dims();
    let pooled = fake_quant(x.mean_dim(1).reshape([batch, ch]), fq.gap);
    let w = fake_quant_weights(net.dense.weight.val(), 1);
    let mut logits = pooled.matmul(w);
    if let Some(b) = &net.dense.bias {
        let [out] = b.dims();
        logits = logits + b.val().reshape([1, out]);
    }
    fake_quant(logits, fq.dense)
}
