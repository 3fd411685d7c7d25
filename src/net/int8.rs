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
    let computed = c.windows();
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
/// of one filter stay in registers across all positions; at most 255 filters, the outputs'
/// stride being a store's immediate offset on DSP cores).
pub fn by_filter(c: &ConvOp) -> bool {
    row4(c.kernel * c.in_channels) == 4 && c.pool.is_none() && c.out_channels <= 255
}

/// Full windows of a filter-outer conv widened into columns at a time on DSP cores (the
/// widened input of one chunk serves every filter).
pub const FILTER_OUTER_CHUNK: usize = 256;

/// Windows of a filter-outer conv's column chunk: its full windows, at most
/// [`FILTER_OUTER_CHUNK`] (and at least one, so that the buffer exists).
pub fn filter_outer_chunk(c: &ConvOp) -> usize {
    let (lo, hi) = full_range(c);
    (hi - lo).clamp(1, FILTER_OUTER_CHUNK)
}

/// Chunks of a filter-outer conv's full windows.
pub fn filter_outer_chunks(c: &ConvOp) -> usize {
    let (lo, hi) = full_range(c);
    (hi - lo).div_ceil(FILTER_OUTER_CHUNK)
}

/// Windows of a generic conv widened into 16-bit columns at a time on DSP cores: those of one
/// pooled output, or of two when the pool window is odd (or there is no pooling), so that they
/// come in pairs.
pub fn column_windows(c: &ConvOp) -> usize {
    match c.pool.map_or(1, |p| p.1) {
        w if w % 2 == 1 => 2 * w,
        w => w,
    }
}

/// Whether a generic conv on a DSP core has a window without a pair: its last column set has
/// an odd number of windows, which happens when the pool window is odd (or 1) and the
/// output length odd.
pub fn lone_window(c: &ConvOp) -> bool {
    c.pool.map_or(1, |p| p.1) % 2 == 1 && c.out_len % 2 == 1
}

/// 32-bit words of one conv's column set: [`column_windows`] windows of a row, each word of
/// four bytes widened to two, columns stored in pairs.
pub fn conv_column_words(c: &ConvOp) -> usize {
    column_windows(c).div_ceil(2) * 4 * row4(c.kernel * c.in_channels) / 4
}

/// 32-bit words of the int8 C kernel's column buffer on a DSP core (0 elsewhere, or when the
/// plan has no conv): the largest [`conv_column_words`] over the plan's generic convs, and two
/// words (one widened input word) per window of a filter-outer conv's chunk. It is RAM beside
/// the arena.
pub fn column_words(plan: &Plan, dsp: bool) -> usize {
    if !dsp {
        return 0;
    }
    max_over_convs(plan, |c| {
        if by_filter(c) {
            2 * filter_outer_chunk(c)
        } else {
            conv_column_words(c)
        }
    })
}

/// The largest `words` over the plan's convs, 0 without one.
fn max_over_convs(plan: &Plan, words: impl Fn(&ConvOp) -> usize) -> usize {
    plan.layers
        .iter()
        .filter_map(|l| match &l.op {
            Op::Conv(c) => Some(words(c)),
            _ => None,
        })
        .max()
        .unwrap_or(0)
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
    /// On a DSP core (0 or 1 each): the column routines, present when a conv runs the
    /// generic way; the routines for a last group of 2-3 filters and of 1 or 3.
    #[serde(default)]
    pub columns: usize,
    #[serde(default)]
    pub rest_pair: usize,
    #[serde(default)]
    pub rest_single: usize,
    /// On a DSP core (0 or 1 each): a conv has a window without a pair (odd pool window and
    /// odd output length), pooled with a whole filter group / with a last partial group.
    #[serde(default)]
    pub lone: usize,
    #[serde(default)]
    pub lone_rest: usize,
    /// On a DSP core (0 or 1 each): a generic conv without pooling and with a whole filter
    /// group, whose 2 × 2 blocks requantize in their own routine; one whose window without a
    /// pair (odd length) runs whole groups in theirs.
    #[serde(default)]
    pub plain_blocks: usize,
    #[serde(default)]
    pub plain_lone: usize,
    /// On a DSP core: pooled generic convs with a last partial group (the pooled loop's
    /// routines for one or two filters, which a conv of whole groups compiles away).
    #[serde(default)]
    pub partial_pooled: usize,
    /// On a DSP core (0 or 1): a pooled generic conv with a whole filter group (the 2 × 2
    /// routine that returns its accumulators to the pooling).
    #[serde(default)]
    pub pooled_blocks: usize,
    /// Filter-outer convs with windows that reach into the padding or past the input's end
    /// (the per-tap path, with its shared routines).
    #[serde(default)]
    pub outer_edges: usize,
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
            + m.gap_mean_bytes * self.gap_mean as i64
            + m.columns_bytes * self.columns as i64
            + m.rest_pair_bytes * self.rest_pair as i64
            + m.rest_single_bytes * self.rest_single as i64
            + m.lone_bytes * self.lone as i64
            + m.lone_rest_bytes * self.lone_rest as i64
            + m.plain_blocks_bytes * self.plain_blocks as i64
            + m.plain_lone_bytes * self.plain_lone as i64
            + m.outer_edge_bytes * self.outer_edges as i64
            + m.partial_pooled_bytes * self.partial_pooled as i64
            + m.pooled_blocks_bytes * self.pooled_blocks as i64;
        v.max(0) as u64
    }
}

/// Count [`CodeFeatures`] over a plan, for a core with the DSP extension or without.
pub fn code_features(plan: &Plan, dsp: bool) -> CodeFeatures {
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
            f.outer_edges += usize::from(full_range(c) != (0, c.windows()));
            continue;
        }
        f.generic += 1;
        match c.pool {
            Some((PoolKind::Avg, _)) => f.avg_pool += 1,
            Some((PoolKind::Max, _)) => f.max_pool += 1,
            None => {}
        }
        if full_range(c) != (0, c.windows()) {
            f.edges += 1;
        }
        let rest = c.out_channels % 4;
        if rest != 0 {
            f.partial_group += 1;
        }
        if dsp {
            let lone = lone_window(c);
            f.columns = 1;
            f.rest_pair |= usize::from(rest >= 2);
            f.rest_single |= usize::from(rest % 2 == 1);
            f.lone |= usize::from(lone && c.pool.is_some() && c.out_channels >= 4);
            f.plain_lone |= usize::from(lone && c.pool.is_none() && c.out_channels >= 4);
            f.partial_pooled += usize::from(c.pool.is_some() && rest != 0);
            f.pooled_blocks |= usize::from(c.pool.is_some() && c.out_channels >= 4);
            f.lone_rest |= usize::from(lone && rest != 0);
            f.plain_blocks |= usize::from(c.pool.is_none() && c.out_channels >= 4);
        }
    }
    f
}

/// What the int8 C kernel's instruction count depends on, counted over a plan (the terms of a
/// profile's `[latency_int8]` model, [`crate::target::LatencyInt8`]). A "word MAC" is four
/// byte products of a weight word (rows are padded to whole words, so padding is counted).
///
/// Without DSP (Cortex-M0+, the generic conv takes filters four at a time):
/// - `word_macs_grouped`: words × filters in groups of four, which share each input word;
/// - `word_macs_single`: the same for the filters of a last group of fewer than four, which
///   take the input word once each;
/// - `calls`: windows × filter groups (one accumulation routine call each), convs and dense;
/// - `outputs`: values requantized by the generic conv and the dense layer (pooled windows
///   included);
/// - `filter_outputs`: outputs of filter-outer convs ([`by_filter`]: one word and one
///   requantization each, everything in registers).
///
/// With DSP the generic conv runs on widened columns, two filters × two windows per call
/// ([`column_windows`]); the terms that differ:
/// - `word_macs_grouped`: word MACs of those 2 × 2 blocks (filters of whole groups of four,
///   windows in pairs);
/// - `word_macs_single`: word MACs of a window left without a pair, and of the dense layer;
/// - `word_macs_rest`: word MACs of a last group of fewer than four filters on window pairs
///   (weights loaded one by one);
/// - `calls`: calls of those routines (window pair or lone window × filter pair), and the
///   dense layer's groups;
/// - `col_words`: words widened into columns (windows × words of a row);
/// - filter-outer convs also widen their full windows (one word each, in `col_words`) and
///   call their sweep once per filter and [`FILTER_OUTER_CHUNK`] windows (in `calls`);
/// - `avg_windows`: outputs of average-pooled convs, pooled windows included (each is
///   requantized and summed into its pool's running sum).
///
/// On both, `gap_values`: the values the global average pooling sums (length × channels).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencyFeaturesInt8 {
    pub word_macs_grouped: u64,
    pub word_macs_single: u64,
    pub calls: u64,
    pub outputs: u64,
    pub filter_outputs: u64,
    pub word_macs_rest: u64,
    pub col_words: u64,
    pub avg_windows: u64,
    pub gap_values: u64,
}

impl LatencyFeaturesInt8 {
    /// The features in the order of [`crate::target::LatencyInt8::coefficients`], the
    /// constant last.
    pub fn row(&self) -> [f64; 10] {
        [
            self.word_macs_grouped as f64,
            self.word_macs_single as f64,
            self.calls as f64,
            self.outputs as f64,
            self.filter_outputs as f64,
            self.word_macs_rest as f64,
            self.col_words as f64,
            self.avg_windows as f64,
            self.gap_values as f64,
            1.0,
        ]
    }
}

/// Count [`LatencyFeaturesInt8`] over a plan, for a core with the DSP extension or without.
pub fn latency_features_int8(plan: &Plan, dsp: bool) -> LatencyFeaturesInt8 {
    let mut f = LatencyFeaturesInt8::default();
    for l in &plan.layers {
        match &l.op {
            Op::Conv(c) if by_filter(c) => {
                f.filter_outputs += (c.conv_len * c.out_channels) as u64;
                if dsp {
                    let (lo, hi) = full_range(c);
                    f.calls += (filter_outer_chunks(c) * c.out_channels) as u64;
                    f.col_words += (hi - lo) as u64;
                }
            }
            Op::Conv(c) if dsp => columns_conv(&mut f, c),
            Op::Conv(c) => {
                groups_of_four(
                    &mut f,
                    c.windows() as u64,
                    c.kernel * c.in_channels,
                    c.out_channels,
                );
            }
            Op::Dense { inputs, outputs } if dsp => {
                let (words, full) = ((row4(*inputs) / 4) as u64, (outputs / 4 * 4) as u64);
                f.word_macs_single += words * full;
                f.word_macs_rest += words * (*outputs as u64 - full);
                f.calls += outputs.div_ceil(4) as u64;
                f.outputs += *outputs as u64;
            }
            Op::Dense { inputs, outputs } => groups_of_four(&mut f, 1, *inputs, *outputs),
            Op::GlobalAvgPool { len, channels } => f.gap_values += (len * channels) as u64,
            // Costed apart: `LatencyFeatures::lut_lookups`.
            Op::Embed { .. } | Op::LutConv(_) => {}
        }
    }
    f
}

/// The generic conv without DSP (and the dense layer): `windows` × filters in groups of four.
fn groups_of_four(f: &mut LatencyFeaturesInt8, windows: u64, row: usize, filters: usize) {
    let (words, full) = ((row4(row) / 4) as u64, (filters / 4 * 4) as u64);
    f.word_macs_grouped += windows * words * full;
    f.word_macs_single += windows * words * (filters as u64 - full);
    f.calls += windows * filters.div_ceil(4) as u64;
    f.outputs += windows * filters as u64;
}

/// The generic conv with DSP: column sets of [`column_windows`] windows (fewer at the end),
/// windows in pairs within a set, filters in pairs.
fn columns_conv(f: &mut LatencyFeaturesInt8, c: &ConvOp) {
    let per_set = column_windows(c);
    let windows = c.windows();
    let (mut pairs, mut lone) = (0u64, 0u64);
    let mut w = 0;
    while w < windows {
        let n = per_set.min(windows - w);
        pairs += (n / 2) as u64;
        lone += (n % 2) as u64;
        w += n;
    }
    let words = (row4(c.kernel * c.in_channels) / 4) as u64;
    let full = (c.out_channels / 4 * 4) as u64;
    let rest = c.out_channels as u64 - full;
    f.word_macs_grouped += 2 * pairs * words * full;
    f.word_macs_single += lone * words * (full + rest);
    f.word_macs_rest += 2 * pairs * words * rest;
    f.calls += (pairs + lone) * c.out_channels.div_ceil(2) as u64;
    f.outputs += (windows * c.out_channels) as u64;
    f.col_words += windows as u64 * words;
    if let Some((PoolKind::Avg, _)) = c.pool {
        f.avg_windows += (windows * c.out_channels) as u64;
    }
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
