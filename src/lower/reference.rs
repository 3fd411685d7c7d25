//! The host reference: the generated kernels' arithmetic, run on the host, which the C and
//! Rust kernels must equal bit for bit.

use super::{LayerConsts, Lowered};
use crate::net::plan::{embed_rows, Buffer, ConvOp, Op, ELEM_BYTES};
use crate::net::PoolKind;

/// Logits of one raw-byte sample computed on the host with exactly the generated kernels'
/// arithmetic (same operations in the same order, in the same arena at the same offsets), so the
/// C and Rust kernels must match it bit for bit.
///
/// # Panics
/// If `input` does not hold `input_len × input_channels` bytes.
pub fn reference_logits(lowered: &Lowered, input: &[u8]) -> Vec<f32> {
    reference_run(lowered, Input::Bytes(input))
}

/// As [`reference_logits`] for an input already scaled to [0, 1] (the `infer_f32` entry point,
/// which networks with an input embedding do not have: they read bytes as symbols).
///
/// # Panics
/// If `input` does not hold `input_len × input_channels` values, or the network embeds its
/// input.
pub fn reference_logits_f32(lowered: &Lowered, input: &[f32]) -> Vec<f32> {
    reference_run(lowered, Input::Scaled(input))
}

/// What a reference run reads: raw bytes, or values already scaled to [0, 1].
#[derive(Clone, Copy)]
enum Input<'a> {
    Bytes(&'a [u8]),
    Scaled(&'a [f32]),
}

fn reference_run(lowered: &Lowered, input: Input) -> Vec<f32> {
    let plan = &lowered.plan;
    let (n, scale) = match input {
        Input::Bytes(b) => (b.len(), crate::data::INPUT_SCALE),
        Input::Scaled(x) => (x.len(), 1.0),
    };
    assert_eq!(
        n,
        plan.input_len * plan.input_channels,
        "input length does not match the network"
    );
    let x = |i: usize| match input {
        Input::Bytes(b) => b[i] as f32,
        Input::Scaled(x) => x[i],
    };
    let mut arena = vec![0.0f32; plan.arena_bytes / ELEM_BYTES];
    let mut logits = vec![0.0f32; plan.classes];
    for (layer, consts) in plan.layers.iter().zip(&lowered.layers) {
        let src: Vec<f32> = match layer.input {
            Buffer::Input { elements } => (0..elements).map(&x).collect(),
            Buffer::Arena { offset, elements } => {
                arena[offset / ELEM_BYTES..offset / ELEM_BYTES + elements].to_vec()
            }
            Buffer::Logits { .. } => unreachable!("no layer reads the logits"),
        };
        let layer_scale = if matches!(layer.input, Buffer::Input { .. }) {
            scale
        } else {
            1.0
        };
        let mut dst = vec![0.0f32; layer.output.elements()];
        match &layer.op {
            Op::Embed {
                dim,
                pad_left,
                pad_right,
                ..
            } => {
                let Input::Bytes(bytes) = input else {
                    panic!("a network with an input embedding reads bytes, not scaled values")
                };
                let pads = (*pad_left, *pad_right);
                dst = embed_rows(bytes, &consts.weights, *dim, pads, 0.0);
            }
            Op::Conv(c) => ref_conv(c, &src, &mut dst, consts, layer_scale),
            Op::LutConv(c) => {
                let Input::Bytes(bytes) = input else {
                    panic!("a network with an input embedding reads bytes, not scaled values")
                };
                ref_lut_conv(c, bytes, &mut dst, consts);
            }
            Op::GlobalAvgPool { len, channels } => {
                let inv = 1.0f32 / *len as f32;
                for c in 0..*channels {
                    let mut s = 0.0f32;
                    for t in 0..*len {
                        s += src[t * channels + c];
                    }
                    dst[c] = s * inv;
                }
            }
            Op::Dense { inputs, outputs } => {
                for (k, d) in dst.iter_mut().enumerate().take(*outputs) {
                    *d = ref_dot(&src, &consts.weights[k * inputs..(k + 1) * inputs])
                        + consts.bias[k];
                }
            }
        }
        match layer.output {
            Buffer::Arena { offset, elements } => {
                arena[offset / ELEM_BYTES..offset / ELEM_BYTES + elements].copy_from_slice(&dst)
            }
            Buffer::Logits { .. } => logits.copy_from_slice(&dst),
            Buffer::Input { .. } => unreachable!("no layer writes the input"),
        }
    }
    logits
}

pub(crate) fn ref_dot(x: &[f32], w: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (a, b) in x.iter().zip(w) {
        acc += a * b;
    }
    acc
}

pub(crate) fn relu(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

pub(crate) fn ref_conv(c: &ConvOp, src: &[f32], dst: &mut [f32], k: &LayerConsts, scale: f32) {
    let (pool, pool_max, pool_scale) = pool_params(c);
    let row = c.kernel * c.in_channels;
    let end = c.in_len + c.pad_left;
    for p in 0..c.out_len {
        for f in 0..c.out_channels {
            let wf = &k.weights[f * row..(f + 1) * row];
            let (mut best, mut sum) = (0.0f32, 0.0f32);
            for i in 0..pool {
                let start = (p * pool + i) * c.stride;
                let j0 = c.pad_left.saturating_sub(start);
                let j1 = end.saturating_sub(start).min(c.kernel);
                let mut acc = 0.0f32;
                if j1 > j0 {
                    let x0 = (start + j0 - c.pad_left) * c.in_channels;
                    let n = (j1 - j0) * c.in_channels;
                    acc = ref_dot(
                        &src[x0..x0 + n],
                        &wf[j0 * c.in_channels..j1 * c.in_channels],
                    );
                }
                let v = acc * scale + k.bias[f];
                if pool_max {
                    if i == 0 || v > best {
                        best = v;
                    }
                } else {
                    sum += relu(v);
                }
            }
            dst[p * c.out_channels + f] = if pool_max {
                relu(best)
            } else {
                sum * pool_scale
            };
        }
    }
}

/// The lookup-table conv: per output, `Σ_j lut[f][j][byte]` over the window's taps inside the
/// input, in tap order from 0, plus the bias; ReLU and pooling as [`ref_conv`].
pub(crate) fn ref_lut_conv(c: &ConvOp, bytes: &[u8], dst: &mut [f32], k: &LayerConsts) {
    let (pool, pool_max, pool_scale) = pool_params(c);
    for p in 0..c.out_len {
        for f in 0..c.out_channels {
            let (mut best, mut sum) = (0.0f32, 0.0f32);
            for i in 0..pool {
                let v = lut_sum(c, bytes, k, f, (p * pool + i) * c.stride) + k.bias[f];
                if pool_max {
                    if i == 0 || v > best {
                        best = v;
                    }
                } else {
                    sum += relu(v);
                }
            }
            dst[p * c.out_channels + f] = if pool_max {
                relu(best)
            } else {
                sum * pool_scale
            };
        }
    }
}

/// Filter `f`'s lookups for the window starting at `start` (padded coordinates).
pub(crate) fn lut_sum(c: &ConvOp, bytes: &[u8], k: &LayerConsts, f: usize, start: usize) -> f32 {
    let rows = crate::net::EMBEDDING_ROWS;
    let j0 = c.pad_left.saturating_sub(start);
    let j1 = (c.in_len + c.pad_left).saturating_sub(start).min(c.kernel);
    let mut acc = 0.0f32;
    for j in j0..j1 {
        let b = bytes[start + j - c.pad_left] as usize;
        acc += k.weights[(f * c.kernel + j) * rows + b];
    }
    acc
}

/// `(window, is_max, 1/window)`; no pooling is a max pool of window 1.
pub(crate) fn pool_params(c: &ConvOp) -> (usize, bool, f32) {
    match c.pool {
        None => (1, true, 1.0),
        Some((PoolKind::Max, size)) => (size, true, 1.0),
        Some((PoolKind::Avg, size)) => (size, false, 1.0f32 / size as f32),
    }
}
