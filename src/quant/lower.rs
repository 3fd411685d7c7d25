//! [`QuantLowered`]: a lowered float network ([`Lowered`], BatchNorm already folded) with its
//! constants in int8, and the int8 arena plan.
//!
//! Quantizer choices beyond TFLite's scheme, both needed for the kernels' fast requantization
//! (see [`super::requantize_fast`]) and both no-ops for ordinary layers:
//! - a channel's weight scale is raised when its int32 bias would exceed ±2^28
//!   (`s_w ≥ |b| / (s_in · 2^28)`), which only happens for a channel whose weights are tiny
//!   next to its bias;
//! - every accumulator is proven to stay below `2^(30 − max(shift, 0))` in magnitude for any
//!   input (`|bias| + 255 · Σ|w|`); a layer for which it does not is an error, never a wrap.

use super::{fast_shifts, quantize_multiplier, QuantError};
use crate::lower::Lowered;
use crate::net::plan::{int8_arena, Int8Arena, Op, Plan};
use serde::Serialize;

/// Scale and zero point of an int8 tensor: `real = scale · (q − zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QuantParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// The input byte `b` as int8: `b − 128`, scale 1/255, zero point −128 (so `real = b / 255`,
/// exactly what the float network sees).
pub const INPUT_PARAMS: QuantParams = QuantParams {
    scale: crate::data::INPUT_SCALE,
    zero_point: -128,
};

/// Bias bound that keeps the accumulators in the kernels' range (see the module doc).
const MAX_BIAS: f64 = (1u32 << 28) as f64;

impl QuantParams {
    /// Asymmetric int8 parameters covering `[min, max]` widened to include 0 (TFLite's rule, so
    /// that 0 — padding, ReLU — is exact). A zero-width range gets scale 1/255.
    pub fn from_range(min: f32, max: f32) -> Result<QuantParams, QuantError> {
        if !min.is_finite() || !max.is_finite() || min > max {
            return Err(QuantError::Calibration(format!(
                "invalid range [{min}, {max}]"
            )));
        }
        let (min, max) = (min.min(0.0) as f64, max.max(0.0) as f64);
        let width = max - min;
        if width <= f32::MIN_POSITIVE as f64 * 255.0 {
            return Ok(QuantParams {
                scale: 1.0 / 255.0,
                zero_point: -128,
            });
        }
        let scale = (width / 255.0) as f32;
        let zp = (-128.0 - min / scale as f64).round().clamp(-128.0, 127.0) as i32;
        Ok(QuantParams {
            scale,
            zero_point: zp,
        })
    }

    /// `clamp(round(v / scale) + zero_point, −128, 127)`.
    pub fn quantize(&self, v: f64) -> i32 {
        ((v / self.scale as f64).round() + self.zero_point as f64).clamp(-128.0, 127.0) as i32
    }

    pub fn dequantize(&self, q: i32) -> f64 {
        self.scale as f64 * (q - self.zero_point) as f64
    }
}

/// One plan layer in int8. Global average pooling has no weights, bias or multipliers and
/// the same input and output parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantLayer {
    /// Weights in the float kernels' layout: conv `[out][kernel][in]`, dense `[out][in]`.
    pub weights: Vec<i8>,
    /// Per output channel, at scale `input.scale · weight_scales[c]`.
    pub bias: Vec<i32>,
    pub weight_scales: Vec<f32>,
    /// Per output channel, from [`quantize_multiplier`].
    pub multiplier: Vec<i32>,
    pub shift: Vec<i32>,
    pub input: QuantParams,
    pub output: QuantParams,
    /// The output clamp (the fused ReLU raises the lower end to the zero point).
    pub act_min: i32,
    pub act_max: i32,
    /// Largest `|accumulator|` any input can produce, per output channel.
    pub acc_bound: Vec<i64>,
    /// A lookup-table conv's int8 embedding table `[256][dim]` (its parameters are `input`;
    /// `weights` are the conv's): the kernels' table is [`super::kernel::lookup_table_int8`].
    /// Empty for every other layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub table: Vec<i8>,
    /// Global average pooling that requantizes to other parameters than its input's, as
    /// TFLite's int8 MEAN does ([`super::mean_requantized`]). `None`: the int8 average that
    /// keeps the input's parameters (every network `nas` quantizes, and TFLite's
    /// AVERAGE_POOL_2D). Only imported models have it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<super::MeanRequant>,
}

/// A quantized network: the float plan (shapes, layer order), its int8 constants and the int8
/// arena.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantLowered {
    pub plan: Plan,
    pub layers: Vec<QuantLayer>,
    pub arena: Int8Arena,
}

impl QuantLayer {
    /// A conv or dense layer from `input` to `output` parameters with its per-channel vectors
    /// empty, to be filled for `channels` channels; a fused ReLU (`relu`) clamps at the output's
    /// zero point (TFLite's `CalculateActivationRangeQuantized`).
    pub fn accumulating(
        input: QuantParams,
        output: QuantParams,
        relu: bool,
        channels: usize,
    ) -> QuantLayer {
        QuantLayer {
            weights: Vec::new(),
            bias: Vec::with_capacity(channels),
            weight_scales: Vec::with_capacity(channels),
            multiplier: Vec::with_capacity(channels),
            shift: Vec::with_capacity(channels),
            input,
            output,
            act_min: if relu {
                output.zero_point.max(-128)
            } else {
                -128
            },
            act_max: 127,
            acc_bound: Vec::with_capacity(channels),
            table: Vec::new(),
            mean: None,
        }
    }

    /// A global average pooling from `input` to `output` parameters (the same for ours;
    /// TFLite's MEAN has its own, and `mean` says how it requantizes): no constants.
    pub fn global_pool(
        input: QuantParams,
        output: QuantParams,
        mean: Option<super::MeanRequant>,
    ) -> QuantLayer {
        QuantLayer {
            weights: Vec::new(),
            bias: Vec::new(),
            weight_scales: Vec::new(),
            multiplier: Vec::new(),
            shift: Vec::new(),
            input,
            output,
            act_min: -128,
            act_max: 127,
            acc_bound: Vec::new(),
            table: Vec::new(),
            mean,
        }
    }
}

impl QuantLowered {
    /// Parameters of the logits (the dense layer's int8 output).
    pub fn output_params(&self) -> QuantParams {
        self.layers.last().expect("a plan has layers").output
    }

    /// Global average poolings that requantize (TFLite's MEAN), for the code-size model
    /// ([`crate::net::cost::cost_deployed`]).
    pub fn requantizing_means(&self) -> usize {
        self.layers.iter().filter(|l| l.mean.is_some()).count()
    }
}

/// Quantize a lowered network with calibrated activation ranges.
pub fn quantize(lowered: &Lowered, ranges: &super::Ranges) -> Result<QuantLowered, QuantError> {
    let plan = &lowered.plan;
    if ranges.layers.len() != plan.layers.len() {
        return Err(QuantError::Calibration(format!(
            "{} ranges for {} layers",
            ranges.layers.len(),
            plan.layers.len()
        )));
    }
    let mut input = INPUT_PARAMS;
    let mut layers = Vec::with_capacity(plan.layers.len());
    for ((layer, consts), &(lo, hi)) in plan.layers.iter().zip(&lowered.layers).zip(&ranges.layers)
    {
        let q = match &layer.op {
            Op::Embed { .. } => {
                quantize_table(consts, (lo, hi)).map_err(|msg| QuantError::Layer {
                    layer: layer.name.clone(),
                    msg,
                })?
            }
            Op::GlobalAvgPool { .. } => QuantLayer::global_pool(input, input, None),
            Op::LutConv(_) => quantize_lut(consts, (lo, hi)).map_err(|msg| QuantError::Layer {
                layer: layer.name.clone(),
                msg,
            })?,
            Op::Conv(_) | Op::Dense { .. } => {
                let relu = matches!(layer.op, Op::Conv(_));
                quantize_layer(consts, input, (lo, hi), relu).map_err(|msg| QuantError::Layer {
                    layer: layer.name.clone(),
                    msg,
                })?
            }
        };
        input = q.output;
        layers.push(q);
    }
    Ok(QuantLowered {
        plan: plan.clone(),
        layers,
        arena: int8_arena(plan),
    })
}

/// The input embedding's table in int8 with its own scale and zero point, from its range
/// (calibration gives the whole table's): a lookup then yields the first conv's int8 input
/// directly. No weights scales, bias or multipliers: nothing is accumulated.
fn quantize_table(
    consts: &crate::lower::LayerConsts,
    range: (f32, f32),
) -> Result<QuantLayer, String> {
    let output = QuantParams::from_range(range.0, range.1).map_err(|e| e.to_string())?;
    Ok(QuantLayer {
        weights: consts
            .weights
            .iter()
            .map(|&v| output.quantize(v as f64) as i8)
            .collect(),
        bias: Vec::new(),
        weight_scales: Vec::new(),
        multiplier: Vec::new(),
        shift: Vec::new(),
        input: INPUT_PARAMS,
        output,
        act_min: -128,
        act_max: 127,
        acc_bound: Vec::new(),
        table: Vec::new(),
        mean: None,
    })
}

/// A lookup-table conv: its table quantized as the rows form's embedding is (its own scale and
/// zero point from the whole table's range), its conv as the rows form's first conv on that
/// input. Both forms then hold the same integers, and the lookup table is their exact product.
fn quantize_lut(
    consts: &crate::lower::LayerConsts,
    range: (f32, f32),
) -> Result<QuantLayer, String> {
    let f = consts
        .folded
        .as_ref()
        .ok_or("internal: a lookup-table conv without its table and conv weights")?;
    let (lo, hi) = f
        .table
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let rows = crate::lower::LayerConsts {
        weights: f.table.clone(),
        bias: Vec::new(),
        folded: None,
    };
    let table = quantize_table(&rows, (lo, hi))?;
    let conv = crate::lower::LayerConsts {
        weights: f.conv.clone(),
        bias: consts.bias.clone(),
        folded: None,
    };
    let mut q = quantize_layer(&conv, table.output, range, true)?;
    q.table = table.weights;
    Ok(q)
}

/// One output channel in int8.
struct QuantChannel {
    weights: Vec<i8>,
    bias: i32,
    scale: f32,
    multiplier: i32,
    shift: i32,
    acc_bound: i64,
}

/// A conv or dense layer (`relu`: a conv, whose output range starts at 0) with its float
/// constants, on an input quantized with `input`, its output calibrated to `range`.
fn quantize_layer(
    consts: &crate::lower::LayerConsts,
    input: QuantParams,
    range: (f32, f32),
    relu: bool,
) -> Result<QuantLayer, String> {
    let output = QuantParams::from_range(range.0, range.1).map_err(|e| e.to_string())?;
    if relu && output.zero_point != -128 {
        // Cannot happen: a ReLU output's range starts at 0.
        return Err(format!(
            "a ReLU output has zero point {} (expected -128)",
            output.zero_point
        ));
    }
    let channels = consts.bias.len();
    let row = consts.weights.len() / channels.max(1);
    let mut q = QuantLayer {
        weights: Vec::with_capacity(consts.weights.len()),
        ..QuantLayer::accumulating(input, output, relu, channels)
    };
    for c in 0..channels {
        let w = &consts.weights[c * row..(c + 1) * row];
        let ch = quantize_channel(w, consts.bias[c] as f64, input, output)
            .map_err(|msg| format!("channel {c}: {msg}"))?;
        q.weights.extend(ch.weights);
        q.bias.push(ch.bias);
        q.weight_scales.push(ch.scale);
        q.multiplier.push(ch.multiplier);
        q.shift.push(ch.shift);
        q.acc_bound.push(ch.acc_bound);
    }
    Ok(q)
}

/// One channel's weights `w` and bias `b`: symmetric int8 weights, int32 bias at `s_in · s_w`,
/// the requantization multiplier, and the proof that its accumulators fit the kernels.
fn quantize_channel(
    w: &[f32],
    b: f64,
    input: QuantParams,
    output: QuantParams,
) -> Result<QuantChannel, String> {
    let wmax = w.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
    let s_in = input.scale as f64;
    let mut s_w = (wmax / 127.0).max(b.abs() / (s_in * MAX_BIAS));
    if s_w == 0.0 {
        s_w = 1.0 / 127.0; // an all-zero channel: any scale represents it
    }
    let s_w = s_w as f32;
    let weights: Vec<i8> = w
        .iter()
        .map(|&v| (v as f64 / s_w as f64).round().clamp(-127.0, 127.0) as i8)
        .collect();
    let bias = (b / (s_in * s_w as f64)).round().clamp(-MAX_BIAS, MAX_BIAS) as i32;
    let m = s_in * s_w as f64 / output.scale as f64;
    let (multiplier, shift) = quantize_multiplier(m).map_err(|e| e.to_string())?;
    let acc_bound = accumulator_bound(&weights, bias, input, shift)
        .map_err(|b| format!("{b} with requantization multiplier {m:.3e}"))?;
    Ok(QuantChannel {
        weights,
        bias,
        scale: s_w,
        multiplier,
        shift,
        acc_bound,
    })
}

/// Largest `|accumulator|` of one output channel with int8 `weights` and int32 `bias` on an
/// input with `input`'s zero point, in TFLite's sums (`bias + Σ (x − zp_in)·w`) and in the
/// kernels' (`u = x + 128` bytes times the weights plus the bias with the zero point folded
/// in, `quant::kernel::kernel_bias`). Errs (saying the bound) when the kernels' requantization
/// with this `shift` could overflow 32 bits ([`super::requantize_fast`]'s condition).
pub fn accumulator_bound(
    weights: &[i8],
    bias: i32,
    input: QuantParams,
    shift: i32,
) -> Result<i64, String> {
    // |x − zp_in| for any int8 x.
    let x_max = (127 - input.zero_point).max(input.zero_point + 128) as i64;
    let abs_w: i64 = weights.iter().map(|&v| (v as i64).abs()).sum();
    let sum_w: i64 = weights.iter().map(|&v| v as i64).sum();
    let kernel_bias = bias as i64 - (128 + input.zero_point) as i64 * sum_w;
    let bound = (bias.unsigned_abs() as i64 + x_max * abs_w).max(kernel_bias.abs() + 255 * abs_w);
    let (lsh, _, _) = fast_shifts(shift);
    if bound >= 1i64 << (31 - lsh) {
        return Err(format!(
            "accumulators up to {bound} overflow 32 bits in the kernels' requantization (shift {shift})"
        ));
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::lower_weights;
    use crate::net::NetSpec;
    use crate::quant::{calibrate, CalibrationMethod};
    use crate::weights::Weights;

    #[test]
    fn params_from_ranges() {
        let p = QuantParams::from_range(0.0, 2.55).unwrap();
        assert_eq!(p.zero_point, -128);
        assert!((p.scale - 0.01).abs() < 1e-7);
        assert_eq!(p.quantize(0.0), -128);
        assert_eq!(p.quantize(2.55), 127);
        assert_eq!(p.quantize(100.0), 127);
        // A range straddling 0: 0 is exactly representable.
        let p = QuantParams::from_range(-1.0, 3.0).unwrap();
        assert_eq!(p.dequantize(p.zero_point), 0.0);
        assert_eq!(p.zero_point, -64);
        // A range entirely above 0 is widened to 0.
        assert_eq!(QuantParams::from_range(1.0, 2.0).unwrap().zero_point, -128);
        // Degenerate ranges are usable; invalid ones are errors.
        assert_eq!(
            QuantParams::from_range(0.0, 0.0).unwrap().scale,
            1.0 / 255.0
        );
        assert!(QuantParams::from_range(f32::NAN, 1.0).is_err());
        assert!(QuantParams::from_range(2.0, 1.0).is_err());
    }

    #[test]
    fn int8_arena_is_the_float_plan_in_bytes() {
        let spec = NetSpec::smart_start(784, 12);
        let plan = crate::net::plan::lower(&spec).unwrap();
        let a = int8_arena(&plan);
        assert_eq!(a.bytes * crate::net::plan::ELEM_BYTES, plan.arena_bytes);
        assert_eq!(a.bytes, 5292 + 1824);
        assert_eq!(a.input[0], None);
        assert_eq!(a.output[0], Some(0));
        assert_eq!(a.input[1], Some(0));
        assert_eq!(a.output[1], Some(5292));
        assert_eq!(a.output[3], None);
    }

    #[test]
    fn quantized_smart_start_is_consistent() {
        let spec = NetSpec::smart_start(784, 12);
        let low = lower_weights(&spec, &Weights::random(&spec, 5)).unwrap();
        let ds = crate::data::synthetic(30, 784, 12, 1);
        let r = calibrate(
            &low,
            (0..ds.n()).map(|i| ds.sample(i)),
            CalibrationMethod::MinMax,
        )
        .unwrap();
        let q = quantize(&low, &r).unwrap();
        assert_eq!(q.layers[0].input, INPUT_PARAMS);
        for (l, k) in q.layers.iter().zip(&low.layers) {
            assert_eq!(l.weights.len(), k.weights.len());
            assert_eq!(l.bias.len(), k.bias.len());
            // Dequantized weights within half a step of the floats.
            let row = k.weights.len() / k.bias.len().max(1);
            for (i, (&wq, &w)) in l.weights.iter().zip(&k.weights).enumerate() {
                let s = l.weight_scales[i / row];
                assert!((wq as f32 * s - w).abs() <= 0.5001 * s);
            }
            for &m in &l.multiplier {
                assert!(m == 0 || (1 << 30..=i32::MAX).contains(&m));
            }
        }
        for w in q.layers.windows(2) {
            assert_eq!(w[0].output, w[1].input);
        }
    }

    #[test]
    fn mismatched_ranges_are_an_error() {
        let spec = NetSpec::smart_start(784, 12);
        let low = lower_weights(&spec, &Weights::random(&spec, 5)).unwrap();
        let r = crate::quant::Ranges {
            layers: vec![(0.0, 1.0)],
            samples: 1,
        };
        assert!(quantize(&low, &r).is_err());
    }
}
