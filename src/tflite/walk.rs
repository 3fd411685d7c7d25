//! The operators, in order, as a chain: each reads the previous one's output and writes the
//! next activation. Layout operators (EXPAND_DIMS, RESHAPE, SQUEEZE) only add or drop unit
//! axes around the `[length, channels]` activation and are checked to do nothing else; the
//! layers are recognised as conv (fused ReLU) → (max/avg pool) → … → MEAN over the length →
//! FULLY_CONNECTED → (SOFTMAX, dropped), with QUANTIZE / DEQUANTIZE at the edges.

use super::read::{op_name, type_name, Graph, TensorInfo};
use crate::net::{Padding, PoolKind};
use anyhow::{anyhow, bail, ensure, Context, Result};
use tract_tflite::tflite::{self, ActivationFunctionType, BuiltinOperator, TensorType};

mod layers;

/// A conv or dense layer's constants, as the file holds them.
#[derive(Debug, Clone)]
pub(super) enum Consts {
    /// Weights `[out][kernel][in]` (dense: `[out][in]`), bias per output.
    F32 { w: Vec<f32>, b: Vec<f32> },
    /// int8 weights with per-output scales (zero point 0), int32 bias, and the layer's input
    /// and output parameters.
    Int8 {
        w: Vec<i8>,
        scales: Vec<f32>,
        b: Vec<i32>,
        input: (f32, i32),
        output: (f32, i32),
    },
}

/// One recognised conv.
#[derive(Debug, Clone)]
pub(super) struct Conv {
    pub filters: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
    pub pool: Option<(PoolKind, usize)>,
    pub consts: Consts,
}

/// The walked graph.
#[derive(Debug, Clone)]
pub(super) struct Walked {
    pub input_len: usize,
    pub input_channels: usize,
    /// The graph's input tensor and, for int8 models, the parameters of the first layer's
    /// input (the int8 input's, or those of a leading QUANTIZE).
    pub input: TensorInfo,
    pub input_q: Option<(f32, i32)>,
    pub convs: Vec<Conv>,
    /// The MEAN's output parameters (int8).
    pub mean_out: Option<(f32, i32)>,
    pub classes: usize,
    pub dense: Consts,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Features,
    Pooled,
    Logits,
    Softmax,
    Done,
}

struct Walker<'g, 'a> {
    g: &'g Graph<'a>,
    int8: bool,
    /// The running activation: its tensor, `[length, channels]` and int8 parameters.
    cur: i32,
    len: usize,
    ch: usize,
    q: Option<(f32, i32)>,
    stage: Stage,
    convs: Vec<Conv>,
    mean_out: Option<(f32, i32)>,
    dense: Option<(usize, Consts)>,
    input_q: Option<(f32, i32)>,
    notes: Vec<String>,
}

/// `(length, channels)` of an activation shape `[1, …]`: its non-unit axes after the batch,
/// one (length, one channel) or two (length, channels).
fn seq_dims(t: &TensorInfo) -> Result<(usize, usize)> {
    ensure!(
        t.shape.first() == Some(&1),
        "{} has shape {:?}: the importer reads a batch of one sample",
        t.label(),
        t.shape
    );
    let rest: Vec<usize> = t.shape[1..].iter().copied().filter(|&d| d != 1).collect();
    match rest.as_slice() {
        [] => Ok((1, 1)),
        [l] => Ok((*l, 1)),
        [l, c] => Ok((*l, *c)),
        _ => bail!(
            "{} has shape {:?}: a 1-D network's activations are [1, length, channels] (with unit \
             axes)",
            t.label(),
            t.shape
        ),
    }
}

/// The length axis of a 4-D `[1, H, W, C]` input of a 2-D operator over a 1-D sequence:
/// `Some(true)` when it is W (H = 1, as Keras's Conv1D writes it), `Some(false)` when it is
/// H (W = 1, as Keras's pooling writes it).
fn length_is_width(t: &TensorInfo, label: &str) -> Result<bool> {
    ensure!(
        t.shape.len() == 4 && t.shape[0] == 1,
        "{label}: input {} of shape {:?} is not [1, height, width, channels]",
        t.label(),
        t.shape
    );
    match (t.shape[1], t.shape[2]) {
        (1, _) => Ok(true),
        (_, 1) => Ok(false),
        (h, w) => bail!(
            "{label}: a 2-D input of {h} × {w}: only 1-D networks (height or width 1) are \
             supported"
        ),
    }
}

fn padding(p: tflite::Padding, label: &str) -> Result<Padding> {
    match p {
        tflite::Padding::SAME => Ok(Padding::Same),
        tflite::Padding::VALID => Ok(Padding::Valid),
        other => bail!("{label}: padding {} is not SAME or VALID", other.0),
    }
}

fn act_name(a: ActivationFunctionType) -> String {
    a.variant_name()
        .map_or_else(|| format!("{}", a.0), |n| n.to_string())
}

impl<'g, 'a> Walker<'g, 'a> {
    fn op_input(&self, op: &tflite::Operator<'a>, i: usize, label: &str) -> Result<i32> {
        op.inputs()
            .and_then(|v| (i < v.len()).then(|| v.get(i)))
            .ok_or_else(|| anyhow!("{label} has no input {i}"))
    }

    fn optional_input(&self, op: &tflite::Operator<'a>, i: usize) -> Option<i32> {
        op.inputs()
            .and_then(|v| (i < v.len()).then(|| v.get(i)))
            .filter(|&t| t >= 0)
    }

    fn single_output(&self, op: &tflite::Operator<'a>, label: &str) -> Result<TensorInfo> {
        let outs: Vec<i32> = op.outputs().map(|v| v.iter().collect()).unwrap_or_default();
        match outs.as_slice() {
            [o] => self.g.tensor(*o).with_context(|| label.to_string()),
            _ => bail!("{label} has {} outputs, expected one", outs.len()),
        }
    }

    /// The operator's data input, which must be the running activation.
    fn data_input(&self, op: &tflite::Operator<'a>, label: &str) -> Result<TensorInfo> {
        let i = self.op_input(op, 0, label)?;
        ensure!(
            i == self.cur,
            "{label} reads tensor {i}, not the previous layer's output (tensor {}): only a \
             chain of layers is supported, no branches",
            self.cur
        );
        self.g.tensor(i)
    }

    /// Check the int8-ness of an activation tensor and return its parameters.
    fn activation_q(&self, t: &TensorInfo, label: &str) -> Result<Option<(f32, i32)>> {
        match (self.int8, t.dtype) {
            (true, TensorType::INT8) => {
                Ok(Some(t.per_tensor().with_context(|| label.to_string())?))
            }
            (false, TensorType::FLOAT32) => Ok(None),
            (true, d) => bail!(
                "{label}: {} is {} in an int8 model (only int8 activations are supported)",
                t.label(),
                type_name(d)
            ),
            (false, TensorType::INT8) => bail!(
                "{label}: {} is int8 in a model whose input is float and not quantized: \
                 dynamic-range or partially quantized models are not supported; convert with \
                 full-integer quantization (int8 input) or keep the model float",
                t.label()
            ),
            (false, d) => bail!("{label}: {} is {}", t.label(), type_name(d)),
        }
    }

    fn set_output(&mut self, out: &TensorInfo, len: usize, ch: usize, label: &str) -> Result<()> {
        let (l, c) = seq_dims(out).with_context(|| label.to_string())?;
        ensure!(
            (l, c) == (len, ch) || (len == 1 && (l, c) == (ch, 1)),
            "{label}: output {} has shape {:?}, expected {len} × {ch}",
            out.label(),
            out.shape
        );
        self.q = self.activation_q(out, label)?;
        self.cur = out.index;
        (self.len, self.ch) = (len, ch);
        Ok(())
    }

    fn step(&mut self, i: usize, op: &tflite::Operator<'a>) -> Result<()> {
        let code = self.g.opcode(op, &format!("operator {i}"))?;
        let label = format!("operator {i} ({})", op_name(code));
        let label = label.as_str();
        ensure!(
            self.stage != Stage::Done,
            "{label} follows the DEQUANTIZE that ends the network"
        );
        match code {
            BuiltinOperator::QUANTIZE => self.quantize(op, label),
            BuiltinOperator::DEQUANTIZE => {
                ensure!(
                    matches!(self.stage, Stage::Logits | Stage::Softmax),
                    "{label}: a DEQUANTIZE inside the network (only at its output is one \
                     supported)"
                );
                let _ = self.data_input(op, label)?;
                let out = self.single_output(op, label)?;
                self.cur = out.index;
                self.stage = Stage::Done;
                Ok(())
            }
            BuiltinOperator::EXPAND_DIMS | BuiltinOperator::RESHAPE | BuiltinOperator::SQUEEZE => {
                let input = self.data_input(op, label)?;
                let out = self.single_output(op, label)?;
                let (len, ch, q) = (self.len, self.ch, self.q);
                self.set_output(&out, len, ch, label)?;
                ensure!(
                    self.q == q,
                    "{label} changes the quantization of {} ({q:?} → {:?})",
                    input.label(),
                    self.q
                );
                Ok(())
            }
            BuiltinOperator::CONV_2D => self.conv(op, label),
            BuiltinOperator::MAX_POOL_2D | BuiltinOperator::AVERAGE_POOL_2D => {
                self.pool(op, code, label)
            }
            BuiltinOperator::MEAN => self.mean(op, label),
            BuiltinOperator::FULLY_CONNECTED => self.dense(op, label),
            BuiltinOperator::SOFTMAX => {
                ensure!(
                    self.stage == Stage::Logits,
                    "{label}: a SOFTMAX that does not follow the last FULLY_CONNECTED"
                );
                let _ = self.data_input(op, label)?;
                let out = self.single_output(op, label)?;
                self.cur = out.index;
                self.stage = Stage::Softmax;
                self.notes.push(
                    "the final SOFTMAX is dropped: the kernels return the logits (the last \
                     FULLY_CONNECTED's outputs), whose argmax is the same class"
                        .to_string(),
                );
                Ok(())
            }
            _ => bail!(
                "{label} is not supported (the importer reads {}); a 1-D depthwise \
                 convolution, recurrent layers and element-wise operators inside the network \
                 have no kernel here",
                super::SUPPORTED
            ),
        }
    }

    fn quantize(&mut self, op: &tflite::Operator<'a>, label: &str) -> Result<()> {
        let input = self.data_input(op, label)?;
        let out = self.single_output(op, label)?;
        ensure!(
            self.convs.is_empty()
                && self.stage == Stage::Features
                && self.input_q.is_none()
                && input.dtype == TensorType::FLOAT32,
            "{label}: a QUANTIZE inside the network (only one that quantizes the float input \
             is supported)"
        );
        ensure!(
            out.dtype == TensorType::INT8,
            "{label} quantizes to {}, not int8",
            type_name(out.dtype)
        );
        self.int8 = true;
        let (len, ch) = (self.len, self.ch);
        self.set_output(&out, len, ch, label)?;
        self.input_q = self.q;
        Ok(())
    }
}

/// Walk the graph's operators.
pub(super) fn walk(g: &Graph<'_>) -> Result<Walked> {
    let input_index = match g.inputs.as_slice() {
        [i] => *i,
        v => bail!("the model has {} inputs, a 1-D CNN has one", v.len()),
    };
    ensure!(
        g.outputs.len() == 1,
        "the model has {} outputs, a classifier has one",
        g.outputs.len()
    );
    let input = g.tensor(input_index).context("the graph's input")?;
    let (len, ch) = seq_dims(&input).context("the graph's input")?;
    let int8 = match input.dtype {
        TensorType::INT8 => true,
        TensorType::FLOAT32 => false,
        other => bail!(
            "the model's input {} is {}: int8 (full-integer quantization) and float32 inputs \
             are supported",
            input.label(),
            type_name(other)
        ),
    };
    let mut w = Walker {
        g,
        int8,
        cur: input_index,
        len,
        ch,
        q: if int8 {
            Some(input.per_tensor().context("the graph's input")?)
        } else {
            None
        },
        stage: Stage::Features,
        convs: Vec::new(),
        mean_out: None,
        dense: None,
        input_q: None,
        notes: Vec::new(),
    };
    w.input_q = w.q;
    for (i, op) in g.operators.iter().enumerate() {
        w.step(i, op)?;
    }
    ensure!(
        matches!(w.stage, Stage::Logits | Stage::Softmax | Stage::Done),
        "the model ends before its head: the importer expects convolutions, MEAN over the \
         length and a FULLY_CONNECTED"
    );
    ensure!(
        g.outputs[0] == w.cur,
        "the model's output is tensor {}, not the last layer's (tensor {})",
        g.outputs[0],
        w.cur
    );
    ensure!(!w.convs.is_empty(), "the model has no convolution");
    let (classes, dense) = w.dense.expect("a head at Stage::Logits");
    Ok(Walked {
        input_len: len,
        input_channels: ch,
        input,
        input_q: w.input_q,
        convs: w.convs,
        mean_out: w.mean_out,
        classes,
        dense,
        notes: w.notes,
    })
}
