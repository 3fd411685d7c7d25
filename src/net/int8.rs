//! What the int8 kernels' layout makes a plan cost, for the cost model: words of packed weight
//! rows, the per-channel constants' bytes, which windows take the whole-word path, which convs
//! run filter-outer, and the counts the profiles' `[code_size_int8]` and `[latency_int8]` models
//! are linear in. The kernels themselves are generated from the same facts
//! (`quant::kernel` packs the weights, `codegen::int8` renders them).

use super::plan::{ConvOp, Layer, Op, Plan};
use super::PoolKind;
use serde::Serialize;

/// Bytes of one channel's constants in flash (`NAME_chan_t`: bias, m0, rnd, lsh, rsh, padding).
pub const CHAN_BYTES: usize = 16;

/// A row length rounded up to whole 32-bit words.
pub fn row4(row: usize) -> usize {
    row.div_ceil(4) * 4
}

/// Conv positions `[lo, hi)` whose window starts inside the input (no left padding) and whose
/// `row4` bytes from the first tap on stay inside the input: the kernel reads them as whole
/// words. `lo ≤ hi ≤` the positions the kernel computes.
pub fn full_range(c: &ConvOp) -> (usize, usize) {
    let computed = match c.pool {
        Some((_, size)) => c.out_len * size,
        None => c.conv_len,
    };
    let r4 = row4(c.kernel * c.in_channels);
    let total = c.in_len * c.in_channels;
    let lo = c.pad_left.div_ceil(c.stride).min(computed);
    let hi = if total >= r4 {
        ((total - r4) / c.in_channels + c.pad_left) / c.stride + 1
    } else {
        0
    };
    (lo, hi.min(computed).max(lo))
}

/// Whether the conv runs filter-outer (a 4-byte row and no pooling: the weights and constants
/// of one filter stay in registers across all positions).
pub fn by_filter(c: &ConvOp) -> bool {
    row4(c.kernel * c.in_channels) == 4 && c.pool.is_none()
}

/// What the int8 C kernel's code size depends on, counted over a plan's convs: filter-outer
/// sweeps, generic convs (each a specialised copy of the generic conv), and among the generic
/// ones those with average or max pooling, windows that reach into padding or past the input's
/// end, and a last group of fewer than four filters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CodeFeatures {
    pub by_filter: usize,
    pub generic: usize,
    pub avg_pool: usize,
    pub max_pool: usize,
    pub edges: usize,
    pub partial_group: usize,
    /// Input embeddings (0 or 1).
    #[serde(default)]
    pub embed: usize,
    /// Lookup-table convs (the input embedding folded into the first conv).
    #[serde(default)]
    pub lut: usize,
    /// Global average poolings that requantize (an imported TFLite MEAN), in place of the
    /// plain one: not in the plan, given by whoever holds the int8 network.
    #[serde(default)]
    pub gap_mean: usize,
}

impl CodeFeatures {
    /// Code bytes of a network with these features under the profile's model.
    pub fn code_bytes(&self, m: &crate::target::CodeSizeInt8) -> u64 {
        let v = m.base_bytes
            + m.by_filter_bytes * self.by_filter as i64
            + m.conv_bytes * self.generic as i64
            + m.avg_pool_bytes * self.avg_pool as i64
            + m.max_pool_bytes * self.max_pool as i64
            + m.edge_bytes * self.edges as i64
            + m.partial_group_bytes * self.partial_group as i64
            + m.embed_bytes * self.embed as i64
            + m.lut_bytes * self.lut as i64
            + m.gap_mean_bytes * self.gap_mean as i64;
        v.max(0) as u64
    }
}

/// Count [`CodeFeatures`] over a plan.
pub fn code_features(plan: &Plan) -> CodeFeatures {
    let mut f = CodeFeatures::default();
    for l in &plan.layers {
        match l.op {
            Op::Embed { .. } => f.embed += 1,
            Op::LutConv(_) => f.lut += 1,
            _ => {}
        }
        let Op::Conv(c) = &l.op else {
            continue;
        };
        if by_filter(c) {
            f.by_filter += 1;
            continue;
        }
        f.generic += 1;
        match c.pool {
            Some((PoolKind::Avg, _)) => f.avg_pool += 1,
            Some((PoolKind::Max, _)) => f.max_pool += 1,
            None => {}
        }
        let computed = c.pool.map_or(c.conv_len, |p| c.out_len * p.1);
        if full_range(c) != (0, computed) {
            f.edges += 1;
        }
        if c.out_channels % 4 != 0 {
            f.partial_group += 1;
        }
    }
    f
}

/// What the int8 C kernel's instruction count depends on, counted over a plan (the terms of a
/// profile's `[latency_int8]` model, [`crate::target::LatencyInt8`]). A "word MAC" is four
/// byte products of a weight word (rows are padded to whole words, so padding is counted):
/// - `word_macs_grouped`: words × filters in groups of four, which share each input word;
/// - `word_macs_single`: the same for the filters of a last group of fewer than four, which
///   take the input word once each;
/// - `calls`: windows × filter groups (one accumulation routine call each), convs and dense;
/// - `outputs`: values requantized by the generic conv and the dense layer (pooled windows
///   included);
/// - `filter_outputs`: outputs of filter-outer convs ([`by_filter`]: one word and one
///   requantization each, everything in registers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencyFeaturesInt8 {
    pub word_macs_grouped: u64,
    pub word_macs_single: u64,
    pub calls: u64,
    pub outputs: u64,
    pub filter_outputs: u64,
}

impl LatencyFeaturesInt8 {
    /// The features in the order of [`crate::target::LatencyInt8::coefficients`], the
    /// constant last.
    pub fn row(&self) -> [f64; 6] {
        [
            self.word_macs_grouped as f64,
            self.word_macs_single as f64,
            self.calls as f64,
            self.outputs as f64,
            self.filter_outputs as f64,
            1.0,
        ]
    }
}

/// Count [`LatencyFeaturesInt8`] over a plan.
pub fn latency_features_int8(plan: &Plan) -> LatencyFeaturesInt8 {
    let mut f = LatencyFeaturesInt8::default();
    let mut generic = |windows: u64, row: usize, filters: usize| {
        let (words, full) = ((row4(row) / 4) as u64, (filters / 4 * 4) as u64);
        f.word_macs_grouped += windows * words * full;
        f.word_macs_single += windows * words * (filters as u64 - full);
        f.calls += windows * filters.div_ceil(4) as u64;
        f.outputs += windows * filters as u64;
    };
    for l in &plan.layers {
        match &l.op {
            Op::Conv(c) if by_filter(c) => {}
            Op::Conv(c) => {
                let windows = c.pool.map_or(c.conv_len, |p| c.out_len * p.1) as u64;
                generic(windows, c.kernel * c.in_channels, c.out_channels);
            }
            Op::Dense { inputs, outputs } => generic(1, *inputs, *outputs),
            // Costed apart: `LatencyFeatures::lut_lookups`.
            Op::Embed { .. } | Op::LutConv(_) | Op::GlobalAvgPool { .. } => {}
        }
    }
    for l in &plan.layers {
        if let Op::Conv(c) = &l.op {
            if by_filter(c) {
                f.filter_outputs += (c.conv_len * c.out_channels) as u64;
            }
        }
    }
    f
}

/// Flash bytes of a layer's int8 constants: packed weights plus [`CHAN_BYTES`] per output
/// channel; the embedding's table is one byte per value, a lookup table four (int32).
pub fn layer_constant_bytes(l: &Layer) -> usize {
    let (w, b) = l.deployed_params();
    if let Op::Embed { .. } = l.op {
        w
    } else if let Op::LutConv(_) = l.op {
        4 * w + b * CHAN_BYTES
    } else if b == 0 {
        0
    } else {
        b * row4(w / b) + b * CHAN_BYTES
    }
}

/// Flash bytes of all int8 constants of a plan.
pub fn plan_constant_bytes(plan: &Plan) -> usize {
    plan.layers.iter().map(layer_constant_bytes).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_windows_stay_inside_the_input() {
        use crate::net::PoolKind;
        let conv =
            |in_len, in_ch, kernel, stride, pad_left, conv_len, pool: Option<usize>| ConvOp {
                block: 0,
                in_len,
                in_channels: in_ch,
                out_channels: 4,
                kernel,
                stride,
                pad_left,
                conv_len,
                pool: pool.map(|s| (PoolKind::Max, s)),
                out_len: pool.map_or(conv_len, |s| conv_len / s),
                batch_norm: false,
            };
        // Layer a: 784×1, k3 s4, no padding: row4 = 4, the last window at 780 reads 780..784.
        let a = conv(784, 1, 3, 4, 0, 196, None);
        assert_eq!(full_range(&a), (0, 196));
        assert!(by_filter(&a));
        // k3 s1 same on 10: pad 1; window p starts at p − 1; reads 4 bytes: p − 1 + 4 ≤ 10.
        let c = conv(10, 1, 3, 1, 1, 10, None);
        assert_eq!(full_range(&c), (1, 8));
        // Pooled: only out_len × pool positions are computed.
        let d = conv(20, 2, 2, 1, 0, 19, Some(3));
        let (lo, hi) = full_range(&d);
        assert_eq!((lo, hi), (0, 18));
        assert!(!by_filter(&d));
        // Every full window's reads stay inside the input, for many shapes.
        for in_len in 1..12 {
            for in_ch in 1..4 {
                for kernel in 1..=in_len.min(5) {
                    for stride in 1..4 {
                        let pad = (kernel - 1) / 2;
                        let conv_len = (in_len + 2 * pad - kernel) / stride + 1;
                        let c = conv(in_len, in_ch, kernel, stride, pad, conv_len, None);
                        let (lo, hi) = full_range(&c);
                        for p in lo..hi {
                            assert!(p * stride >= pad);
                            assert!(
                                (p * stride - pad) * in_ch + row4(kernel * in_ch) <= in_len * in_ch
                            );
                        }
                        for p in 0..conv_len {
                            let fits = p * stride >= pad
                                && (p * stride - pad) * in_ch + row4(kernel * in_ch)
                                    <= in_len * in_ch;
                            assert_eq!(
                                fits,
                                (lo..hi).contains(&p),
                                "{in_len} {in_ch} {kernel} {stride} {p}"
                            );
                        }
                    }
                }
            }
        }
    }
}
