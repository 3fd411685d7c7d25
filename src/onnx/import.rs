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

// Per-channel vectors (scale, shift, bias, statistics) are updated in lockstep by channel index.
#![allow(clippy::needless_range_loop)]

use super::proto::{self, Attrs, Const, Data};
use super::{META_INPUT_SCALE, META_SPEC};
use crate::net::shape::{conv_out_len, conv_padding};
use crate::net::{Block, Head, NetSpec, Padding, Pool, PoolKind};
use crate::weights::{Weights, BN_EPSILON};
use anyhow::{anyhow, bail, Context, Result};
use onnx_ir::{Message, ModelProto, NodeProto};
use std::collections::HashMap;
use std::path::Path;

/// What the importer accepts, for error messages and documentation.
pub const SUPPORTED: &str = "Conv (1-D, or 2-D over an input of height or width 1), \
BatchNormalization, Relu, MaxPool, AveragePool, GlobalAveragePool, ReduceMean over the length, \
Gemm, MatMul, Add/Sub/Mul/Div by constants (input scaling, per-channel affine after a conv, \
dense bias), Softmax (dropped), Flatten, Reshape, Squeeze, Unsqueeze, Transpose (moving or \
dropping unit axes, channels-first/last), Dropout, Identity, Cast to float, Constant";

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
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| {
        anyhow!("not an ONNX model: the file is not a valid ONNX protobuf ({e}); is it truncated?")
    })?;
    let Some(graph) = model.graph.as_ref() else {
        bail!("not an ONNX model: it holds no graph");
    };
    if graph.node.is_empty() {
        bail!("not an ONNX model, or an empty one: its graph has no nodes");
    }
    let mut opset = None;
    for o in &model.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            opset = Some(o.version);
        }
    }
    let opset = opset.unwrap_or(if model.opset_import.is_empty() { 1 } else { 0 });
    if opset < 1 {
        bail!("the model imports no version of the default ONNX operator set");
    }

    let mut consts: HashMap<String, Const> = HashMap::new();
    for (i, t) in graph.initializer.iter().enumerate() {
        let c = proto::tensor(t, &format!("initializer '{}'", t.name))?;
        if t.name.is_empty() {
            bail!("initializer #{i} has no name");
        }
        consts.insert(t.name.clone(), c);
    }
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|v| !consts.contains_key(&v.name))
        .collect();
    if inputs.len() != 1 {
        let names: Vec<&str> = inputs.iter().map(|v| v.name.as_str()).collect();
        bail!(
            "the graph has {} inputs ({names:?}); the kernels take exactly one, the byte sequence",
            inputs.len()
        );
    }
    let input = inputs[0];
    if graph.output.len() != 1 {
        let names: Vec<&str> = graph.output.iter().map(|v| v.name.as_str()).collect();
        bail!(
            "the graph has {} outputs ({names:?}); the kernels return exactly one, the logits",
            graph.output.len()
        );
    }
    let output_name = graph.output[0].name.clone();

    // The input's shape: batch first, then fixed sizes.
    let ty = input
        .type_
        .as_ref()
        .filter(|t| t.has_tensor_type())
        .ok_or_else(|| anyhow!("the graph input '{}' is not a tensor", input.name))?;
    let tt = ty.tensor_type();
    if tt.elem_type != proto::FLOAT {
        bail!(
            "the graph input '{}' has element type {}; float32 is supported (the kernels turn bytes into floats)",
            input.name,
            tt.elem_type
        );
    }
    let shape = tt
        .shape
        .as_ref()
        .ok_or_else(|| anyhow!("the graph input '{}' has no shape", input.name))?;
    let rank = shape.dim.len();
    if !(2..=4).contains(&rank) {
        bail!(
            "the graph input '{}' has {rank} axes; a batch of 1-D sequences has 2 to 4 ([N, L], [N, C, L], [N, L, C], or with a unit axis)",
            input.name
        );
    }
    let mut axes = Vec::with_capacity(rank);
    let mut input_dims = Vec::with_capacity(rank);
    for (i, d) in shape.dim.iter().enumerate() {
        let v = if d.has_dim_value() { d.dim_value() } else { -1 };
        if i == 0 {
            if v > 1 {
                bail!(
                    "the graph input '{}' has a fixed batch of {v}; export it with batch 1 or a symbolic batch",
                    input.name
                );
            }
            axes.push(Ax::new(Role::Batch, 0));
            input_dims.push(0);
            continue;
        }
        if v < 1 || v as usize > crate::net::spec::MAX_INPUT_LEN {
            bail!(
                "axis {i} of the graph input '{}' has no fixed size ({}); the kernels need fixed lengths",
                input.name,
                if d.has_dim_param() {
                    d.dim_param().to_string()
                } else {
                    v.to_string()
                }
            );
        }
        let v = v as usize;
        axes.push(Ax::new(if v == 1 { Role::Unit } else { Role::In(i) }, v));
        input_dims.push(v);
    }
    let meta = |k: &str| {
        model
            .metadata_props
            .iter()
            .find(|p| p.key == k)
            .map(|p| p.value.clone())
    };

    let mut im = Importer {
        opset,
        consts,
        cur: input.name.clone(),
        axes,
        stage: Stage::Pre,
        internal_scale: 1.0,
        input_info: None,
        channels: 0,
        len: 0,
        blocks: Vec::new(),
        weights: Weights::default(),
        pending: None,
        dense: None,
        notes: Vec::new(),
    };
    for (i, node) in graph.node.iter().enumerate() {
        let label = if node.name.is_empty() {
            format!("node #{i} ({})", node.op_type)
        } else {
            format!("node '{}' ({})", node.name, node.op_type)
        };
        im.node(node, &label)?;
    }
    if im.cur != output_name {
        bail!(
            "the graph's output '{output_name}' is not the end of the chain of layers (which ends at '{}'); only a single chain of layers is supported",
            im.cur
        );
    }
    let (dense_w, dense_b, classes) = match (im.stage, im.dense.take()) {
        (Stage::Dense | Stage::Softmax, Some(d)) => d,
        _ => bail!(
            "the graph ends before its dense layer ({}); the network must end with global average pooling and a dense layer (Gemm, or MatMul + Add)",
            im.stage.describe()
        ),
    };
    let Some((input_len, input_channels, layout)) = im.input_info else {
        bail!("the graph has no convolution");
    };
    let head_in = im.channels;
    im.weights
        .insert("dense.weight", vec![head_in, classes], dense_w);
    im.weights.insert("dense.bias", vec![classes], dense_b);
    let mut spec = NetSpec {
        input_len,
        input_channels,
        classes,
        blocks: im.blocks,
        head: Head::GapDense,
    };
    let mut notes = im.notes;
    spec.validate()
        .context("the imported network is not one the kernels can run")?;

    // The exporter's record of training-only fields and of the padding choice where the graph
    // cannot tell 'same' from 'valid'.
    if let Some(text) = meta(META_SPEC) {
        match serde_json::from_str::<NetSpec>(&text) {
            Ok(recorded) if same_network(&recorded, &spec) => {
                for (b, r) in spec.blocks.iter_mut().zip(&recorded.blocks) {
                    b.padding = r.padding;
                    b.dropout = r.dropout;
                }
            }
            _ => notes.push(format!(
                "the model's '{META_SPEC}' metadata does not describe this graph; ignored"
            )),
        }
    }

    // Input scaling: the kernels compute with byte × INPUT_SCALE; a model that expects another
    // scale has it folded into the first convolution's weights (convolution is linear and pads
    // with zeros, so this is exact up to float rounding).
    let recorded_scale = meta(META_INPUT_SCALE).and_then(|s| s.trim().parse::<f32>().ok());
    let graph_input_scale = match (opts.input_scale, recorded_scale) {
        (Some(s), _) => s,
        (None, Some(s)) if s.is_finite() && s > 0.0 => s,
        _ if im.internal_scale != 1.0 => 1.0,
        _ => crate::data::INPUT_SCALE,
    };
    let effective = graph_input_scale as f64 * im.internal_scale;
    let factor = effective / crate::data::INPUT_SCALE as f64;
    if (factor as f32) != 1.0 {
        let w = im
            .weights
            .tensors
            .get_mut("conv0.weight")
            .ok_or_else(|| anyhow!("the graph has no first convolution"))?;
        for x in &mut w.data {
            *x = (*x as f64 * factor) as f32;
        }
        notes.push(format!(
            "the model computes on byte × {effective:e}; the kernels scale bytes by 1/255, so the first convolution's weights were multiplied by {factor:.6}"
        ));
    }
    if !effective.is_finite() || effective <= 0.0 {
        bail!("the graph's input scaling ({effective}) is not a positive number");
    }
    im.weights
        .check(&spec)
        .context("the imported weights do not match the imported network")?;

    Ok(Imported {
        spec,
        weights: im.weights,
        graph_input_scale,
        graph_internal_scale: im.internal_scale,
        layout,
        input_dims,
        input_name: input.name.clone(),
        output_softmax: im.stage == Stage::Softmax,
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string(),
        notes,
    })
}

/// Whether a recorded spec is this graph's network, up to what the graph cannot show
/// (dropout, and 'same' vs 'valid' where both pad nothing and give the same length).
fn same_network(recorded: &NetSpec, graph: &NetSpec) -> bool {
    if recorded.validate().is_err()
        || recorded.input_len != graph.input_len
        || recorded.input_channels != graph.input_channels
        || recorded.classes != graph.classes
        || recorded.blocks.len() != graph.blocks.len()
    {
        return false;
    }
    let (Ok(rs), Ok(gs)) = (recorded.shapes(), graph.shapes()) else {
        return false;
    };
    recorded
        .blocks
        .iter()
        .zip(&graph.blocks)
        .zip(rs.iter().zip(&gs))
        .all(|((r, g), (rsh, gsh))| {
            r.filters == g.filters
                && r.kernel == g.kernel
                && r.stride == g.stride
                && r.batch_norm == g.batch_norm
                && r.pool == g.pool
                && rsh == gsh
        })
}

/// What an axis of the running activation means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Batch,
    /// Size 1, meaning nothing.
    Unit,
    /// Axis `k` of the graph input, before the first convolution says what it is.
    In(usize),
    Chan,
    Len,
    /// The dense layer's outputs.
    Class,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ax {
    role: Role,
    /// 0 for the batch.
    size: usize,
}

impl Ax {
    fn new(role: Role, size: usize) -> Ax {
        Ax { role, size }
    }
}

fn fmt_axes(axes: &[Ax]) -> String {
    let parts: Vec<String> = axes
        .iter()
        .map(|a| match a.role {
            Role::Batch => "N".to_string(),
            Role::Unit => "1".to_string(),
            Role::In(_) => a.size.to_string(),
            Role::Chan => format!("C={}", a.size),
            Role::Len => format!("L={}", a.size),
            Role::Class => format!("classes={}", a.size),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

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

struct Importer {
    opset: i64,
    consts: HashMap<String, Const>,
    /// Name of the running activation.
    cur: String,
    axes: Vec<Ax>,
    stage: Stage,
    /// Product of the input scaling Mul/Div before the first convolution.
    internal_scale: f64,
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

/// Turn an ONNX integer attribute into a size in `lo..=hi`.
fn size(v: i64, lo: usize, hi: usize, what: &str) -> Result<usize> {
    if v < lo as i64 || v > hi as i64 {
        bail!("{what} is {v}; it must lie in {lo}..={hi}");
    }
    Ok(v as usize)
}

/// Normalise a possibly negative axis against a rank.
fn axis(a: i64, rank: usize, label: &str) -> Result<usize> {
    let r = rank as i64;
    if a < -r || a >= r {
        bail!("{label}: axis {a} is out of range for a tensor of rank {rank}");
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

impl Importer {
    fn konst(&self, name: &str, label: &str, what: &str) -> Result<&Const> {
        self.consts.get(name).ok_or_else(|| {
            anyhow!("{label}: its {what} '{name}' is not a constant (initializer or Constant node); only constant weights are supported")
        })
    }

    fn node(&mut self, n: &NodeProto, label: &str) -> Result<()> {
        let op = n.op_type.as_str();
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            bail!(
                "{label}: operator {}::{op} is not supported. Supported: {SUPPORTED}",
                n.domain
            );
        }
        let a = Attrs::new(n, label);
        if op == "Constant" {
            let out = n
                .output
                .first()
                .ok_or_else(|| anyhow!("{label}: no output"))?;
            let c = a.constant_value()?;
            self.consts.insert(out.clone(), c);
            return Ok(());
        }
        // Which inputs are the running activation, which are constants.
        let mut act_pos = None;
        for (i, x) in n.input.iter().enumerate() {
            if x.is_empty() {
                continue;
            }
            if *x == self.cur {
                if act_pos.is_some() {
                    bail!("{label}: reads the previous layer's output twice; only a chain of layers is supported");
                }
                act_pos = Some(i);
            } else if !self.consts.contains_key(x) {
                bail!(
                    "{label}: reads '{x}', which is neither the previous layer's output ('{}') nor a constant; only a single chain of layers is supported (no branches, skip connections or shape computations)",
                    self.cur
                );
            }
        }
        let out = n
            .output
            .first()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| anyhow!("{label}: has no output"))?
            .clone();
        let Some(pos) = act_pos else {
            // A node on constants only.
            if matches!(op, "Identity" | "Cast") {
                if let Some(c) = n.input.first().and_then(|x| self.consts.get(x)).cloned() {
                    self.consts.insert(out, c);
                    return Ok(());
                }
            }
            bail!(
                "{label}: computes on constants only; fold constants before importing (e.g. onnxsim, or torch.onnx.export(do_constant_folding=True))"
            );
        };
        if pos != 0 && !matches!(op, "Mul" | "Add") {
            bail!("{label}: the previous layer's output is its input #{pos}, not its first input");
        }
        let other = |i: usize| n.input.get(i).filter(|x| !x.is_empty()).cloned();
        match op {
            "Identity" => {}
            "Dropout" => self.dropout(n, &a, label)?,
            "Cast" => {
                let to = a.int("to")?.unwrap_or(0);
                if to != proto::FLOAT as i64 {
                    bail!("{label}: casts to element type {to}; only float32 is supported");
                }
            }
            "Transpose" => self.transpose(&a, label)?,
            "Reshape" => {
                let shape = match other(1) {
                    Some(s) => self.konst(&s, label, "shape")?.ints("the shape")?,
                    None => a
                        .ints("shape")?
                        .ok_or_else(|| anyhow!("{label}: no shape"))?,
                };
                if a.int("allowzero")?.unwrap_or(0) != 0 && shape.contains(&0) {
                    bail!("{label}: a zero-sized dimension (allowzero) is not supported");
                }
                self.reshape(&shape, label)?;
            }
            "Flatten" => {
                let ax = a.int("axis")?.unwrap_or(1);
                self.flatten(ax, label)?;
            }
            "Squeeze" => {
                let axes = match other(1) {
                    Some(s) => Some(self.konst(&s, label, "axes")?.ints("the axes")?),
                    None => a.ints("axes")?,
                };
                self.squeeze(axes, label)?;
            }
            "Unsqueeze" => {
                let axes = match other(1) {
                    Some(s) => self.konst(&s, label, "axes")?.ints("the axes")?,
                    None => a
                        .ints("axes")?
                        .ok_or_else(|| anyhow!("{label}: no axes"))?,
                };
                self.unsqueeze(&axes, label)?;
            }
            "Mul" | "Div" | "Add" | "Sub" => {
                let ci = if pos == 0 { 1 } else { 0 };
                let name = other(ci).ok_or_else(|| anyhow!("{label}: needs two inputs"))?;
                let c = self.konst(&name, label, "operand")?.clone();
                let vals = c.floats(&format!("{label}: its operand"))?;
                if vals.iter().any(|v| !v.is_finite()) {
                    bail!("{label}: its operand has a non-finite value");
                }
                self.elementwise(op, &c, &vals, label)?;
            }
            "Conv" => self.conv(n, &a, label)?,
            "BatchNormalization" => self.batch_norm(n, &a, label)?,
            "Relu" => self.relu(label)?,
            "MaxPool" | "AveragePool" => self.pool(op, &a, label)?,
            "GlobalAveragePool" => self.global_average_pool(label)?,
            "ReduceMean" => {
                let axes = match other(1) {
                    Some(s) => Some(self.konst(&s, label, "axes")?.ints("the axes")?),
                    None => a.ints("axes")?,
                };
                let keep = a.int("keepdims")?.unwrap_or(1) != 0;
                self.reduce_mean(axes, keep, label)?;
            }
            "Gemm" => self.gemm(n, &a, label)?,
            "MatMul" => self.matmul(n, label)?,
            "Softmax" => self.softmax(&a, label)?,
            "GlobalMaxPool" | "ReduceMax" => bail!(
                "{label}: global max pooling is not supported; the kernels end with global average pooling"
            ),
            "Conv1d" | "ConvTranspose" | "Sigmoid" | "Tanh" | "LeakyRelu" | "Clip" | "Elu"
            | "Selu" | "HardSigmoid" | "HardSwish" | "Gelu" | "PRelu" => bail!(
                "{label}: operator {op} is not supported (the kernels use ReLU activations only). Supported: {SUPPORTED}"
            ),
            _ => bail!("{label}: operator {op} is not supported. Supported: {SUPPORTED}"),
        }
        self.cur = out;
        Ok(())
    }

    // ------------------------------------------------------------------ layout

    fn check_batch_first(&self, axes: &[Ax], label: &str) -> Result<()> {
        if axes.first().map(|a| a.role) != Some(Role::Batch)
            || axes.iter().skip(1).any(|a| a.role == Role::Batch)
        {
            bail!(
                "{label}: moves the batch axis away from the front ({}); the batch must stay the first axis",
                fmt_axes(axes)
            );
        }
        Ok(())
    }

    fn transpose(&mut self, a: &Attrs, label: &str) -> Result<()> {
        let rank = self.axes.len();
        let perm: Vec<usize> = match a.ints("perm")? {
            Some(p) => p
                .iter()
                .map(|&x| axis(x, rank, label))
                .collect::<Result<_>>()?,
            None => (0..rank).rev().collect(),
        };
        let mut seen = vec![false; rank];
        if perm.len() != rank || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
            bail!("{label}: perm {perm:?} is not a permutation of {rank} axes");
        }
        let axes: Vec<Ax> = perm.iter().map(|&p| self.axes[p]).collect();
        self.check_batch_first(&axes, label)?;
        self.axes = axes;
        Ok(())
    }

    /// Replace the axes by `dims` (batch first) when that only adds or removes unit axes.
    fn regroup(&mut self, dims: &[usize], label: &str, what: &str) -> Result<()> {
        let old: Vec<Ax> = self.axes[1..]
            .iter()
            .copied()
            .filter(|a| a.size != 1)
            .collect();
        let new: Vec<usize> = dims.iter().copied().filter(|&d| d != 1).collect();
        if old.len() != new.len() || old.iter().zip(&new).any(|(a, &d)| a.size != d) {
            bail!(
                "{label}: {what} turns {} into [N, {}], which merges, splits or reorders axes; only adding or removing axes of size 1 is supported",
                fmt_axes(&self.axes),
                dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        let mut it = old.into_iter();
        let mut axes = vec![self.axes[0]];
        for &d in dims {
            // Size-1 channel/length axes lose their meaning here; the consumers accept a unit
            // axis where the running size is 1.
            axes.push(if d == 1 {
                Ax::new(Role::Unit, 1)
            } else {
                it.next().expect("same count of non-unit axes")
            });
        }
        self.axes = axes;
        Ok(())
    }

    fn reshape(&mut self, shape: &[i64], label: &str) -> Result<()> {
        if shape.is_empty() || shape.len() > 6 {
            bail!("{label}: target shape {shape:?} has no batch axis or too many axes");
        }
        let rank = self.axes.len();
        // Position 0 is the batch: 0 (copy), -1 (infer) or 1.
        if !matches!(shape[0], -1..=1) {
            bail!("{label}: target shape {shape:?} does not keep the batch as its first axis");
        }
        let total: usize = self.axes[1..]
            .iter()
            .fold(1usize, |p, a| p.saturating_mul(a.size));
        let mut dims = Vec::with_capacity(shape.len() - 1);
        let mut infer = None;
        for (i, &d) in shape.iter().enumerate().skip(1) {
            match d {
                0 => {
                    let s = self
                        .axes
                        .get(i)
                        .ok_or_else(|| anyhow!("{label}: target shape {shape:?} copies axis {i} of a rank-{rank} tensor"))?
                        .size;
                    dims.push(s);
                }
                -1 => {
                    if infer.is_some() || shape[0] == -1 {
                        bail!("{label}: target shape {shape:?} infers more than one axis");
                    }
                    infer = Some(dims.len());
                    dims.push(1);
                }
                d if d > 0 && d as usize <= crate::net::spec::MAX_INPUT_LEN * 4096 => {
                    dims.push(d as usize)
                }
                _ => bail!("{label}: target shape {shape:?} has an invalid size {d}"),
            }
        }
        let known: usize = dims.iter().fold(1usize, |p, &d| p.saturating_mul(d));
        if let Some(i) = infer {
            if known == 0 || total % known != 0 {
                bail!(
                    "{label}: cannot reshape {} to {shape:?}",
                    fmt_axes(&self.axes)
                );
            }
            dims[i] = total / known;
        } else if known != total {
            bail!(
                "{label}: cannot reshape {} ({total} values per sample) to {shape:?}",
                fmt_axes(&self.axes)
            );
        }
        self.regroup(&dims, label, "Reshape")
    }

    fn flatten(&mut self, ax: i64, label: &str) -> Result<()> {
        let rank = self.axes.len();
        let r = rank as i64;
        if ax < -r || ax > r {
            bail!("{label}: axis {ax} out of range");
        }
        let ax = if ax < 0 {
            (ax + r) as usize
        } else {
            ax as usize
        };
        if ax == 0 {
            bail!("{label}: Flatten at axis 0 merges the batch into the features");
        }
        if self.axes[1..ax].iter().any(|a| a.size != 1) {
            bail!(
                "{label}: Flatten at axis {ax} merges {} into the batch",
                fmt_axes(&self.axes)
            );
        }
        let right: usize = self.axes[ax..]
            .iter()
            .fold(1usize, |p, a| p.saturating_mul(a.size));
        self.regroup(&[right], label, "Flatten")
    }

    fn squeeze(&mut self, axes: Option<Vec<i64>>, label: &str) -> Result<()> {
        let rank = self.axes.len();
        let drop: Vec<usize> = match axes {
            Some(v) => v
                .iter()
                .map(|&x| axis(x, rank, label))
                .collect::<Result<_>>()?,
            None => (1..rank).filter(|&i| self.axes[i].size == 1).collect(),
        };
        for &d in &drop {
            if self.axes[d].role == Role::Batch {
                bail!("{label}: squeezes the batch axis");
            }
            if self.axes[d].size != 1 {
                bail!(
                    "{label}: squeezes axis {d} of {}, which is not of size 1",
                    fmt_axes(&self.axes)
                );
            }
        }
        self.axes = self
            .axes
            .iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, a)| *a)
            .collect();
        Ok(())
    }

    fn unsqueeze(&mut self, axes: &[i64], label: &str) -> Result<()> {
        let out_rank = self.axes.len() + axes.len();
        if out_rank > 6 {
            bail!("{label}: would make a tensor of rank {out_rank}");
        }
        let mut pos: Vec<usize> = axes
            .iter()
            .map(|&x| axis(x, out_rank, label))
            .collect::<Result<_>>()?;
        pos.sort_unstable();
        if pos.windows(2).any(|w| w[0] == w[1]) {
            bail!("{label}: repeats an axis in {axes:?}");
        }
        let mut out = Vec::with_capacity(out_rank);
        let mut it = self.axes.iter();
        for i in 0..out_rank {
            if pos.contains(&i) {
                out.push(Ax::new(Role::Unit, 1));
            } else {
                out.push(*it.next().ok_or_else(|| anyhow!("{label}: bad axes"))?);
            }
        }
        self.check_batch_first(&out, label)?;
        self.axes = out;
        Ok(())
    }

    fn dropout(&mut self, n: &NodeProto, a: &Attrs, label: &str) -> Result<()> {
        if let Some(t) = n.input.get(2).filter(|x| !x.is_empty()) {
            let on = self.konst(t, label, "training_mode")?;
            if matches!(&on.data, Data::I64(v) if v.iter().any(|&x| x != 0)) {
                bail!("{label}: dropout in training mode; export the model for inference");
            }
        }
        let ratio = match n.input.get(1).filter(|x| !x.is_empty()) {
            Some(r) => self
                .konst(r, label, "ratio")?
                .floats("the ratio")?
                .first()
                .copied(),
            None => a.float("ratio")?.or(Some(0.5)),
        };
        if let (Some(r), Some(b)) = (ratio, self.current_block_mut()) {
            if (0.0..1.0).contains(&r) {
                b.dropout = r;
            }
        }
        Ok(())
    }

    fn current_block_mut(&mut self) -> Option<&mut Block> {
        match self.stage {
            Stage::Act | Stage::Pooled => self.pending.as_mut().map(|p| &mut p.block),
            _ => None,
        }
    }

    // ------------------------------------------------------------------ elementwise

    /// A constant broadcast along one meaningful axis (`role` of size `n`) into `n` values.
    fn along(
        &self,
        c: &Const,
        vals: &[f32],
        role: Role,
        n: usize,
        label: &str,
    ) -> Result<Vec<f64>> {
        let rank = self.axes.len();
        if c.dims.len() > rank {
            bail!("{label}: its constant has more axes than the activation");
        }
        let mut varying = None;
        for (j, &d) in c.dims.iter().enumerate() {
            let ax = self.axes[rank - c.dims.len() + j];
            if d == 1 {
                continue;
            }
            let ok = d == n && ax.role == role;
            if !ok || varying.is_some() {
                bail!(
                    "{label}: its constant of shape {:?} does not broadcast along the {} of {} alone",
                    c.dims,
                    if role == Role::Class { "classes" } else { "channels" },
                    fmt_axes(&self.axes)
                );
            }
            varying = Some(j);
        }
        Ok(match varying {
            Some(_) => vals.iter().map(|&v| v as f64).collect(),
            None => vec![vals.first().copied().unwrap_or(0.0) as f64; n],
        })
    }

    fn elementwise(&mut self, op: &str, c: &Const, vals: &[f32], label: &str) -> Result<()> {
        if vals.is_empty() {
            bail!("{label}: its operand is empty");
        }
        match self.stage {
            Stage::Pre => {
                if c.numel() != 1 {
                    bail!(
                        "{label}: {op} by a tensor of shape {:?} before the first convolution; only scaling the input by one number is supported",
                        c.dims
                    );
                }
                let v = vals[0] as f64;
                match op {
                    "Mul" => self.internal_scale *= v,
                    "Div" if v != 0.0 => self.internal_scale /= v,
                    "Add" | "Sub" if v == 0.0 => {}
                    _ => bail!(
                        "{label}: {op} by {v} on the input; only scaling (Mul/Div by a positive number) can be folded, not an offset (the convolution pads with zeros)"
                    ),
                }
                if !(self.internal_scale > 0.0 && self.internal_scale.is_finite()) {
                    bail!("{label}: the input scale must stay positive");
                }
                Ok(())
            }
            Stage::Conv => {
                let p = self.pending.as_mut().expect("a conv is pending in Stage::Conv");
                if p.max_before_relu {
                    bail!(
                        "{label}: {op} between a max pool and its ReLU; a block is conv → (BatchNorm) → ReLU → (pool)"
                    );
                }
                let n = p.block.filters;
                let v = self.along(c, vals, Role::Chan, n, label)?;
                let p = self.pending.as_mut().expect("pending");
                let (mut sa, mut sb) = take_affine(p, n);
                for k in 0..n {
                    match op {
                        "Mul" => {
                            sa[k] *= v[k];
                            sb[k] *= v[k];
                        }
                        "Div" => {
                            if v[k] == 0.0 {
                                bail!("{label}: divides by zero");
                            }
                            sa[k] /= v[k];
                            sb[k] /= v[k];
                        }
                        "Add" => sb[k] += v[k],
                        _ => sb[k] -= v[k],
                    }
                }
                p.affine = Some((sa, sb));
                Ok(())
            }
            Stage::Dense => {
                let classes = self.dense.as_ref().expect("dense in Stage::Dense").2;
                let v = self.along(c, vals, Role::Class, classes, label)?;
                let (w, b, _) = self.dense.as_mut().expect("dense");
                let inputs = w.len() / classes;
                for k in 0..classes {
                    match op {
                        "Add" => b[k] = (b[k] as f64 + v[k]) as f32,
                        "Sub" => b[k] = (b[k] as f64 - v[k]) as f32,
                        "Mul" | "Div" => {
                            let f = if op == "Mul" { v[k] } else { 1.0 / v[k] };
                            if !f.is_finite() {
                                bail!("{label}: divides by zero");
                            }
                            b[k] = (b[k] as f64 * f) as f32;
                            for i in 0..inputs {
                                w[i * classes + k] = (w[i * classes + k] as f64 * f) as f32;
                            }
                        }
                        _ => unreachable!(),
                    }
                }
                Ok(())
            }
            s => bail!(
                "{label}: {op} {}; elementwise arithmetic is supported on the input (scaling), between a convolution and its ReLU (per channel, as BatchNorm) and on the dense layer's output (bias)",
                s.describe()
            ),
        }
    }

    // ------------------------------------------------------------------ layers

    /// Position of the channel axis (1) checked, and of the length axis among the spatial ones.
    /// Returns `(length axis, unit spatial axis if rank 4)`.
    fn spatial(&self, label: &str, what: &str) -> Result<(usize, Option<usize>)> {
        let rank = self.axes.len();
        if !(rank == 3 || rank == 4) {
            bail!(
                "{label}: {what} over {}; a 1-D layer needs [N, C, L] (or [N, C, 1, L] / [N, C, L, 1])",
                fmt_axes(&self.axes)
            );
        }
        let chan = self.axes[1];
        let pre = self.stage == Stage::Pre;
        let chan_ok = match chan.role {
            Role::Chan => true,
            Role::Unit => pre || self.channels == 1,
            Role::In(_) => pre,
            _ => false,
        };
        if !chan_ok {
            bail!(
                "{label}: {what} reads axis 1 of {} as its channels, but that axis is not the channels; is the layout channels-first where the model expects it?",
                fmt_axes(&self.axes)
            );
        }
        let is_len = |a: &Ax| match a.role {
            Role::Len => true,
            Role::In(_) => pre,
            Role::Unit => pre || self.len == 1,
            _ => false,
        };
        if rank == 3 {
            if !is_len(&self.axes[2]) {
                bail!(
                    "{label}: {what} reads axis 2 of {} as the sequence, but it is not",
                    fmt_axes(&self.axes)
                );
            }
            return Ok((2, None));
        }
        let (h, w) = (self.axes[2], self.axes[3]);
        if h.size > 1 && w.size > 1 {
            bail!(
                "{label}: a 2-D {what} over a {}×{} input; only 1-D layers (or 2-D ones over an input of height or width 1) are supported — is this an image model?",
                h.size,
                w.size
            );
        }
        if h.size > 1 || (h.size == 1 && w.size == 1 && h.role == Role::Len) {
            if !is_len(&h) {
                bail!(
                    "{label}: {what}: axis 2 of {} is not the sequence",
                    fmt_axes(&self.axes)
                );
            }
            Ok((2, Some(3)))
        } else {
            if !is_len(&w) {
                bail!(
                    "{label}: {what}: axis 3 of {} is not the sequence",
                    fmt_axes(&self.axes)
                );
            }
            Ok((3, Some(2)))
        }
    }

    fn finish_block(&mut self, label: &str) -> Result<()> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        if !p.relu {
            bail!(
                "{label}: {} is not followed by a ReLU; every block is conv → (BatchNorm) → ReLU → (pool)",
                p.label
            );
        }
        let i = self.blocks.len();
        let mut block = p.block;
        let n = block.filters;
        let mut bias = p.bias;
        let mut bn = None;
        match (p.bn, p.affine) {
            (Some((gamma, beta, mean, var, eps)), None) => {
                let gamma = if eps == BN_EPSILON {
                    gamma
                } else {
                    self.notes.push(format!(
                        "block {i}: BatchNorm epsilon {eps:e} rescaled to the kernels' {BN_EPSILON:e} (γ adjusted so that γ/√(var+ε) is unchanged)"
                    ));
                    gamma
                        .iter()
                        .zip(&var)
                        .map(|(&g, &v)| {
                            let v = v as f64;
                            (g as f64 * ((v + BN_EPSILON as f64) / (v + eps as f64)).sqrt()) as f32
                        })
                        .collect()
                };
                bn = Some((gamma, beta, mean, var));
            }
            (None, Some((a, b))) if a.iter().all(|&x| x == 1.0) => {
                // Only a bias: fold it into the convolution's.
                for k in 0..n {
                    bias[k] = (bias[k] as f64 + b[k]) as f32;
                }
            }
            (None, Some((a, b))) => {
                // A per-channel scale and shift (how tf2onnx writes an inference BatchNorm):
                // a BatchNorm with mean 0 and variance 1.
                let root = (1.0 + BN_EPSILON as f64).sqrt();
                bn = Some((
                    a.iter().map(|&x| (x * root) as f32).collect(),
                    b.iter().map(|&x| x as f32).collect(),
                    vec![0.0; n],
                    vec![1.0; n],
                ));
            }
            (None, None) => {}
            (Some(_), Some(_)) => unreachable!("a BatchNorm mixed with others becomes an affine"),
        }
        let in_ch = self.weights_in_channels(i);
        self.weights.insert(
            format!("conv{i}.weight"),
            vec![n, in_ch, block.kernel],
            p.weight,
        );
        self.weights.insert(format!("conv{i}.bias"), vec![n], bias);
        block.batch_norm = bn.is_some();
        if let Some((g, b, m, v)) = bn {
            for (name, data) in [("gamma", g), ("beta", b), ("mean", m), ("var", v)] {
                self.weights.insert(format!("bn{i}.{name}"), vec![n], data);
            }
        }
        self.blocks.push(block);
        Ok(())
    }

    fn weights_in_channels(&self, i: usize) -> usize {
        if i == 0 {
            self.input_info.map_or(1, |x| x.1)
        } else {
            self.blocks[i - 1].filters
        }
    }

    fn conv(&mut self, n: &NodeProto, a: &Attrs, label: &str) -> Result<()> {
        match self.stage {
            Stage::Pre | Stage::Act | Stage::Pooled => {}
            Stage::Conv => bail!(
                "{label}: a convolution right after another one, without a ReLU between; every block is conv → (BatchNorm) → ReLU → (pool)"
            ),
            s => bail!("{label}: a convolution {}", s.describe()),
        }
        self.finish_block(label)?;
        if self.blocks.len() >= crate::net::spec::MAX_BLOCKS {
            bail!("{label}: more than {} blocks", crate::net::spec::MAX_BLOCKS);
        }
        let (li, unit) = self.spatial(label, "convolution")?;
        let rank = self.axes.len();
        let in_ch = self.axes[1].size;
        let in_len = self.axes[li].size;
        let wname = n
            .input
            .get(1)
            .filter(|x| !x.is_empty())
            .ok_or_else(|| anyhow!("{label}: no weight input"))?;
        let w = self.konst(wname, label, "weight")?;
        let wdata = w.floats(&format!("{label}: its weight"))?;
        if w.dims.len() != rank {
            bail!(
                "{label}: weight of shape {:?} for an input of rank {rank}",
                w.dims
            );
        }
        let group = a.int("group")?.unwrap_or(1);
        if group != 1 {
            bail!("{label}: grouped or depthwise convolution (group {group}) is not supported");
        }
        let filters = w.dims[0];
        if w.dims[1] != in_ch {
            bail!(
                "{label}: weight of shape {:?} for {in_ch} input channels",
                w.dims
            );
        }
        let kernel = w.dims[li];
        if let Some(u) = unit {
            if w.dims[u] != 1 {
                bail!("{label}: a 2-D kernel {:?}; only a kernel of height or width 1 over a unit axis is supported", &w.dims[2..]);
            }
        }
        let sp = rank - 2;
        let at =
            |v: &Option<Vec<i64>>, name: &str, default: i64, count: usize| -> Result<Vec<i64>> {
                match v {
                    None => Ok(vec![default; count]),
                    Some(v) if v.len() == count => Ok(v.clone()),
                    Some(v) => bail!("{label}: '{name}' {v:?} has not {count} values"),
                }
            };
        if let Some(ks) = a.ints("kernel_shape")? {
            if ks.len() != sp || ks.iter().zip(&w.dims[2..]).any(|(&k, &d)| k != d as i64) {
                bail!(
                    "{label}: kernel_shape {ks:?} disagrees with the weight's {:?}",
                    &w.dims[2..]
                );
            }
        }
        let strides = at(&a.ints("strides")?, "strides", 1, sp)?;
        let dil = at(&a.ints("dilations")?, "dilations", 1, sp)?;
        if dil.iter().any(|&d| d != 1) {
            bail!("{label}: dilation {dil:?} is not supported (the kernels compute dilation 1)");
        }
        let s_idx = li - 2;
        let stride = size(
            strides[s_idx],
            1,
            crate::net::spec::MAX_KERNEL,
            &format!("{label}: stride"),
        )?;
        let kernel = size(
            kernel as i64,
            1,
            crate::net::spec::MAX_KERNEL,
            &format!("{label}: kernel"),
        )?;
        let filters = size(
            filters as i64,
            1,
            crate::net::spec::MAX_FILTERS,
            &format!("{label}: filters"),
        )?;
        let auto_pad = a.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        let pads = at(&a.ints("pads")?, "pads", 0, 2 * sp)?;
        if pads
            .iter()
            .any(|&p| !(0..=crate::net::spec::MAX_KERNEL as i64).contains(&p))
        {
            bail!("{label}: pads {pads:?} out of range");
        }
        if let Some(u) = unit {
            let ui = u - 2;
            if pads[ui] != 0 || pads[ui + sp] != 0 {
                bail!("{label}: pads {pads:?} pad the unit axis");
            }
        }
        let (pl, pr) = (pads[s_idx] as usize, pads[s_idx + sp] as usize);
        let same = conv_padding(in_len, kernel, stride, Padding::Same);
        let same_len = conv_out_len(in_len, kernel, stride, Padding::Same);
        let padding = match auto_pad.as_str() {
            "VALID" => Padding::Valid,
            "SAME_UPPER" => Padding::Same,
            "SAME_LOWER" if same.0 == same.1 => Padding::Same,
            "SAME_LOWER" => bail!(
                "{label}: auto_pad SAME_LOWER puts the odd padding on the left; the kernels pad as Keras/SAME_UPPER does"
            ),
            "NOTSET" | "" => {
                if pl == 0 && pr == 0 {
                    Padding::Valid
                } else if (pl, pr) == same {
                    Padding::Same
                } else {
                    bail!(
                        "{label}: pads ({pl}, {pr}) on a sequence of length {in_len} with kernel {kernel} and stride {stride}; the kernels support no padding or Keras 'same' padding, which is ({}, {}) here",
                        same.0,
                        same.1
                    );
                }
            }
            other => bail!("{label}: auto_pad '{other}' is not an ONNX value"),
        };
        let conv_len = conv_out_len(in_len, kernel, stride, padding).ok_or_else(|| {
            anyhow!("{label}: kernel {kernel} is longer than its input (length {in_len})")
        })?;
        if padding == Padding::Same && Some(conv_len) != same_len {
            bail!("{label}: inconsistent 'same' output length");
        }
        if self.stage == Stage::Pre {
            // The first convolution says which input axis is which.
            let ch_axis = self.axes[1].role;
            let len_axis = self.axes[li].role;
            let layout = match (ch_axis, len_axis) {
                (Role::In(c), Role::In(l)) if c < l => InputLayout::ChannelsFirst,
                (Role::In(_), Role::In(_)) => InputLayout::ChannelsLast,
                (Role::In(_), _) => InputLayout::ChannelsLast,
                _ => InputLayout::SingleChannel,
            };
            if in_ch > 1 && layout == InputLayout::ChannelsLast && !matches!(len_axis, Role::In(_))
            {
                bail!("{label}: cannot tell the input's sequence axis");
            }
            self.input_info = Some((in_len, in_ch, layout));
        }
        let bias = match n.input.get(2).filter(|x| !x.is_empty()) {
            Some(b) => {
                let c = self.konst(b, label, "bias")?;
                let v = c.floats(&format!("{label}: its bias"))?;
                if v.len() != filters {
                    bail!("{label}: bias of {} values for {filters} filters", v.len());
                }
                v
            }
            None => vec![0.0; filters],
        };
        if wdata.len() != filters * in_ch * kernel {
            bail!("{label}: weight holds {} values", wdata.len());
        }
        self.pending = Some(Pending {
            label: label.to_string(),
            block: Block {
                filters,
                kernel,
                stride,
                padding,
                batch_norm: false,
                pool: None,
                dropout: 0.0,
            },
            weight: wdata,
            bias,
            bn: None,
            affine: None,
            max_before_relu: false,
            relu: false,
        });
        self.axes[1] = Ax::new(Role::Chan, filters);
        self.axes[li] = Ax::new(Role::Len, conv_len);
        self.channels = filters;
        self.len = conv_len;
        self.stage = Stage::Conv;
        Ok(())
    }

    fn batch_norm(&mut self, n: &NodeProto, a: &Attrs, label: &str) -> Result<()> {
        if self.stage != Stage::Conv {
            bail!(
                "{label}: a BatchNormalization {}; the kernels support it between a convolution and its ReLU",
                self.stage.describe()
            );
        }
        if a.int("training_mode")?.unwrap_or(0) != 0 {
            bail!("{label}: BatchNormalization in training mode; export the model for inference");
        }
        let chan_ok = |a: &Ax| a.role == Role::Chan || (a.size == 1 && self.channels == 1);
        if self.axes.len() < 2 || !chan_ok(&self.axes[1]) {
            bail!(
                "{label}: normalises axis 1 of {}, which is not the channels",
                fmt_axes(&self.axes)
            );
        }
        let eps = a.float("epsilon")?.unwrap_or(1e-5);
        if !(eps.is_finite() && eps >= 0.0) {
            bail!("{label}: epsilon {eps}");
        }
        let c = self.channels;
        let mut vals = Vec::with_capacity(4);
        for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")] {
            let name = n
                .input
                .get(i)
                .filter(|x| !x.is_empty())
                .ok_or_else(|| anyhow!("{label}: no {what} input"))?;
            let v = self
                .konst(name, label, what)?
                .floats(&format!("{label}: its {what}"))?;
            if v.len() != c {
                bail!("{label}: {what} has {} values for {c} channels", v.len());
            }
            if v.iter().any(|x| !x.is_finite()) || (i == 4 && v.iter().any(|&x| x < 0.0)) {
                bail!("{label}: {what} has a non-finite or negative value");
            }
            vals.push(v);
        }
        let p = self.pending.as_mut().expect("pending conv");
        if p.max_before_relu {
            bail!("{label}: BatchNorm between a max pool and its ReLU is not supported");
        }
        let var = vals.pop().expect("4");
        let mean = vals.pop().expect("3");
        let beta = vals.pop().expect("2");
        let gamma = vals.pop().expect("1");
        if p.bn.is_none() && p.affine.is_none() {
            p.bn = Some((gamma, beta, mean, var, eps));
        } else {
            let (mut sa, mut sb) = take_affine(p, c);
            for k in 0..c {
                let s = gamma[k] as f64 / (var[k] as f64 + eps as f64).sqrt();
                let t = beta[k] as f64 - mean[k] as f64 * s;
                sa[k] *= s;
                sb[k] = sb[k] * s + t;
            }
            p.affine = Some((sa, sb));
        }
        Ok(())
    }

    fn relu(&mut self, label: &str) -> Result<()> {
        if self.stage != Stage::Conv {
            bail!(
                "{label}: a ReLU {}; the kernels apply ReLU right after a convolution (and its BatchNorm)",
                self.stage.describe()
            );
        }
        let p = self.pending.as_mut().expect("pending conv");
        p.relu = true;
        self.stage = if p.max_before_relu {
            Stage::Pooled
        } else {
            Stage::Act
        };
        Ok(())
    }

    fn pool(&mut self, op: &str, a: &Attrs, label: &str) -> Result<()> {
        let kind = if op == "MaxPool" {
            PoolKind::Max
        } else {
            PoolKind::Avg
        };
        match (self.stage, kind) {
            (Stage::Act, _) => {}
            (Stage::Conv, PoolKind::Max) => {}
            (Stage::Pooled, _) => {
                bail!("{label}: a second pooling in one block; the kernels pool once per block")
            }
            (s, _) => bail!(
                "{label}: {op} {}; the kernels pool after a block's ReLU",
                s.describe()
            ),
        }
        let (li, unit) = self.spatial(label, op)?;
        let sp = self.axes.len() - 2;
        let ks = a
            .ints("kernel_shape")?
            .ok_or_else(|| anyhow!("{label}: no kernel_shape"))?;
        if ks.len() != sp {
            bail!("{label}: kernel_shape {ks:?} for {sp} spatial axes");
        }
        let strides = a.ints("strides")?.unwrap_or_else(|| vec![1; sp]);
        let pads = a.ints("pads")?.unwrap_or_else(|| vec![0; 2 * sp]);
        if strides.len() != sp || pads.len() != 2 * sp {
            bail!("{label}: strides {strides:?} / pads {pads:?} do not match the kernel_shape");
        }
        if let Some(d) = a.ints("dilations")? {
            if d.iter().any(|&x| x != 1) {
                bail!("{label}: dilated pooling is not supported");
            }
        }
        if pads.iter().any(|&p| p != 0) {
            bail!("{label}: padded pooling (pads {pads:?}) is not supported; the kernels pool 'valid'");
        }
        let s_idx = li - 2;
        if let Some(u) = unit {
            if ks[u - 2] != 1 {
                bail!("{label}: a 2-D pooling window {ks:?}");
            }
        }
        let window = size(
            ks[s_idx],
            1,
            crate::net::spec::MAX_KERNEL,
            &format!("{label}: window"),
        )?;
        if strides[s_idx] != window as i64 {
            bail!(
                "{label}: pooling window {window} with stride {}; the kernels pool with stride = window",
                strides[s_idx]
            );
        }
        let len = self.axes[li].size;
        let ceil = a.int("ceil_mode")?.unwrap_or(0) != 0;
        let auto_pad = a.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        if (ceil || auto_pad.starts_with("SAME")) && len % window != 0 {
            bail!(
                "{label}: ceil_mode / 'same' pooling of a length {len} by {window} keeps a partial window; the kernels drop it"
            );
        }
        if len < window {
            bail!("{label}: window {window} is longer than the sequence ({len})");
        }
        let out_len = len / window;
        let p = self.pending.as_mut().expect("a block is pending");
        if window == 1 {
            self.notes.push(format!(
                "{label}: a pooling window of 1 does nothing; dropped"
            ));
        } else {
            p.block.pool = Some(Pool { kind, size: window });
        }
        if self.stage == Stage::Conv {
            p.max_before_relu = true;
        } else {
            self.stage = Stage::Pooled;
        }
        self.axes[li] = Ax::new(Role::Len, out_len);
        self.len = out_len;
        Ok(())
    }

    fn global_average_pool(&mut self, label: &str) -> Result<()> {
        if !matches!(self.stage, Stage::Act | Stage::Pooled) {
            bail!("{label}: global average pooling {}", self.stage.describe());
        }
        let (li, unit) = self.spatial(label, "GlobalAveragePool")?;
        self.finish_block(label)?;
        self.axes[li] = Ax::new(Role::Unit, 1);
        if let Some(u) = unit {
            self.axes[u] = Ax::new(Role::Unit, 1);
        }
        self.len = 1;
        self.stage = Stage::Gap;
        Ok(())
    }

    fn reduce_mean(&mut self, axes: Option<Vec<i64>>, keep: bool, label: &str) -> Result<()> {
        if !matches!(self.stage, Stage::Act | Stage::Pooled) {
            bail!("{label}: a mean {}", self.stage.describe());
        }
        let rank = self.axes.len();
        let axes: Vec<usize> = match axes {
            Some(v) if !v.is_empty() => v
                .iter()
                .map(|&x| axis(x, rank, label))
                .collect::<Result<_>>()?,
            _ => bail!("{label}: a mean over all axes; the kernels average over the sequence only"),
        };
        let mut has_len = self.len == 1;
        for &i in &axes {
            match self.axes[i].role {
                Role::Len => has_len = true,
                Role::Unit => {}
                Role::Chan if self.channels == 1 => {}
                _ => bail!(
                    "{label}: a mean over axis {i} of {}; the kernels average over the sequence only",
                    fmt_axes(&self.axes)
                ),
            }
        }
        if !has_len {
            bail!(
                "{label}: a mean that does not reduce the sequence axis of {}",
                fmt_axes(&self.axes)
            );
        }
        self.finish_block(label)?;
        self.axes = self
            .axes
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                if axes.contains(&i) {
                    keep.then_some(Ax::new(Role::Unit, 1))
                } else if a.role == Role::Len {
                    Some(Ax::new(Role::Unit, 1))
                } else {
                    Some(*a)
                }
            })
            .collect();
        self.len = 1;
        self.stage = Stage::Gap;
        Ok(())
    }

    /// The features entering the dense layer: `[N, C]` (and unit axes before C for MatMul).
    fn features_ok(&self, label: &str, op: &str, strict_rank2: bool) -> Result<()> {
        if self.stage != Stage::Gap {
            bail!(
                "{label}: a dense layer ({op}) {}; the kernels have one dense layer, after global average pooling",
                self.stage.describe()
            );
        }
        if self.axes.len() < 2 {
            bail!("{label}: {op} over {}", fmt_axes(&self.axes));
        }
        let last = self.axes[self.axes.len() - 1];
        let last_ok = last.role == Role::Chan || (last.size == 1 && self.channels == 1);
        let rest_ok = self.axes[1..self.axes.len() - 1]
            .iter()
            .all(|a| a.size == 1);
        if !last_ok || !rest_ok || (strict_rank2 && self.axes.len() != 2) || self.axes.len() < 2 {
            bail!(
                "{label}: {op} over {}; it must take the pooled features [N, C] (add Flatten or Squeeze)",
                fmt_axes(&self.axes)
            );
        }
        Ok(())
    }

    fn gemm(&mut self, n: &NodeProto, a: &Attrs, label: &str) -> Result<()> {
        self.features_ok(label, "Gemm", true)?;
        if a.int("transA")?.unwrap_or(0) != 0 {
            bail!("{label}: transA is not supported");
        }
        let trans_b = a.int("transB")?.unwrap_or(0) != 0;
        let alpha = a.float("alpha")?.unwrap_or(1.0);
        let beta = a.float("beta")?.unwrap_or(1.0);
        let bname = n
            .input
            .get(1)
            .filter(|x| !x.is_empty())
            .ok_or_else(|| anyhow!("{label}: no B input"))?;
        let b = self.konst(bname, label, "weight")?.clone();
        let c = self.channels;
        let (mut w, classes) = dense_weight(&b, trans_b, c, label)?;
        if alpha != 1.0 {
            w.iter_mut()
                .for_each(|x| *x = (*x as f64 * alpha as f64) as f32);
        }
        let bias = match n.input.get(2).filter(|x| !x.is_empty()) {
            Some(cn) => {
                let cc = self.konst(cn, label, "bias")?.clone();
                let v = cc.floats(&format!("{label}: its bias"))?;
                let ok = cc.dims.iter().filter(|&&d| d != 1).count() <= 1
                    && (v.len() == classes || v.len() == 1);
                if !ok {
                    bail!("{label}: bias of shape {:?} for {classes} classes", cc.dims);
                }
                (0..classes)
                    .map(|k| (v[if v.len() == 1 { 0 } else { k }] as f64 * beta as f64) as f32)
                    .collect()
            }
            None => vec![0.0; classes],
        };
        self.set_dense(w, bias, classes)
    }

    fn matmul(&mut self, n: &NodeProto, label: &str) -> Result<()> {
        self.features_ok(label, "MatMul", false)?;
        let bname = n
            .input
            .get(1)
            .filter(|x| !x.is_empty())
            .ok_or_else(|| anyhow!("{label}: no second input"))?;
        let b = self.konst(bname, label, "weight")?.clone();
        let (w, classes) = dense_weight(&b, false, self.channels, label)?;
        self.set_dense(w, vec![0.0; classes], classes)
    }

    fn set_dense(&mut self, w: Vec<f32>, bias: Vec<f32>, classes: usize) -> Result<()> {
        if w.iter().chain(&bias).any(|x| !x.is_finite()) {
            bail!("the dense layer has a non-finite weight");
        }
        let last = self.axes.len() - 1;
        self.axes[last] = Ax::new(Role::Class, classes);
        self.dense = Some((w, bias, classes));
        self.stage = Stage::Dense;
        Ok(())
    }

    fn softmax(&mut self, a: &Attrs, label: &str) -> Result<()> {
        if self.stage != Stage::Dense {
            bail!(
                "{label}: a softmax {}; only a final softmax on the logits is supported",
                self.stage.describe()
            );
        }
        let rank = self.axes.len();
        let default = if self.opset >= 13 { -1 } else { 1 };
        let ax = axis(a.int("axis")?.unwrap_or(default), rank, label)?;
        if ax == 0 {
            bail!("{label}: softmax over the batch axis");
        }
        let ok = if self.opset >= 13 {
            self.axes[ax].role == Role::Class
        } else {
            // Before opset 13 the input is coerced to 2-D at `axis`.
            self.axes[ax..]
                .iter()
                .all(|x| x.role == Role::Class || x.size == 1)
                && self.axes[1..ax].iter().all(|x| x.size == 1)
        };
        if !ok {
            bail!(
                "{label}: softmax over axis {ax} of {}, not over the classes",
                fmt_axes(&self.axes)
            );
        }
        self.notes.push(format!(
            "{label}: the final softmax is dropped; the kernels return logits (the same argmax)"
        ));
        self.stage = Stage::Softmax;
        Ok(())
    }
}

fn take_affine(p: &mut Pending, n: usize) -> (Vec<f64>, Vec<f64>) {
    if let Some(ab) = p.affine.take() {
        return ab;
    }
    if let Some((g, b, m, v, eps)) = p.bn.take() {
        let mut sa = vec![0.0; n];
        let mut sb = vec![0.0; n];
        for k in 0..n {
            let s = g[k] as f64 / (v[k] as f64 + eps as f64).sqrt();
            sa[k] = s;
            sb[k] = b[k] as f64 - m[k] as f64 * s;
        }
        return (sa, sb);
    }
    (vec![1.0; n], vec![0.0; n])
}

/// A dense weight constant as `[in][classes]` and the class count.
fn dense_weight(b: &Const, trans: bool, inputs: usize, label: &str) -> Result<(Vec<f32>, usize)> {
    let v = b.floats(&format!("{label}: its weight"))?;
    if b.dims.len() != 2 {
        bail!(
            "{label}: weight of shape {:?}; a matrix was expected",
            b.dims
        );
    }
    let (rows, cols) = (b.dims[0], b.dims[1]);
    let (fan_in, classes) = if trans { (cols, rows) } else { (rows, cols) };
    if fan_in != inputs {
        bail!(
            "{label}: weight of shape {:?} for {inputs} features",
            b.dims
        );
    }
    if !(2..=256).contains(&classes) {
        bail!("{label}: {classes} outputs; the kernels classify into 2 to 256 classes");
    }
    let w = if trans {
        let mut t = vec![0.0; v.len()];
        for k in 0..classes {
            for i in 0..fan_in {
                t[i * classes + k] = v[k * fan_in + i];
            }
        }
        t
    } else {
        v
    };
    Ok((w, classes))
}
