//! ONNX → [`NetSpec`] + [`Weights`].
//!
//! The graph is walked in node order (ONNX requires topological order) as a chain: every node
//! reads the previous layer's output (and constants) and produces the next one. Along the way
//! each axis of the running activation is tracked by its meaning (batch, channels, length, or a
//! unit axis of size 1), so layout ops — Transpose, Reshape, Squeeze, Unsqueeze, Flatten — are
//! accepted exactly when they only move or drop unit axes or switch channels-first/last, and a
//! Conv, pool or dense layer is accepted only when its input's axes mean what the kernels
//! compute. The network itself is recognised as a state machine: conv → (affine: BatchNorm, or
//! the per-channel Mul/Add tf2onnx writes for one) → ReLU → (max/avg pool) → … → global average
//! pooling (GlobalAveragePool or ReduceMean over the length) → Gemm, or MatMul (+ Add) →
//! (Softmax, dropped: the kernels return logits).
//!
//! This file holds the public API, the order of the steps and the walker's state (`Stage`,
//! `Pending`, `Importer`); each concern lives in its own submodule:
//!
//! - `graph`: the model around the nodes (opset, initializers, the one input and output).
//! - `node`: the walk, node by node, and dispatch by op type.
//! - `axes`: what each axis of the running activation means; `layout`: the ops that move them.
//! - `embedding`: the input embedding (a `Gather` of a `[256, D]` table at the integer input).
//! - `conv`, `block`, `pool`, `elementwise`, `dense`: the layers the kernels compute.
//! - `finish`: the walked graph → spec, weights, metadata and input scaling.

// Per-channel vectors (scale, shift, bias, statistics) are updated in lockstep by channel index.
#![allow(clippy::needless_range_loop)]

mod axes;
mod block;
mod conv;
mod dense;
mod elementwise;
mod embedding;
mod finish;
mod graph;
mod layout;
mod node;
mod pool;

use super::proto::Const;
use crate::net::{Block, NetSpec};
use crate::weights::Weights;
use anyhow::{anyhow, bail, Context, Result};
use axes::Ax;
use std::collections::HashMap;
use std::path::Path;

/// What the importer accepts, for error messages and documentation.
pub const SUPPORTED: &str = "Conv (1-D, or 2-D over an input of height or width 1), \
BatchNormalization, Relu, MaxPool, AveragePool, GlobalAveragePool, ReduceMean over the length, \
Gemm, MatMul, Add/Sub/Mul/Div by constants (input scaling, per-channel affine after a conv, \
dense bias), Softmax (dropped), Flatten, Reshape, Squeeze, Unsqueeze, Transpose (moving or \
dropping unit axes, channels-first/last), Dropout, Identity, Cast to float, Constant, \
Gather (the input embedding: axis 0 of a constant [256, D] table at the integer input, \
possibly cast to another integer type)";

/// Largest ONNX file the importer reads (far beyond any model a microcontroller could hold).
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// How the importer maps bytes to the graph's input.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The graph's input is `byte × input_scale`. `None`: the model's own `nas.input_scale`
    /// metadata, else 1 when the graph rescales its input itself (a leading Mul/Div, as Keras's
    /// `Rescaling` exports), else 1/255 (`data::INPUT_SCALE`).
    pub input_scale: Option<f32>,
}

/// How the graph's input tensor orders its axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputLayout {
    /// `[N, C, L]` (PyTorch).
    ChannelsFirst,
    /// `[N, L, C]` (Keras).
    ChannelsLast,
    /// One input channel: `[N, L]`, `[N, 1, L]` or `[N, L, 1]` (and unit axes).
    SingleChannel,
}

/// An imported network.
#[derive(Debug, Clone)]
pub struct Imported {
    pub spec: NetSpec,
    pub weights: Weights,
    /// The graph's input is `byte × graph_input_scale` (before any scaling inside the graph).
    pub graph_input_scale: f32,
    /// Scaling inside the graph (its leading Mul/Div by a constant), 1 when none.
    pub graph_internal_scale: f64,
    pub layout: InputLayout,
    /// The graph input's dims (batch as 0 when symbolic).
    pub input_dims: Vec<usize>,
    pub input_name: String,
    pub producer: String,
    /// Whether the graph's output is the softmax of the logits (the kernels return the logits).
    pub output_softmax: bool,
    /// What was folded, dropped or assumed, one sentence each.
    pub notes: Vec<String>,
}

/// Import an ONNX file.
pub fn import_file(path: &Path, opts: &ImportOptions) -> Result<Imported> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > MAX_FILE_BYTES {
        bail!(
            "{}: {len} bytes is more than the {MAX_FILE_BYTES} an importable model may have",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    import_bytes(&bytes, opts).with_context(|| format!("cannot import {}", path.display()))
}

/// Import an ONNX model from its bytes.
pub fn import_bytes(bytes: &[u8], opts: &ImportOptions) -> Result<Imported> {
    if let Some(s) = opts.input_scale {
        if !(s.is_finite() && s > 0.0) {
            bail!("the input scale must be a positive number, got {s}");
        }
    }
    let model = graph::parse(bytes)?;
    let graph = graph::nonempty_graph(&model)?;
    let opset = graph::default_opset(&model)?;
    graph::refuse_quantized(graph)?;
    let consts = graph::initializers(graph)?;
    let input = graph::single_input(graph, &consts)?;
    let output_name = graph::single_output(graph)?;
    let (axes, input_dims, integer) = graph::input_axes(input)?;

    let mut im = Importer::new(opset, consts, input.name.clone(), axes);
    im.indices = integer;
    im.walk(&graph.node, &output_name)?;
    let net = im.finish(opts, |k| graph::metadata(&model, k))?;
    Ok(Imported {
        spec: net.spec,
        weights: net.weights,
        graph_input_scale: net.graph_input_scale,
        graph_internal_scale: net.internal_scale,
        layout: net.layout,
        input_dims,
        input_name: input.name.clone(),
        output_softmax: net.output_softmax,
        producer: graph::producer(&model),
        notes: net.notes,
    })
}

/// Where the walk is in the network's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before the first convolution: layout ops and input scaling.
    Pre,
    /// After a convolution, before its ReLU.
    Conv,
    /// After a block's ReLU.
    Act,
    /// After a block's pooling.
    Pooled,
    /// After global average pooling.
    Gap,
    /// After the dense layer.
    Dense,
    Softmax,
}

impl Stage {
    fn describe(self) -> &'static str {
        match self {
            Stage::Pre => "before the first convolution",
            Stage::Conv => "after a convolution, before its ReLU",
            Stage::Act => "after a block's ReLU",
            Stage::Pooled => "after a block's pooling",
            Stage::Gap => "after global average pooling",
            Stage::Dense => "after the dense layer",
            Stage::Softmax => "after the softmax",
        }
    }
}

/// A BatchNormalization's `(gamma, beta, mean, var, eps)`.
type BnParams = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, f32);

/// A block being read: its conv, what follows it before the ReLU, its pool.
struct Pending {
    label: String,
    block: Block,
    /// `[out][in][kernel]`
    weight: Vec<f32>,
    bias: Vec<f32>,
    /// One BatchNormalization node and nothing else between conv and ReLU: its exact
    /// parameters `(gamma, beta, mean, var, eps)`.
    bn: Option<BnParams>,
    /// Any other per-channel affine `y = a·x + b` (composed in f64), BN included once mixed.
    affine: Option<(Vec<f64>, Vec<f64>)>,
    /// A max pool read before the ReLU (equal to after it: both are monotonic).
    max_before_relu: bool,
    relu: bool,
}

/// The walker's state: the running activation, the stage, and what has been read so far.
struct Importer {
    opset: i64,
    consts: HashMap<String, Const>,
    /// Name of the running activation.
    cur: String,
    axes: Vec<Ax>,
    stage: Stage,
    /// Product of the input scaling Mul/Div before the first convolution.
    internal_scale: f64,
    /// The running activation holds the bytes as integers, the indices of an embedding to come.
    indices: bool,
    /// The width of the input embedding, once its Gather has been read.
    embedding: Option<usize>,
    /// `(input_len, input_channels, layout)`, once the first convolution has been read.
    input_info: Option<(usize, usize, InputLayout)>,
    /// Channels and length of the running activation (after the first convolution).
    channels: usize,
    len: usize,
    blocks: Vec<Block>,
    weights: Weights,
    pending: Option<Pending>,
    /// `(weight [in][classes], bias, classes)`
    dense: Option<(Vec<f32>, Vec<f32>, usize)>,
    notes: Vec<String>,
}

impl Importer {
    /// An importer at the graph's input `cur`, whose axes are `axes`.
    fn new(opset: i64, consts: HashMap<String, Const>, cur: String, axes: Vec<Ax>) -> Importer {
        Importer {
            opset,
            consts,
            cur,
            axes,
            stage: Stage::Pre,
            internal_scale: 1.0,
            indices: false,
            embedding: None,
            input_info: None,
            channels: 0,
            len: 0,
            blocks: Vec::new(),
            weights: Weights::default(),
            pending: None,
            dense: None,
            notes: Vec::new(),
        }
    }

    /// The constant `name`, which a node reads as its `what`.
    fn konst(&self, name: &str, label: &str, what: &str) -> Result<&Const> {
        self.consts.get(name).ok_or_else(|| {
            anyhow!("{label}: its {what} '{name}' is not a constant (initializer or Constant node); only constant weights are supported")
        })
    }
}
