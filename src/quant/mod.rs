//! int8 quantization with the arithmetic of TFLite's int8 reference kernels, which CMSIS-NN
//! implements bit for bit.
//!
//! - Weights: int8, symmetric, per output channel (zero point 0), from the BN-folded floats of
//!   [`crate::lower::Lowered`].
//! - Activations: int8, asymmetric, one scale and zero point per tensor, calibrated on training
//!   samples ([`calibrate`]). Every arena tensor of our networks follows a ReLU, so its range
//!   starts at 0 and its zero point is −128. The input byte `b` is the int8 value `b − 128` with
//!   scale 1/255 and zero point −128.
//! - Bias: int32 at scale `s_in · s_w[c]`.
//! - Requantization: `out = clamp(MultiplyByQuantizedMultiplier(acc, M0[c], shift[c]) + zp_out,
//!   act_min, act_max)` with `(M0, shift) = QuantizeMultiplier(s_in · s_w[c] / s_out)`.
//! - ReLU is the clamp's lower bound; pooling and global average pooling keep the input's scale
//!   and zero point and round as TFLite's int8 average pool does.
//!
//! This file holds the fixed-point primitives, exactly as TFLite defines them;
//! [`lower`] builds the quantized network, [`reference`] runs it on the host.

pub mod calibrate;
pub mod kernel;
pub mod lower;
pub mod reference;

pub use calibrate::{calibrate, CalibrationMethod, Ranges};
pub use lower::{quantize, QuantLayer, QuantLowered, QuantParams};
pub use reference::{reference_int8, Int8Output};

/// Post-training quantization: `spec` with `weights` lowered (BatchNorm folded), its activation
/// ranges calibrated on up to `n` samples of `calib` spread evenly over it, then quantized.
pub fn ptq(
    spec: &crate::net::NetSpec,
    weights: &crate::weights::Weights,
    calib: &crate::data::Dataset,
    n: usize,
    method: CalibrationMethod,
) -> anyhow::Result<QuantLowered> {
    use anyhow::Context;
    anyhow::ensure!(
        calib.len == spec.input_len * spec.input_channels,
        "calibration samples have {} bytes, the network reads {}",
        calib.len,
        spec.input_len * spec.input_channels
    );
    anyhow::ensure!(!calib.is_empty() && n > 0, "no calibration samples");
    let low = crate::lower::lower_weights(spec, weights)?;
    let take = n.min(calib.n());
    let idx = (0..take).map(|i| i * calib.n() / take);
    let ranges = calibrate(&low, idx.map(|i| calib.sample(i)), method)
        .context("calibrating the int8 activation ranges")?;
    quantize(&low, &ranges).context("quantizing to int8")
}

/// Metrics of the int8 network on `data`: predictions are the argmax of the int8 outputs (as
/// the kernels' `predict`), the loss is computed on the dequantized logits. Runs the int8 host
/// reference on every sample, on all cores.
pub fn evaluate_int8(q: &QuantLowered, data: &crate::data::Dataset) -> crate::metrics::Metrics {
    int8_metrics(&infer_int8(q, data), &data.labels, q.plan.classes)
}

/// The int8 host reference's outputs for every sample of `data`, in order, on all cores.
pub fn infer_int8(q: &QuantLowered, data: &crate::data::Dataset) -> Vec<Int8Output> {
    let n = data.n();
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .clamp(1, 8);
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                s.spawn(move || {
                    (start..(start + chunk).min(n))
                        .map(|i| reference_int8(q, data.sample(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("int8 evaluation thread"))
            .collect()
    })
}

/// The metrics of int8 outputs `outs` against `labels` (see [`evaluate_int8`]).
pub fn int8_metrics(outs: &[Int8Output], labels: &[u8], classes: usize) -> crate::metrics::Metrics {
    let pred: Vec<u8> = outs.iter().map(|o| o.predict() as u8).collect();
    let logits: Vec<f32> = outs.iter().flat_map(|o| o.logits.iter().copied()).collect();
    let mut m = crate::metrics::from_predictions(labels, &pred, classes);
    m.loss = Some(crate::metrics::cross_entropy(&logits, labels, classes));
    m
}

/// `frexp`: `x = m · 2^e` with `0.5 ≤ |m| < 1` (and `(0, 0)` for zero). For finite `x` only.
pub fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale into the normal range first.
        let (m, e) = frexp(x * f64::from_bits(0x4350_0000_0000_0000)); // 2^54
        return (m, e - 54);
    }
    let m = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (m, exp - 1022)
}

/// TFLite's `QuantizeMultiplier`: a real multiplier `m ≥ 0` as a Q31 fixed-point value
/// `M0 ∈ [2^30, 2^31)` and a power-of-two exponent, `m ≈ M0 · 2^(shift − 31)`.
///
/// `0 → (0, 0)`; when rounding the mantissa gives exactly 2^31 it is halved and the shift
/// raised; below 2^−32 (`shift < −31`) the multiplier flushes to `(0, 0)`.
/// Errors for a negative, NaN or infinite multiplier, or one whose shift exceeds 30.
pub fn quantize_multiplier(m: f64) -> Result<(i32, i32), QuantError> {
    if !m.is_finite() || m < 0.0 {
        return Err(QuantError::Multiplier(m));
    }
    if m == 0.0 {
        return Ok((0, 0));
    }
    let (q, mut shift) = frexp(m);
    let mut q_fixed = (q * (1u64 << 31) as f64).round() as i64;
    debug_assert!(q_fixed <= 1 << 31);
    if q_fixed == 1 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        return Ok((0, 0));
    }
    if shift > 30 {
        return Err(QuantError::Multiplier(m));
    }
    Ok((q_fixed as i32, shift))
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: `round(a · b / 2^31)`, the one overflow
/// (`INT32_MIN · INT32_MIN`) saturating to `INT32_MAX`.
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // Rust's `/` truncates toward zero, as C's does.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded half away from zero.
///
/// # Panics
/// If `exponent` is outside `0..=31`.
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    assert!((0..=31).contains(&exponent), "exponent {exponent}");
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// TFLite's `MultiplyByQuantizedMultiplier(x, M0, shift)`:
/// `RoundingDivideByPOT(SRDHM(x · 2^max(shift, 0), M0), max(−shift, 0))`.
///
/// The left shift wraps as two's complement (TFLite's is undefined on overflow);
/// [`lower::quantize`] bounds every accumulator so that it never does.
pub fn multiply_by_quantized_multiplier(x: i32, m0: i32, shift: i32) -> i32 {
    let left = shift.max(0);
    let right = (-shift).max(0);
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x.wrapping_shl(left as u32), m0),
        right,
    )
}

/// The requantization the generated kernels compute, equal to TFLite's whenever
/// `|acc| < 2^(30 − max(shift, 0))` (which [`lower::quantize`] guarantees for every layer):
///
/// - `SRDHM(acc · 2^l, M0) = (acc · 2^(l+1) · M0 + 2^31) >> 32` (ARM's `SMMULR`), because
///   truncating `(ab + 1 − 2^30) / 2^31` toward zero for `ab < 0` is `floor((ab + 2^30) / 2^31)`;
/// - `RoundingDivideByPOT(t, r) = (t + 2^(r−1) − [t < 0]) >> r` for `r ≥ 1`.
///
/// `relu`: the output is clamped at or above the zero point, where every negative `t` lands
/// anyway, so the `[t < 0]` correction is dropped (the kernels' ReLU layers do this).
pub fn requantize_fast(acc: i32, m0: i32, shift: i32, relu: bool) -> i32 {
    let (lsh, rnd, rsh) = fast_shifts(shift);
    let t = smmulr(acc.wrapping_shl(lsh as u32), m0);
    if rsh == 0 {
        t
    } else if relu {
        t.wrapping_add(rnd) >> rsh
    } else {
        t.wrapping_add(rnd).wrapping_add(t >> 31) >> rsh
    }
}

/// `(left shift, rounding constant, right shift)` of [`requantize_fast`] for a TFLite shift:
/// `(1 + max(shift, 0), 2^(r−1) or 0, r = max(−shift, 0))`.
pub fn fast_shifts(shift: i32) -> (i32, i32, i32) {
    let rsh = (-shift).max(0);
    let rnd = if rsh > 0 { 1 << (rsh - 1) } else { 0 };
    (1 + shift.max(0), rnd, rsh)
}

/// ARM `SMMULR`: the high word of `a · b`, rounded: `(a · b + 2^31) >> 32`.
pub fn smmulr(a: i32, b: i32) -> i32 {
    ((a as i64 * b as i64 + (1i64 << 31)) >> 32) as i32
}

/// TFLite's int8 average: `Σ / n` rounded half away from zero (C division after adding or
/// subtracting `n / 2`).
pub fn rounded_average(sum: i32, n: i32) -> i32 {
    if sum > 0 {
        (sum + n / 2) / n
    } else {
        (sum - n / 2) / n
    }
}

/// TFLite's int8 MEAN over the length when its output has other parameters than its input
/// (`reference_ops::QuantizedMeanOrSum`): the multiplier of `s_in / s_out`
/// ([`quantize_multiplier`]) with the division by the length folded in, exactly as TFLite
/// folds it (`M · 2^k / len`, truncated, and the shift lowered by `k = min(⌊log2 len⌋, 32,
/// 31 + shift)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MeanRequant {
    pub multiplier: i32,
    pub shift: i32,
}

impl MeanRequant {
    /// The constants for a mean of `len` values from `input` to `output` parameters.
    pub fn new(
        input: QuantParams,
        output: QuantParams,
        len: usize,
    ) -> Result<MeanRequant, QuantError> {
        if len == 0 {
            return Err(QuantError::Calibration("a mean over no values".into()));
        }
        let (m, shift) = quantize_multiplier(input.scale as f64 / output.scale as f64)?;
        let k = (63 - (len as u64).leading_zeros() as i32)
            .min(32)
            .min(31 + shift);
        let k = k.max(0);
        let multiplier = (((m as i64) << k) / len as i64) as i32;
        Ok(MeanRequant {
            multiplier,
            shift: shift - k,
        })
    }
}

/// TFLite's requantizing int8 mean of `len` int8 values summing to `sum`:
/// `clamp(MultiplyByQuantizedMultiplier(sum − zp_in · len) + zp_out, −128, 127)`.
pub fn mean_requantized(sum: i32, len: usize, m: MeanRequant, zp_in: i32, zp_out: i32) -> i32 {
    let shifted = sum.wrapping_sub(zp_in.wrapping_mul(len as i32));
    (multiply_by_quantized_multiplier(shifted, m.multiplier, m.shift) + zp_out).clamp(-128, 127)
}

/// Quantization failures: bad parameters, or a network the int8 kernels cannot represent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    #[error("requantization multiplier {0} is not a finite number in [0, 2^30)")]
    Multiplier(f64),
    #[error("{layer}: {msg}")]
    Layer { layer: String, msg: String },
    #[error("calibration: {0}")]
    Calibration(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frexp_matches_the_definition() {
        assert_eq!(frexp(1.0), (0.5, 1));
        assert_eq!(frexp(0.75), (0.75, 0));
        assert_eq!(frexp(3.0), (0.75, 2));
        assert_eq!(frexp(0.1), (0.8, -3));
        let tiny = f64::from_bits(1); // 2^-1074
        assert_eq!(frexp(tiny), (0.5, -1073));
        assert_eq!(frexp(0.0), (0.0, 0));
    }

    #[test]
    fn quantize_multiplier_hand_computed() {
        // 0 → (0, 0).
        assert_eq!(quantize_multiplier(0.0).unwrap(), (0, 0));
        // 0.5 = 0.5 · 2^0 → q = 2^30, shift 0.
        assert_eq!(quantize_multiplier(0.5).unwrap(), (1 << 30, 0));
        // 1.0 = 0.5 · 2^1.
        assert_eq!(quantize_multiplier(1.0).unwrap(), (1 << 30, 1));
        // 0.75 · 2^-3 = 0.09375: q = 0.75 · 2^31 = 1610612736.
        assert_eq!(quantize_multiplier(0.09375).unwrap(), (1_610_612_736, -3));
        // 0.1 = 0.8 · 2^-3: 0.8 · 2^31 = 1717986918.4 → 1717986918.
        assert_eq!(quantize_multiplier(0.1).unwrap(), (1_717_986_918, -3));
        // A mantissa that rounds to exactly 2^31: (1 − 2^-33) · 2^-2 → q_fixed = 2^31, halved,
        // shift raised: (2^30, −1), i.e. 0.25.
        let m = (1.0 - 2f64.powi(-33)) * 0.25;
        assert_eq!(frexp(m).1, -2);
        assert_eq!(quantize_multiplier(m).unwrap(), (1 << 30, -1));
        // shift < −31 flushes to zero: 2^-33 = 0.5 · 2^-32.
        assert_eq!(quantize_multiplier(2f64.powi(-33)).unwrap(), (0, 0));
        // shift = −31 is kept: 2^-32 = 0.5 · 2^-31.
        assert_eq!(quantize_multiplier(2f64.powi(-32)).unwrap(), (1 << 30, -31));
        // Negative or non-finite multipliers are errors, not panics.
        assert!(quantize_multiplier(-0.5).is_err());
        assert!(quantize_multiplier(f64::NAN).is_err());
        assert!(quantize_multiplier(f64::INFINITY).is_err());
    }

    #[test]
    fn srdhm_hand_computed() {
        // INT32_MIN × INT32_MIN saturates.
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        // INT32_MIN × INT32_MAX = −2^62 + 2^31 → /2^31 = −2^31 + 1, exact.
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MAX),
            i32::MIN + 1
        );
        // 3 · 2^30 / 2^31 = 1.5 → 2; −1.5 → −1: gemmlowp's nudge rounds halves up, and
        // −1.5 − (0.5 − 2^−31) truncates to −1.
        assert_eq!(saturating_rounding_doubling_high_mul(3, 1 << 30), 2);
        assert_eq!(saturating_rounding_doubling_high_mul(-3, 1 << 30), -1);
        assert_eq!(saturating_rounding_doubling_high_mul(-3, 1 << 29), -1); // −0.75 → −1
                                                                            // 1 · 2^30 / 2^31 = 0.5 → 1; −0.5 → 0 (gemmlowp's nudge 1 − 2^30 truncated).
        assert_eq!(saturating_rounding_doubling_high_mul(1, 1 << 30), 1);
        assert_eq!(saturating_rounding_doubling_high_mul(-1, 1 << 30), 0);
        // 100 · 0.75 = 75.
        assert_eq!(
            saturating_rounding_doubling_high_mul(100, 1_610_612_736),
            75
        );
    }

    #[test]
    fn rounding_divide_by_pot_hand_computed() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3); // 2.5 → 3
        assert_eq!(rounding_divide_by_pot(-5, 1), -3); // −2.5 → −3
        assert_eq!(rounding_divide_by_pot(7, 2), 2); // 1.75 → 2
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(rounding_divide_by_pot(6, 2), 2); // 1.5 → 2
        assert_eq!(rounding_divide_by_pot(-6, 2), -2); // −1.5 → −2
        assert_eq!(rounding_divide_by_pot(-5, 2), -1); // −1.25 → −1
        assert_eq!(rounding_divide_by_pot(42, 0), 42);
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
    }

    #[test]
    fn multiply_by_quantized_multiplier_hand_computed() {
        let (m0, s) = quantize_multiplier(0.1).unwrap();
        // 1000 · 0.1 = 100; 25 · 0.1 = 2.5 → 3; −25 · 0.1 = −2.5 → −3 (half away from zero).
        assert_eq!(multiply_by_quantized_multiplier(1000, m0, s), 100);
        assert_eq!(multiply_by_quantized_multiplier(25, m0, s), 3);
        assert_eq!(multiply_by_quantized_multiplier(-25, m0, s), -3);
        assert_eq!(multiply_by_quantized_multiplier(-15, m0, s), -2); // −1.5 → −2
                                                                      // Multiplier 0 gives 0.
        assert_eq!(multiply_by_quantized_multiplier(123_456, 0, 0), 0);
        // A left shift: 3 · 1.0 = 3, 3 · 2.5 = 7.5 → 8 and −7.5 → −7 (rounded in SRDHM,
        // where halves go up; RoundingDivideByPOT does nothing at shift ≥ 0).
        let (m0, s) = quantize_multiplier(1.0).unwrap();
        assert_eq!(multiply_by_quantized_multiplier(3, m0, s), 3);
        let (m0, s) = quantize_multiplier(2.5).unwrap();
        assert_eq!(s, 2);
        assert_eq!(multiply_by_quantized_multiplier(3, m0, s), 8);
        assert_eq!(multiply_by_quantized_multiplier(-3, m0, s), -7);
    }

    #[test]
    fn rounded_average_is_tflite() {
        assert_eq!(rounded_average(5, 2), 3);
        assert_eq!(rounded_average(-5, 2), -3);
        assert_eq!(rounded_average(4, 3), 1);
        assert_eq!(rounded_average(-4, 3), -1);
        assert_eq!(rounded_average(0, 3), 0);
    }

    proptest! {
        /// The kernels' requantization equals TFLite's within the accumulator bound.
        #[test]
        fn fast_requantization_equals_tflite(
            m in 1e-6f64..3.9,
            acc in -(1i32 << 28)..(1i32 << 28),
            zp in -128i32..128,
        ) {
            let (m0, shift) = quantize_multiplier(m).unwrap();
            prop_assume!(acc.unsigned_abs() < 1u32 << (30 - shift.max(0)));
            let exact = multiply_by_quantized_multiplier(acc, m0, shift);
            prop_assert_eq!(requantize_fast(acc, m0, shift, false), exact);
            // With a ReLU clamp at the zero point the shortcut lands on the same byte.
            let clamp = |v: i32| (v + zp).clamp(zp, 127);
            prop_assert_eq!(clamp(requantize_fast(acc, m0, shift, true)), clamp(exact));
        }
    }
}
