//! The int8 host reference: exact integer arithmetic, TFLite's int8 kernels layer by layer, in
//! the int8 arena at the planned offsets. The generated int8 kernels must match it bit for bit.
//!
//! Per layer (`x` int8 input with zero point `zp_in`, `w` int8 weights, `b` int32 bias):
//! - conv: `acc = b[c] + Σ (x − zp_in) · w` over the window's taps inside the input (padding is
//!   the zero point, contributing nothing), `y = clamp(MBQM(acc, M0[c], shift[c]) + zp_out,
//!   act_min, 127)`; max pooling takes the largest `y` of its windows, average pooling
//!   `clamp(rounded_average(Σ y, size), −128, 127)`;
//! - global average pooling: `clamp(rounded_average(Σ_t x, len), −128, 127)` per channel, or,
//!   for an imported TFLite MEAN that requantizes, [`super::mean_requantized`];
//! - dense: as conv without the ReLU; the int8 outputs are the prediction's scores and the
//!   logits are `scale · (q − zp)` in f32.

use super::kernel::lookup_table_int8;
use super::lower::{QuantLayer, QuantLowered, INPUT_PARAMS};
use super::{mean_requantized, multiply_by_quantized_multiplier, rounded_average};
use crate::net::plan::{embed_rows, ConvOp, Layer, Op};
use crate::net::PoolKind;

/// What the int8 network computes for one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Output {
    /// The dense layer's int8 outputs.
    pub q: Vec<i8>,
    /// `q` dequantized: `scale · (q − zero_point)`, computed in f32 as the kernels do.
    pub logits: Vec<f32>,
}

impl Int8Output {
    /// The predicted class: the first largest int8 output (the kernels' `predict`).
    pub fn predict(&self) -> usize {
        crate::metrics::argmax(&self.q)
    }
}

/// Run the int8 network on one raw-byte sample.
///
/// # Panics
/// If `input` does not hold `input_len × input_channels` bytes.
pub fn reference_int8(q: &QuantLowered, input: &[u8]) -> Int8Output {
    let plan = &q.plan;
    assert_eq!(
        input.len(),
        plan.input_len * plan.input_channels,
        "input length does not match the network"
    );
    let mut arena = vec![0i8; q.arena.bytes];
    let mut out = Vec::new();
    for (i, (layer, ql)) in plan.layers.iter().zip(&q.layers).enumerate() {
        let n_in = layer.input.elements();
        let src: Vec<i8> = match q.arena.input[i] {
            None => input.iter().map(|&b| (b as i32 - 128) as i8).collect(),
            Some(off) => arena[off..off + n_in].to_vec(),
        };
        let dst = run_layer(layer, ql, &src);
        match q.arena.output[i] {
            Some(off) => arena[off..off + dst.len()].copy_from_slice(&dst),
            None => out = dst,
        }
    }
    let p = q.output_params();
    let logits = out
        .iter()
        .map(|&v| (v as i32 - p.zero_point) as f32 * p.scale)
        .collect();
    Int8Output { q: out, logits }
}

/// One int8 layer on its int8 input (for the first layer: input bytes − 128).
pub fn run_layer(layer: &Layer, q: &QuantLayer, x: &[i8]) -> Vec<i8> {
    let zp_in = q.input.zero_point;
    let requant = |acc: i32, c: usize| -> i8 {
        (multiply_by_quantized_multiplier(acc, q.multiplier[c], q.shift[c]) + q.output.zero_point)
            .clamp(q.act_min, q.act_max) as i8
    };
    match &layer.op {
        // x is the input bytes − 128; each selects its row of the int8 table, and the padding
        // is real 0, the table's zero point.
        Op::Embed {
            dim,
            pad_left,
            pad_right,
            ..
        } => {
            let bytes: Vec<u8> = x.iter().map(|&v| (v as i32 + 128) as u8).collect();
            let pad = q.output.zero_point as i8;
            embed_rows(&bytes, &q.weights, *dim, (*pad_left, *pad_right), pad)
        }
        Op::Conv(c) => {
            let row = c.kernel * c.in_channels;
            pooled_conv(c, q, |f, start| {
                let w = &q.weights[f * row..(f + 1) * row];
                let mut acc = q.bias[f];
                for j in 0..c.kernel {
                    let t = start + j as isize;
                    if t < 0 || t as usize >= c.in_len {
                        continue;
                    }
                    let t = t as usize;
                    for ch in 0..c.in_channels {
                        acc += (x[t * c.in_channels + ch] as i32 - zp_in)
                            * w[j * c.in_channels + ch] as i32;
                    }
                }
                acc
            })
        }
        // x is the input bytes − 128; each tap inside the input adds its byte's entry, padding
        // (the table's zero point) adds nothing.
        Op::LutConv(c) => {
            let lut = lookup_table_int8(c, q);
            let rows = crate::net::EMBEDDING_ROWS;
            pooled_conv(c, q, |f, start| {
                let mut acc = q.bias[f];
                for j in 0..c.kernel {
                    let t = start + j as isize;
                    if t < 0 || t as usize >= c.in_len {
                        continue;
                    }
                    let b = (x[t as usize] as i32 + 128) as usize;
                    acc += lut[(f * c.kernel + j) * rows + b];
                }
                acc
            })
        }
        Op::GlobalAvgPool { len, channels } => (0..*channels)
            .map(|ch| {
                let s: i32 = (0..*len).map(|t| x[t * channels + ch] as i32).sum();
                match q.mean {
                    Some(m) => mean_requantized(s, *len, m, zp_in, q.output.zero_point) as i8,
                    None => rounded_average(s, *len as i32).clamp(-128, 127) as i8,
                }
            })
            .collect(),
        Op::Dense { inputs, outputs } => (0..*outputs)
            .map(|k| {
                let w = &q.weights[k * inputs..(k + 1) * inputs];
                let acc = q.bias[k]
                    + x.iter()
                        .zip(w)
                        .map(|(&a, &b)| (a as i32 - zp_in) * b as i32)
                        .sum::<i32>();
                requant(acc, k)
            })
            .collect(),
    }
}

/// A conv's int8 outputs from its accumulators: `acc(f, start)` is filter `f`'s accumulator
/// (bias included) for the window starting at input position `start` (negative in the left
/// padding); requantization with the fused ReLU, then max or average pooling.
fn pooled_conv(c: &ConvOp, q: &QuantLayer, acc: impl Fn(usize, isize) -> i32) -> Vec<i8> {
    let requant = |acc: i32, c: usize| -> i32 {
        (multiply_by_quantized_multiplier(acc, q.multiplier[c], q.shift[c]) + q.output.zero_point)
            .clamp(q.act_min, q.act_max)
    };
    let (pool, kind) = match c.pool {
        None => (1, PoolKind::Max),
        Some((k, s)) => (s, k),
    };
    let mut y = vec![0i8; c.out_len * c.out_channels];
    for p in 0..c.out_len {
        for f in 0..c.out_channels {
            let (mut best, mut sum) = (i32::MIN, 0i32);
            for i in 0..pool {
                let start = ((p * pool + i) * c.stride) as isize - c.pad_left as isize;
                let v = requant(acc(f, start), f);
                best = best.max(v);
                sum += v;
            }
            y[p * c.out_channels + f] = match kind {
                PoolKind::Max => best as i8,
                PoolKind::Avg => rounded_average(sum, pool as i32).clamp(-128, 127) as i8,
            };
        }
    }
    y
}

/// The int8 input of the first layer for raw bytes.
pub fn input_int8(bytes: &[u8]) -> Vec<i8> {
    debug_assert_eq!(INPUT_PARAMS.zero_point, -128);
    bytes.iter().map(|&b| (b as i32 - 128) as i8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::lower_weights;
    use crate::net::{Block, Head, NetSpec, Padding, PoolKind, SearchSpace};
    use crate::quant::{calibrate, quantize, CalibrationMethod};
    use crate::weights::Weights;

    /// The float simulation of one layer with fake-quantized tensors: int8 input and weights
    /// dequantized, bias at `s_in · s_w`, float arithmetic (f64), output quantized once.
    fn fake_quant_layer(layer: &Layer, q: &QuantLayer, x: &[i8]) -> Vec<i32> {
        let xin: Vec<f64> = x.iter().map(|&v| q.input.dequantize(v as i32)).collect();
        let wf = |c: usize, i: usize| q.weights[i] as f64 * q.weight_scales[c] as f64;
        let bf = |c: usize| q.bias[c] as f64 * q.input.scale as f64 * q.weight_scales[c] as f64;
        match &layer.op {
            Op::Conv(c) => {
                let row = c.kernel * c.in_channels;
                let pool = c.pool.map_or(1, |p| p.1);
                let mut out = Vec::new();
                for p in 0..c.out_len {
                    for f in 0..c.out_channels {
                        let vals: Vec<f64> = (0..pool)
                            .map(|i| {
                                let start =
                                    ((p * pool + i) * c.stride) as isize - c.pad_left as isize;
                                let mut acc = bf(f);
                                for j in 0..c.kernel {
                                    let t = start + j as isize;
                                    if t >= 0 && (t as usize) < c.in_len {
                                        for ch in 0..c.in_channels {
                                            acc += xin[t as usize * c.in_channels + ch]
                                                * wf(f, f * row + j * c.in_channels + ch);
                                        }
                                    }
                                }
                                acc.max(0.0)
                            })
                            .collect();
                        let v = match c.pool {
                            Some((PoolKind::Avg, s)) => vals.iter().sum::<f64>() / s as f64,
                            _ => vals.iter().cloned().fold(f64::MIN, f64::max),
                        };
                        out.push(q.output.quantize(v));
                    }
                }
                out
            }
            Op::GlobalAvgPool { len, channels } => (0..*channels)
                .map(|ch| {
                    let s: f64 = (0..*len).map(|t| xin[t * channels + ch]).sum();
                    q.output.quantize(s / *len as f64)
                })
                .collect(),
            Op::Dense { inputs, outputs } => (0..*outputs)
                .map(|k| {
                    let acc = bf(k)
                        + (0..*inputs)
                            .map(|i| xin[i] * wf(k, k * inputs + i))
                            .sum::<f64>();
                    q.output.quantize(acc)
                })
                .collect(),
            // A lookup: exact, nothing to simulate.
            Op::Embed { .. } => run_layer(layer, q, x).iter().map(|&v| v as i32).collect(),
            Op::LutConv(_) => unreachable!("the specs of these tests read byte/255"),
        }
    }

    fn mixed_spec() -> NetSpec {
        let mut spec = NetSpec {
            input_len: 300,
            input_channels: 1,
            input: Default::default(),
            classes: 5,
            blocks: vec![
                Block::new(6, 5, 2, Padding::Same),
                Block::new(8, 4, 1, Padding::Valid).with_pool(PoolKind::Max, 2),
                Block::new(7, 3, 3, Padding::Same).with_pool(PoolKind::Avg, 3),
                Block::new(5, 2, 1, Padding::Valid),
            ],
            head: Head::GapDense,
        };
        spec.correct(&SearchSpace::default());
        spec
    }

    #[test]
    fn every_int8_layer_is_within_one_lsb_of_fake_quantization() {
        for (spec, seed) in [(NetSpec::smart_start(784, 12), 7), (mixed_spec(), 8)] {
            let low = lower_weights(&spec, &Weights::random(&spec, seed)).unwrap();
            let ds = crate::data::synthetic(24, spec.input_len, spec.classes, seed);
            let r = calibrate(
                &low,
                (0..ds.n()).map(|i| ds.sample(i)),
                CalibrationMethod::MinMax,
            )
            .unwrap();
            let q = quantize(&low, &r).unwrap();
            let mut distinct = std::collections::BTreeSet::new();
            for s in 0..6 {
                let mut x = input_int8(ds.sample(s));
                for (layer, ql) in q.plan.layers.iter().zip(&q.layers) {
                    let y = run_layer(layer, ql, &x);
                    let f = fake_quant_layer(layer, ql, &x);
                    assert_eq!(y.len(), f.len());
                    for (a, b) in y.iter().zip(&f) {
                        let d = (*a as i32 - b).abs();
                        assert!(d <= 1, "{}: int8 {a} vs fake-quant {b}", layer.name);
                        distinct.insert(*a);
                    }
                    x = y;
                }
            }
            // The comparison is not vacuous: the layers produce values across the int8 range.
            assert!(
                distinct.len() > 64,
                "only {} distinct outputs",
                distinct.len()
            );
        }
    }

    #[test]
    fn int8_logits_follow_the_float_network() {
        let spec = mixed_spec();
        let low = lower_weights(&spec, &Weights::random(&spec, 11)).unwrap();
        let ds = crate::data::synthetic(40, spec.input_len, spec.classes, 3);
        let r = calibrate(
            &low,
            (0..ds.n()).map(|i| ds.sample(i)),
            CalibrationMethod::MinMax,
        )
        .unwrap();
        let q = quantize(&low, &r).unwrap();
        let (lo, hi) = *r.layers.last().unwrap();
        for i in 0..ds.n() {
            let f = crate::lower::reference_logits(&low, ds.sample(i));
            let o = reference_int8(&q, ds.sample(i));
            assert_eq!(o.logits.len(), f.len());
            for (a, b) in o.logits.iter().zip(&f) {
                // A few output steps of the logits' range.
                assert!((a - b).abs() <= 0.05 * (hi - lo), "{a} vs {b}");
            }
            let best = o.predict();
            assert!(o.q.iter().all(|&v| v <= o.q[best]));
        }
    }

    /// int8 against float on real ISCX samples, after a short real training: the two must
    /// agree on nearly every prediction and their accuracies stay within a few points.
    #[test]
    #[cfg(feature = "train")]
    fn int8_accuracy_tracks_float_on_real_data() {
        use crate::data::{load_dir, shared_data_dir, LoadOptions};
        let dir = shared_data_dir().join("iscx-vpn2016-12class-sessionl7");
        assert!(
            dir.exists(),
            "the shared ISCX dataset is missing at {} (set NAS_SHARED_DATA)",
            dir.display()
        );
        let splits = load_dir(
            &dir,
            &LoadOptions {
                limit_per_class: Some(60),
                ..LoadOptions::default()
            },
        )
        .unwrap();
        let test = splits.test.stratified_head(20);
        let spec = NetSpec::smart_start(splits.train.len, splits.train.classes);
        let cfg = crate::train::TrainConfig {
            epochs: 4,
            batch_size: 64,
            bn_recalibration: 256,
            ..crate::train::TrainConfig::proxy()
        };
        let init = crate::train::initial_weights(&spec, 1);
        let out = crate::train::train(&spec, &init, &splits.train, &test, &cfg, 1, &mut |_, _| {})
            .unwrap();
        let low = lower_weights(&spec, &out.weights).unwrap();
        let r = calibrate(
            &low,
            (0..splits.train.n()).map(|i| splits.train.sample(i)),
            CalibrationMethod::MinMax,
        )
        .unwrap();
        let q = quantize(&low, &r).unwrap();
        let (mut agree, mut ok_f, mut ok_q) = (0, 0, 0);
        for i in 0..test.n() {
            let pf = crate::metrics::argmax(&crate::lower::reference_logits(&low, test.sample(i)));
            let pq = reference_int8(&q, test.sample(i)).predict();
            agree += usize::from(pf == pq);
            ok_f += usize::from(pf == test.labels[i] as usize);
            ok_q += usize::from(pq == test.labels[i] as usize);
        }
        let n = test.n();
        eprintln!("float {ok_f}/{n}, int8 {ok_q}/{n}, agreement {agree}/{n}");
        assert!(
            ok_f * 2 > n / 6,
            "the float model did not learn: {ok_f}/{n}"
        );
        assert!(
            agree * 100 >= n * 90,
            "int8 agrees on {agree}/{n} predictions"
        );
        assert!(
            ok_f.abs_diff(ok_q) * 100 <= n * 5,
            "float {ok_f} vs int8 {ok_q} of {n}"
        );
    }
}
