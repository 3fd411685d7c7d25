//! What the float C kernel's instruction count depends on, counted over a plan: the terms of a
//! profile's `[latency]` model ([`crate::target::Latency`]), fitted to QEMU counts by
//! `examples/calibrate_latency.rs`. The int8 kernel's are in [`crate::net::int8`].

use crate::net::plan::{Buffer, ConvOp, Op, Plan};
use crate::target::TableWork;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// What the latency model counts in a plan ([`latency_features`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LatencyFeatures {
    /// Executed MACs (padded taps skipped, conv and dense) of filters taken four at a time,
    /// element by element (on a core with an FPU: those the four-element loop leaves, each
    /// window's last `n % 4` elements).
    pub macs_grouped: u64,
    /// Executed MACs of the filters left over (`out_channels % 4`), taken one by one.
    pub macs_single: u64,
    /// Calls of the dot-product routine: per computed window, one per group of four filters
    /// and one per left-over filter (and the same per dense layer).
    pub dot_calls: u64,
    /// Conv output values computed, the windows a pooling layer folds together included
    /// (`out_len × pool × out_channels`, or `conv_len × out_channels` without pooling).
    pub conv_outputs: u64,
    /// Executed layers (convs, global average pooling, dense; an input embedding is costed by
    /// `embed_values` instead).
    pub layers: u64,
    /// Table values an input embedding copies (`len × dim`), costed by the profile's
    /// `per_embed_value` apart from the fitted terms.
    #[serde(default)]
    pub embed_values: u64,
    /// Input bytes an input embedding looks up (`len`).
    #[serde(default)]
    pub embed_rows: u64,
    /// Entries a lookup-table conv adds and the outputs it computes, costed by the profile's
    /// `per_lookup` and `per_lut_output` apart from the fitted terms (the layer is not in
    /// `layers`, `conv_outputs` or the MAC counts).
    #[serde(default)]
    pub lut_lookups: u64,
    #[serde(default)]
    pub lut_outputs: u64,
    /// On a core with an FPU: MACs of four-filter groups taken four elements at a time (one
    /// VLDM each for the input and every filter).
    #[serde(default)]
    pub macs_vector: u64,
    /// Raw input bytes the first conv converts to float, once per window for all its filters
    /// (its window's taps on the input).
    #[serde(default)]
    pub converted_bytes: u64,
    /// On a core with an FPU: the products of windows taken in pairs ([`window_elements`]),
    /// both windows, every group of four filters counted whole (a last group of fewer runs as
    /// four).
    #[serde(default)]
    pub macs_pair: u64,
    /// Windows the convs compute, a pair of them counted once (each has its taps worked out
    /// and, for the first conv, its bytes converted).
    #[serde(default)]
    pub conv_windows: u64,
    /// On a core with an FPU: products of the first conv's filter-outer sweep
    /// ([`sweep_windows`]), every group of four filters counted whole.
    #[serde(default)]
    pub sweep_macs: u64,
    /// Window × filter-group steps of that sweep (each converts the window's bytes, then
    /// biases and stores four outputs).
    #[serde(default)]
    pub sweep_groups: u64,
}

impl LatencyFeatures {
    /// The features in the order of [`crate::target::Latency::coefficients`], the constant
    /// last.
    pub fn row(&self) -> [f64; 12] {
        [
            self.macs_grouped as f64,
            self.macs_single as f64,
            self.dot_calls as f64,
            self.conv_outputs as f64,
            self.layers as f64,
            self.macs_vector as f64,
            self.converted_bytes as f64,
            self.macs_pair as f64,
            self.conv_windows as f64,
            self.sweep_macs as f64,
            self.sweep_groups as f64,
            1.0,
        ]
    }

    /// What an input embedding does outside the fitted terms, for the profiles' table terms.
    pub fn table_work(&self) -> TableWork {
        TableWork {
            embed_values: self.embed_values,
            embed_rows: self.embed_rows,
            lut_lookups: self.lut_lookups,
            lut_outputs: self.lut_outputs,
        }
    }

    /// The MACs the dot routines take one window at a time (all executed MACs on a core
    /// without an FPU; with one, those of windows in pairs are in `macs_pair`).
    pub fn executed_macs(&self) -> u64 {
        self.macs_grouped + self.macs_single + self.macs_vector
    }
}

/// What the latency model counts in a plan (see [`LatencyFeatures`] for the definitions), for
/// a core with an FPU (`fpu`: the float kernel's four-element loop) or without.
pub fn latency_features(plan: &Plan, fpu: bool) -> LatencyFeatures {
    let mut f = LatencyFeatures {
        layers: plan
            .layers
            .iter()
            .filter(|l| !matches!(l.op, Op::Embed { .. } | Op::LutConv(_)))
            .count() as u64,
        ..LatencyFeatures::default()
    };
    for l in &plan.layers {
        if let Op::Embed { len, dim, .. } = l.op {
            f.embed_values += (len * dim) as u64;
            f.embed_rows += len as u64;
        }
        if let Op::LutConv(c) = &l.op {
            f.lut_lookups += l.lookups();
            f.lut_outputs += (c.windows() * c.out_channels) as u64;
        }
        // The windows a first conv's sweep takes (with an FPU), outside every other term.
        let swept = match (&l.op, &l.input) {
            (Op::Conv(c), Buffer::Input { .. }) if fpu => sweep_windows(c).unwrap_or(0..0),
            _ => 0..0,
        };
        if let (Op::Conv(c), Buffer::Input { .. }) = (&l.op, &l.input) {
            let groups = c.out_channels.div_ceil(4) as u64;
            f.sweep_groups += swept.len() as u64 * groups;
            f.sweep_macs += swept.len() as u64 * groups * 4 * c.kernel as u64;
            let taps: u64 = c
                .window_taps()
                .enumerate()
                .filter(|(q, _)| !swept.contains(q))
                .map(|(_, n)| n)
                .sum();
            f.converted_bytes += taps * c.in_channels as u64;
        }
        // Products per filter of each window the dot routines take alone, and of each pair.
        let (out_ch, (alone, pairs)) = match &l.op {
            Op::Conv(c) => {
                let (alone, pairs) = window_elements(c, fpu, swept.clone());
                let computed = c.windows() - swept.len();
                f.conv_outputs += (computed * c.out_channels) as u64;
                f.conv_windows += (alone.len() + pairs.len()) as u64;
                (c.out_channels as u64, (alone, pairs))
            }
            Op::Dense { inputs, outputs } => (*outputs as u64, (vec![*inputs as u64], vec![])),
            Op::Embed { .. } | Op::LutConv(_) | Op::GlobalAvgPool { .. } => continue,
        };
        // Filters go through the dot loop four at a time; the last out_ch % 4 one by one.
        let single = out_ch % 4;
        for n in alone {
            let vector = if fpu {
                (out_ch - single) * (n / 4 * 4)
            } else {
                0
            };
            f.macs_single += n * single;
            f.macs_vector += vector;
            f.macs_grouped += n * (out_ch - single) - vector;
            f.dot_calls += out_ch / 4 + single;
        }
        for n in pairs {
            f.macs_pair += 2 * n * 4 * out_ch.div_ceil(4);
            f.dot_calls += out_ch.div_ceil(4);
        }
    }
    f
}

/// The windows of a conv that reads the raw input bytes which the float kernel (on a core with
/// an FPU) sweeps filter by filter, four filters' weights held in registers: a conv with one
/// input channel, at most four taps and no pooling (the seed's smart start: k3 s4), whose
/// windows are too short for the four-element loops. `None` for any other conv; else the
/// windows whose taps all lie inside the input (the others take the generic path).
pub fn sweep_windows(c: &ConvOp) -> Option<Range<usize>> {
    if c.in_channels != 1 || c.kernel > SWEEP_MAX_KERNEL || c.pool.is_some() {
        return None;
    }
    let full = |(lo, hi): (i64, i64)| lo == 0 && hi == c.kernel as i64;
    let ranges: Vec<(i64, i64)> = c.window_tap_ranges().collect();
    let q0 = ranges.iter().position(|&r| full(r)).unwrap_or(ranges.len());
    let q1 = ranges.iter().rposition(|&r| full(r)).map_or(q0, |q| q + 1);
    Some(q0..q1)
}

/// The conv that the float kernel sweeps ([`sweep_windows`]): the first conv, when it reads
/// the raw input bytes and qualifies.
pub fn swept_conv(plan: &Plan) -> Option<&ConvOp> {
    plan.layers.iter().find_map(|l| match (&l.op, &l.input) {
        (Op::Conv(c), Buffer::Input { .. }) => sweep_windows(c).map(|_| c),
        _ => None,
    })
}

/// The longest kernel of a first conv that the float kernel sweeps (four filters × this many
/// weights stay in FPU registers).
pub const SWEEP_MAX_KERNEL: usize = 4;

/// Products per filter (taps inside the input × input channels) of each computed window of a
/// conv, split into those the float kernel takes alone and, on a core with an FPU, those it
/// takes in pairs: consecutive windows with the same taps and at least four products, paired
/// greedily from the first window (as the C kernel's loop does). The windows in `swept` are
/// left out (a first conv's sweep takes them, see [`sweep_windows`]).
pub fn window_elements(c: &ConvOp, fpu: bool, swept: Range<usize>) -> (Vec<u64>, Vec<u64>) {
    let ranges: Vec<(i64, i64)> = c.window_tap_ranges().collect();
    let ch = c.in_channels as u64;
    let (mut alone, mut pairs) = (Vec::new(), Vec::new());
    let mut q = 0;
    while q < ranges.len() {
        if swept.contains(&q) {
            q = swept.end;
            continue;
        }
        let n = (ranges[q].1 - ranges[q].0).max(0) as u64 * ch;
        if fpu && n >= 4 && q + 1 < ranges.len() && ranges[q + 1] == ranges[q] {
            pairs.push(n);
            q += 2;
        } else {
            alone.push(n);
            q += 1;
        }
    }
    (alone, pairs)
}
