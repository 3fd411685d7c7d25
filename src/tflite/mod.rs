//! TFLite in: a `.tflite` model (TensorFlow's converter, Edge Impulse) → [`NetSpec`] +
//! [`Weights`], and for a full-integer quantized model the exact int8 network its own
//! scales, zero points and per-channel weights define ([`QuantLowered`], no re-quantization),
//! which the int8 host reference and kernels compute bit for bit as TFLite's reference kernels
//! do.
//!
//! - `read`: the flatbuffer through the official schema's generated reader, every index checked.
//! - `walk`: the operators as a chain of the layers the kernels compute (see [`SUPPORTED`]).
//! - here: the walked layers → spec, float weights, int8 network, and the input contract.
//!
//! The input contract: the kernels read bytes. The model's input is `byte × input_scale`
//! (default 1/255, what `nas` trains on; `--input-scale` otherwise). A float model gets the
//! factor folded into its first convolution; an int8 model must map every byte `b` to the
//! int8 value `b − 128` exactly as TFLite would quantize `b × input_scale` with the input's
//! own scale and zero point (which a converter calibrated on `byte / 255` samples gives), else
//! the import is an error saying which byte lands where.

mod read;
mod walk;

use crate::net::{Block, Head, InputStage, NetSpec};
use crate::quant::{MeanRequant, QuantLayer, QuantLowered, QuantParams};
use crate::weights::{Param, Weights};
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;
use walk::{Consts, Walked};

/// What the importer accepts, for error messages and documentation.
pub const SUPPORTED: &str = "CONV_2D over a sequence (height or width 1, as Keras's Conv1D \
converts) with a fused ReLU (or a ReLU6 that never clamps), MAX_POOL_2D and AVERAGE_POOL_2D \
(window = stride, 'valid'), MEAN over the length, FULLY_CONNECTED, SOFTMAX at the end \
(dropped), EXPAND_DIMS / RESHAPE / SQUEEZE of unit axes, QUANTIZE of the float input and \
DEQUANTIZE of the output; int8 (full-integer quantization, per-channel or per-tensor weights) \
or float32";

/// Largest file the importer reads.
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// How bytes map to the model's input.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The model's input is `byte × input_scale` (`None`: 1/255).
    pub input_scale: Option<f32>,
}

/// An imported model.
#[derive(Debug, Clone)]
pub struct Imported {
    pub spec: NetSpec,
    /// Float weights: a float model's own, or an int8 model's constants dequantized (its float
    /// view, for `--dtype f32`; the int8 network is [`Imported::int8`]).
    pub weights: Weights,
    /// An int8 model as the file quantizes it.
    pub int8: Option<QuantLowered>,
    /// The model's input is `byte × input_scale`.
    pub input_scale: f32,
    /// The graph input's shape and type, e.g. `[1, 784, 1]` int8.
    pub input_dims: Vec<usize>,
    pub input_type: String,
    /// The model's own description (TFLite writes its converter's name there).
    pub producer: String,
    /// What was folded, dropped or assumed, one sentence each.
    pub notes: Vec<String>,
}

/// Whether `bytes` look like a TFLite flatbuffer (its file identifier).
pub fn is_tflite(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[4..8] == read::IDENTIFIER
}

/// Import a `.tflite` file.
pub fn import_file(path: &Path, opts: &ImportOptions) -> Result<Imported> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    ensure!(
        len <= MAX_FILE_BYTES,
        "{}: {len} bytes is more than the {MAX_FILE_BYTES} an importable model may have",
        path.display()
    );
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    import_bytes(&bytes, opts).with_context(|| format!("cannot import {}", path.display()))
}

/// Import a TFLite model from its bytes.
pub fn import_bytes(bytes: &[u8], opts: &ImportOptions) -> Result<Imported> {
    let input_scale = opts.input_scale.unwrap_or(crate::data::INPUT_SCALE);
    ensure!(
        input_scale.is_finite() && input_scale > 0.0,
        "the input scale must be a positive number, got {input_scale}"
    );
    let g = read::Graph::parse(bytes)?;
    let w = walk::walk(&g)?;
    let spec = spec_of(&w)?;
    let mut notes = w.notes.clone();
    let (weights, int8) = if w.input_q.is_some() {
        let q = int8_network(&spec, &w, input_scale)?;
        notes.push(
            "int8: the model's own scales, zero points and per-channel weights are kept as they \
             are; --dtype f32 runs its dequantized weights"
                .to_string(),
        );
        (dequantized(&spec, &q)?, Some(q))
    } else {
        (float_weights(&spec, &w, input_scale, &mut notes)?, None)
    };
    weights
        .check(&spec)
        .context("internal: imported weights do not match the spec")?;
    Ok(Imported {
        spec,
        weights,
        int8,
        input_scale,
        input_dims: w.input.shape.clone(),
        input_type: read::type_name(w.input.dtype).to_lowercase(),
        producer: g.description.clone(),
        notes,
    })
}

fn spec_of(w: &Walked) -> Result<NetSpec> {
    let blocks = w
        .convs
        .iter()
        .map(|c| {
            let b = Block {
                batch_norm: false,
                ..Block::new(c.filters, c.kernel, c.stride, c.padding)
            };
            match c.pool {
                Some((kind, size)) => b.with_pool(kind, size),
                None => b,
            }
        })
        .collect();
    let spec = NetSpec {
        input_len: w.input_len,
        input_channels: w.input_channels,
        input: InputStage::Scale,
        classes: w.classes,
        blocks,
        head: Head::GapDense,
    };
    spec.validate()
        .context("the model's layers do not form a network the kernels can compute")?;
    Ok(spec)
}

/// `[out][kernel][in]` → `[out][in][kernel]` (the weights files' conv layout).
fn conv_to_oik(w: &[f32], out: usize, kernel: usize, inp: usize) -> Vec<f32> {
    let mut v = vec![0.0; w.len()];
    for o in 0..out {
        for k in 0..kernel {
            for i in 0..inp {
                v[(o * inp + i) * kernel + k] = w[(o * kernel + k) * inp + i];
            }
        }
    }
    v
}

/// `[classes][in]` → `[in][classes]`.
fn dense_to_ic(w: &[f32], classes: usize, inp: usize) -> Vec<f32> {
    let mut v = vec![0.0; w.len()];
    for c in 0..classes {
        for i in 0..inp {
            v[i * classes + c] = w[c * inp + i];
        }
    }
    v
}

/// A float model's weights, the input scale folded into the first convolution (the kernels
/// feed it `byte / 255`).
fn float_weights(
    spec: &NetSpec,
    w: &Walked,
    input_scale: f32,
    notes: &mut Vec<String>,
) -> Result<Weights> {
    let mut out = Weights::default();
    let mut ch = spec.input_channels;
    let fold = input_scale as f64 / crate::data::INPUT_SCALE as f64;
    for (i, (c, b)) in w.convs.iter().zip(&spec.blocks).enumerate() {
        let Consts::F32 { w: cw, b: cb } = &c.consts else {
            bail!("internal: int8 constants in a float model");
        };
        let mut cw = conv_to_oik(cw, b.filters, b.kernel, ch);
        if i == 0 && fold != 1.0 {
            cw.iter_mut().for_each(|v| *v = (*v as f64 * fold) as f32);
            notes.push(format!(
                "the input is byte × {input_scale}: folded into the first convolution's weights \
                 (× {fold}), the kernels reading byte / 255"
            ));
        }
        out.insert(Param::ConvWeight(i), vec![b.filters, ch, b.kernel], cw);
        out.insert(Param::ConvBias(i), vec![b.filters], cb.clone());
        ch = b.filters;
    }
    let Consts::F32 { w: dw, b: db } = &w.dense else {
        bail!("internal: int8 constants in a float model");
    };
    out.insert(
        Param::DenseWeight,
        vec![ch, spec.classes],
        dense_to_ic(dw, spec.classes, ch),
    );
    out.insert(Param::DenseBias, vec![spec.classes], db.clone());
    Ok(out)
}

fn params((scale, zero_point): (f32, i32)) -> QuantParams {
    QuantParams { scale, zero_point }
}

/// Check that the int8 input maps byte `b` to `b − 128`, as TFLite's QUANTIZE would map the
/// float `b × input_scale` (`round(x / scale) + zero_point`, in f32, clamped).
fn check_input_mapping(input: QuantParams, input_scale: f32) -> Result<()> {
    for b in 0..=255u32 {
        let x = b as f32 * input_scale;
        let q = ((x / input.scale).round() + input.zero_point as f32).clamp(-128.0, 127.0) as i32;
        if q != b as i32 - 128 {
            bail!(
                "the model's int8 input (scale {}, zero point {}) takes byte {b} × {input_scale} \
                 to {q}, but the kernels feed byte b as b − 128 ({}): the model was quantized \
                 for another input range. Give --input-scale with what one byte is in the \
                 model's input units (1 for raw byte values), or convert with representative \
                 samples of byte / 255",
                input.scale,
                input.zero_point,
                b as i32 - 128
            );
        }
    }
    Ok(())
}

/// One conv or dense layer in int8, from the file's constants.
fn int8_layer(c: &Consts, relu: bool, name: &str) -> Result<QuantLayer> {
    let Consts::Int8 {
        w,
        scales,
        b,
        input,
        output,
    } = c
    else {
        bail!("internal: float constants in an int8 model");
    };
    let (input, output) = (params(*input), params(*output));
    let channels = b.len();
    let row = w.len() / channels.max(1);
    ensure!(
        row * channels == w.len() && scales.len() == channels,
        "internal: {name} constants do not divide into {channels} channels"
    );
    let mut q = QuantLayer {
        weights: w.clone(),
        bias: b.clone(),
        weight_scales: scales.clone(),
        ..QuantLayer::accumulating(input, output, relu, channels)
    };
    if relu {
        ensure!(
            output.zero_point == -128,
            "{name}: the ReLU output has zero point {} (the kernels store a ReLU's int8 output \
             from −128, as TFLite's converter quantizes [0, max])",
            output.zero_point
        );
    }
    for ch in 0..channels {
        // TFLite's PopulateConvolutionQuantizationParams / GetQuantizedConvolutionMultipler:
        // s_in · s_w / s_out in double, then QuantizeMultiplier.
        let m = input.scale as f64 * scales[ch] as f64 / output.scale as f64;
        let (m0, shift) = crate::quant::quantize_multiplier(m)
            .with_context(|| format!("{name}, channel {ch}"))?;
        let bound = crate::quant::lower::accumulator_bound(
            &w[ch * row..(ch + 1) * row],
            b[ch],
            input,
            shift,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "{name}, channel {ch}: {e}; TFLite's 32-bit arithmetic is not reproduced for \
                 this channel (its bias or weights are too large for its multiplier {m:.3e})"
            )
        })?;
        q.multiplier.push(m0);
        q.shift.push(shift);
        q.acc_bound.push(bound);
    }
    Ok(q)
}

/// The int8 network the file defines.
fn int8_network(spec: &NetSpec, w: &Walked, input_scale: f32) -> Result<QuantLowered> {
    let input = params(w.input_q.expect("an int8 model"));
    check_input_mapping(input, input_scale)?;
    let plan = crate::net::plan::lower(spec)?;
    let mut layers = Vec::with_capacity(plan.layers.len());
    for (i, c) in w.convs.iter().enumerate() {
        let q = int8_layer(&c.consts, true, &format!("conv {i}"))?;
        let expected_in = layers.last().map_or(input, |l: &QuantLayer| l.output);
        ensure!(
            q.input == expected_in,
            "conv {i}: its input is quantized {:?}, the previous layer's output {:?}",
            q.input,
            expected_in
        );
        layers.push(q);
    }
    let last = layers.last().expect("at least one conv").output;
    let mean_out = params(w.mean_out.expect("an int8 MEAN"));
    let len = match plan.layers.get(w.convs.len()).map(|l| &l.op) {
        Some(crate::net::plan::Op::GlobalAvgPool { len, .. }) => *len,
        _ => bail!("internal: the plan has no global pooling after its convolutions"),
    };
    let mean = MeanRequant::new(last, mean_out, len).context("the MEAN's requantization")?;
    // The kernels sum the bytes x + 128 and add −(128 + zp_in) · len, then requantize as a
    // conv does: the sums must be within that requantization's bound.
    let acc_max = 255 * len as i64;
    let (lsh, _, _) = crate::quant::fast_shifts(mean.shift);
    ensure!(
        acc_max < 1i64 << (31 - lsh),
        "the MEAN's sums (up to {acc_max}) overflow the kernels' requantization (shift {})",
        mean.shift
    );
    layers.push(QuantLayer::global_pool(last, mean_out, Some(mean)));
    let dense = int8_layer(&w.dense, false, "the dense head")?;
    ensure!(
        dense.input == mean_out,
        "the dense head's input is quantized {:?}, the MEAN's output {:?}",
        dense.input,
        mean_out
    );
    layers.push(dense);
    ensure!(
        layers.len() == plan.layers.len(),
        "internal: {} int8 layers for a plan of {}",
        layers.len(),
        plan.layers.len()
    );
    Ok(QuantLowered {
        arena: crate::net::plan::int8_arena(&plan),
        plan,
        layers,
    })
}

/// An int8 network's float view: weights `q · s_w`, biases `b · s_in · s_w`.
fn dequantized(spec: &NetSpec, q: &QuantLowered) -> Result<Weights> {
    let mut out = Weights::default();
    let mut ch = spec.input_channels;
    let deq = |l: &QuantLayer| -> (Vec<f32>, Vec<f32>) {
        let row = l.weights.len() / l.bias.len().max(1);
        let w = l
            .weights
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f32 * l.weight_scales[i / row])
            .collect();
        let b = l
            .bias
            .iter()
            .zip(&l.weight_scales)
            .map(|(&b, &s)| (b as f64 * l.input.scale as f64 * s as f64) as f32)
            .collect();
        (w, b)
    };
    for (i, b) in spec.blocks.iter().enumerate() {
        let (w, bias) = deq(&q.layers[i]);
        out.insert(
            Param::ConvWeight(i),
            vec![b.filters, ch, b.kernel],
            conv_to_oik(&w, b.filters, b.kernel, ch),
        );
        out.insert(Param::ConvBias(i), vec![b.filters], bias);
        ch = b.filters;
    }
    let (w, bias) = deq(q.layers.last().expect("a dense head"));
    out.insert(
        Param::DenseWeight,
        vec![ch, spec.classes],
        dense_to_ic(&w, spec.classes, ch),
    );
    out.insert(Param::DenseBias, vec![spec.classes], bias);
    Ok(out)
}
