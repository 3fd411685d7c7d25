//! Activation ranges for post-training quantization: the float network (BatchNorm folded, the
//! constants the float kernels use) run layer by layer over calibration samples, recording each
//! activation tensor's range.
//!
//! The tensors are TFLite's: a conv's output is its ReLU output *before* pooling (the pool
//! inherits its scale and zero point, as TFLite's int8 pooling requires), global average pooling
//! inherits its input's, and the dense layer's output is the logits. Calibration samples come
//! from the training split, never from the test split.

use super::QuantError;
use crate::lower::Lowered;
use crate::net::plan::{embed_rows, Op};

/// How a tensor's range is taken from the values seen in calibration.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum CalibrationMethod {
    /// The smallest and largest value.
    #[default]
    MinMax,
    /// The given percentile (e.g. 99.99) of the values as the upper end, `100 − p` as the
    /// lower one: a few outliers then do not stretch the scale.
    Percentile(f64),
}

/// Float range `(min, max)` of every plan layer's output tensor, in plan order. For a conv
/// layer it is the range of its ReLU output before pooling; for global average pooling it is
/// its input's.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranges {
    pub layers: Vec<(f32, f32)>,
    /// Number of samples the ranges come from.
    pub samples: usize,
}

/// Default number of calibration samples (issue 8: 1,000 training samples).
pub const DEFAULT_CALIBRATION_SAMPLES: usize = 1000;

/// Calibrate activation ranges on `samples` (each `input_len × input_channels` bytes).
pub fn calibrate<'a>(
    lowered: &Lowered,
    samples: impl IntoIterator<Item = &'a [u8]>,
    method: CalibrationMethod,
) -> Result<Ranges, QuantError> {
    if let CalibrationMethod::Percentile(p) = method {
        if !(50.0..=100.0).contains(&p) {
            return Err(QuantError::Calibration(format!(
                "percentile {p} is outside 50..=100"
            )));
        }
    }
    let plan = &lowered.plan;
    let n_in = plan.input_len * plan.input_channels;
    let nl = plan.layers.len();
    let mut lo = vec![f32::INFINITY; nl];
    let mut hi = vec![f32::NEG_INFINITY; nl];
    let keep = matches!(method, CalibrationMethod::Percentile(_));
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); if keep { nl } else { 0 }];
    let mut count = 0usize;
    for s in samples {
        if s.len() != n_in {
            return Err(QuantError::Calibration(format!(
                "a calibration sample has {} bytes, the network takes {n_in}",
                s.len()
            )));
        }
        count += 1;
        let mut x: Vec<f32> = s.iter().map(|&b| crate::data::input_value(b)).collect();
        for (i, (layer, consts)) in plan.layers.iter().zip(&lowered.layers).enumerate() {
            let (out, tensor) = match layer.op {
                Op::Embed { .. } => (embed(&layer.op, consts, s), None),
                _ => forward_layer(&layer.op, consts, &x),
            };
            let t = tensor.as_deref().unwrap_or(&out);
            for &v in t {
                lo[i] = lo[i].min(v);
                hi[i] = hi[i].max(v);
            }
            if keep {
                values[i].extend_from_slice(t);
            }
            x = out;
        }
    }
    if count == 0 {
        return Err(QuantError::Calibration("no calibration samples".into()));
    }
    let mut layers: Vec<(f32, f32)> = lo.into_iter().zip(hi).collect();
    if let CalibrationMethod::Percentile(p) = method {
        for (r, v) in layers.iter_mut().zip(&mut values) {
            *r = (percentile(v, 100.0 - p), percentile(v, p));
        }
    }
    // An embedding's table is quantized whole, whatever bytes the samples hold: every row
    // can be looked up on the device.
    for ((layer, consts), range) in plan.layers.iter().zip(&lowered.layers).zip(&mut layers) {
        if let Op::Embed { .. } = layer.op {
            *range = consts
                .weights
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
        }
    }
    // Global average pooling keeps its input's quantization.
    for (i, layer) in plan.layers.iter().enumerate() {
        if matches!(layer.op, Op::GlobalAvgPool { .. }) && i > 0 {
            layers[i] = layers[i - 1];
        }
    }
    if let Some(i) = layers
        .iter()
        .position(|(a, b)| !a.is_finite() || !b.is_finite())
    {
        return Err(QuantError::Calibration(format!(
            "layer {} produced non-finite values",
            plan.layers[i].name
        )));
    }
    Ok(Ranges {
        layers,
        samples: count,
    })
}

/// The `p`-th percentile (nearest rank) of `v`, reordering it.
fn percentile(v: &mut [f32], p: f64) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let k = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    let k = k.min(v.len() - 1);
    *v.select_nth_unstable_by(k, |a, b| a.total_cmp(b)).1
}

/// The input embedding of raw bytes, as the kernels write it (see `Op::Embed`).
pub(crate) fn embed(op: &Op, consts: &crate::lower::LayerConsts, bytes: &[u8]) -> Vec<f32> {
    match *op {
        Op::Embed {
            dim,
            pad_left,
            pad_right,
            ..
        } => embed_rows(bytes, &consts.weights, dim, (pad_left, pad_right), 0.0),
        _ => unreachable!("embed() is called for the embedding only"),
    }
}

/// One float layer, channels-last: its output, and for a pooled conv the un-pooled ReLU output
/// (the tensor whose range is calibrated). The input embedding reads bytes: see [`embed`].
pub(crate) fn forward_layer(
    op: &Op,
    consts: &crate::lower::LayerConsts,
    x: &[f32],
) -> (Vec<f32>, Option<Vec<f32>>) {
    match op {
        Op::Embed { .. } => {
            // Values that are bytes scaled by 1/255, as the other layers' first input.
            let bytes: Vec<u8> = x.iter().map(|v| (v * 255.0).round() as u8).collect();
            (embed(op, consts, &bytes), None)
        }
        // Calibrated as the rows form computes it, so both forms quantize alike: the table's
        // rows, then the conv over them.
        Op::LutConv(c) => {
            let f = consts
                .folded
                .as_ref()
                .expect("lower_weights gives a lookup-table conv its factors");
            let bytes: Vec<u8> = x.iter().map(|v| (v * 255.0).round() as u8).collect();
            let rows = embed_rows(&bytes, &f.table, c.in_channels, (0, 0), 0.0);
            let conv = crate::lower::LayerConsts {
                weights: f.conv.clone(),
                bias: consts.bias.clone(),
                folded: None,
            };
            forward_layer(&Op::Conv(c.clone()), &conv, &rows)
        }
        Op::Conv(c) => {
            let row = c.kernel * c.in_channels;
            let mut y = vec![0.0f32; c.conv_len * c.out_channels];
            for o in 0..c.conv_len {
                let start = (o * c.stride) as isize - c.pad_left as isize;
                for f in 0..c.out_channels {
                    let w = &consts.weights[f * row..(f + 1) * row];
                    let mut acc = consts.bias[f];
                    for j in 0..c.kernel {
                        let p = start + j as isize;
                        if p < 0 || p as usize >= c.in_len {
                            continue;
                        }
                        let xs = &x[p as usize * c.in_channels..(p as usize + 1) * c.in_channels];
                        let ws = &w[j * c.in_channels..(j + 1) * c.in_channels];
                        for (a, b) in xs.iter().zip(ws) {
                            acc += a * b;
                        }
                    }
                    y[o * c.out_channels + f] = acc.max(0.0);
                }
            }
            match c.pool {
                None => (y, None),
                Some((kind, size)) => {
                    let mut out = vec![0.0f32; c.out_len * c.out_channels];
                    for p in 0..c.out_len {
                        for f in 0..c.out_channels {
                            let w = (0..size).map(|i| y[(p * size + i) * c.out_channels + f]);
                            out[p * c.out_channels + f] = match kind {
                                crate::net::PoolKind::Max => w.fold(f32::MIN, f32::max),
                                crate::net::PoolKind::Avg => w.sum::<f32>() / size as f32,
                            };
                        }
                    }
                    (out, Some(y))
                }
            }
        }
        Op::GlobalAvgPool { len, channels } => {
            let mut out = vec![0.0f32; *channels];
            for t in 0..*len {
                for (c, o) in out.iter_mut().enumerate() {
                    *o += x[t * channels + c];
                }
            }
            for o in &mut out {
                *o /= *len as f32;
            }
            (out, None)
        }
        Op::Dense { inputs, outputs } => {
            let out = (0..*outputs)
                .map(|k| {
                    let w = &consts.weights[k * inputs..(k + 1) * inputs];
                    consts.bias[k] + x.iter().zip(w).map(|(a, b)| a * b).sum::<f32>()
                })
                .collect();
            (out, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::{lower_weights, reference_logits};
    use crate::net::NetSpec;
    use crate::weights::Weights;

    fn samples(n: usize, len: usize, seed: u64) -> Vec<Vec<u8>> {
        let ds = crate::data::synthetic(n, len, 4, seed);
        (0..ds.n()).map(|i| ds.sample(i).to_vec()).collect()
    }

    #[test]
    fn float_forward_agrees_with_the_reference() {
        let spec = NetSpec::smart_start(784, 12);
        let low = lower_weights(&spec, &Weights::random(&spec, 3)).unwrap();
        for s in samples(3, 784, 1) {
            let mut x: Vec<f32> = s.iter().map(|&b| crate::data::input_value(b)).collect();
            for (l, k) in low.plan.layers.iter().zip(&low.layers) {
                x = forward_layer(&l.op, k, &x).0;
            }
            let r = reference_logits(&low, &s);
            for (a, b) in x.iter().zip(&r) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn ranges_cover_the_tensors_and_percentiles_shrink_them() {
        let spec = NetSpec::smart_start(784, 12);
        let low = lower_weights(&spec, &Weights::random(&spec, 3)).unwrap();
        let s = samples(40, 784, 2);
        let mm = calibrate(
            &low,
            s.iter().map(|v| v.as_slice()),
            CalibrationMethod::MinMax,
        )
        .unwrap();
        assert_eq!(mm.samples, 40);
        assert_eq!(mm.layers.len(), low.plan.layers.len());
        // Conv outputs follow a ReLU; GAP inherits its input's range.
        assert_eq!(mm.layers[0].0, 0.0);
        assert!(mm.layers[0].1 > 0.0);
        assert_eq!(mm.layers[2], mm.layers[1]);
        let pc = calibrate(
            &low,
            s.iter().map(|v| v.as_slice()),
            CalibrationMethod::Percentile(99.0),
        )
        .unwrap();
        for (a, b) in pc.layers.iter().zip(&mm.layers) {
            assert!(a.0 >= b.0 && a.1 <= b.1, "{a:?} within {b:?}");
        }
    }

    #[test]
    fn bad_calibration_input_is_an_error() {
        let spec = NetSpec::smart_start(784, 12);
        let low = lower_weights(&spec, &Weights::random(&spec, 3)).unwrap();
        let none: Vec<&[u8]> = Vec::new();
        assert!(calibrate(&low, none, CalibrationMethod::MinMax).is_err());
        let short = [0u8; 10];
        assert!(calibrate(&low, [&short[..]], CalibrationMethod::MinMax).is_err());
        assert!(calibrate(
            &low,
            [&[0u8; 784][..]],
            CalibrationMethod::Percentile(120.0)
        )
        .is_err());
    }
}
