//! What the float C kernel's instruction count depends on, counted over a plan: the terms of a
//! profile's `[latency]` model ([`crate::target::Latency`]), fitted to QEMU counts by
//! `examples/calibrate_latency.rs`. The int8 kernel's are in [`crate::net::int8`].

use crate::net::plan::{Buffer, Layer, Op, Plan};
use crate::target::TableWork;
use serde::{Deserialize, Serialize};

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
}

impl LatencyFeatures {
    /// The features in the order of [`crate::target::Latency::coefficients`], the constant
    /// last.
    pub fn row(&self) -> [f64; 8] {
        [
            self.macs_grouped as f64,
            self.macs_single as f64,
            self.dot_calls as f64,
            self.conv_outputs as f64,
            self.layers as f64,
            self.macs_vector as f64,
            self.converted_bytes as f64,
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

    /// All executed MACs.
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
        // (products per output, outputs per window, windows) of the kernel's dot loops.
        let (macs, out_ch, windows) = match &l.op {
            Op::Conv(c) => {
                let windows = c.windows() as u64;
                f.conv_outputs += windows * c.out_channels as u64;
                (l.executed_macs(), c.out_channels as u64, windows)
            }
            Op::Dense { outputs, .. } => (l.executed_macs(), *outputs as u64, 1),
            Op::Embed { .. } | Op::LutConv(_) | Op::GlobalAvgPool { .. } => continue,
        };
        // Filters go through the dot loop four at a time; the last out_ch % 4 one by one.
        let single = out_ch % 4;
        f.macs_single += macs / out_ch * single;
        let grouped = macs / out_ch * (out_ch - single);
        if let (Op::Conv(c), Buffer::Input { .. }) = (&l.op, &l.input) {
            f.converted_bytes += c.window_taps().sum::<u64>() * c.in_channels as u64;
        }
        let vector = if fpu {
            (out_ch - single) * vector_elements(l)
        } else {
            0
        };
        f.macs_vector += vector;
        f.macs_grouped += grouped - vector;
        f.dot_calls += windows * (out_ch / 4 + single);
    }
    f
}

/// Elements of float input the four-element loop takes over all windows of a conv or dense
/// layer: each window's products per filter rounded down to a multiple of four.
fn vector_elements(l: &Layer) -> u64 {
    match &l.op {
        Op::Conv(c) => c
            .window_taps()
            .map(|taps| taps * c.in_channels as u64 / 4 * 4)
            .sum(),
        Op::Dense { inputs, .. } => (inputs / 4 * 4) as u64,
        _ => 0,
    }
}
