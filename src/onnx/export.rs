//! [`NetSpec`] + [`Weights`] → ONNX (opset 13, float32).
//!
//! The graph computes what the kernels compute, on the input `byte × 1/255` laid out
//! channels-first `[N, C, L]` (batch symbolic), or — with an input embedding — on the bytes
//! themselves as int64 indices `[N, L]`, each looked up in the `[256, D]` table (`Gather`, axis
//! 0, giving `[N, L, D]`) and transposed to the channels-first `[N, D, L]` the convolutions
//! read; then per block Conv (explicit Keras-'same' or zero
//! pads) → BatchNormalization (ε = 1e-3, the statistics as trained, not folded) → Relu →
//! MaxPool/AveragePool (window = stride, no padding); then GlobalAveragePool → Flatten → Gemm
//! to the logits. Dropout is training-only and left out of the graph; the spec JSON travels in
//! the model's metadata ([`super::META_SPEC`]) so the importer restores it, and the input scale
//! in [`super::META_INPUT_SCALE`].

use super::{META_INPUT_SCALE, META_SPEC};
use crate::net::NetSpec;
use crate::weights::{BnParam, Param, Weights, BN_EPSILON};
use anyhow::{Context, Result};
use onnx_ir::{
    AttributeProto, AttributeType, GraphProto, Message, ModelProto, NodeProto, TensorProto,
    ValueInfoProto,
};

/// Operator set of the exported models.
pub const EXPORT_OPSET: i64 = 13;
/// IR version matching opset 13.
const IR_VERSION: i64 = 7;

pub(super) fn ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

pub(super) fn int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

pub(super) fn float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::FLOAT.into();
    a.f = v;
    a
}

pub(super) fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = name.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![output.into()];
    n.attribute = attrs;
    n
}

pub(super) fn initializer(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    raw_initializer(name, dims, DataType::Float, bytes)
}

/// ONNX `TensorProto.DataType` codes of the element types we write.
#[derive(Debug, Clone, Copy)]
pub(super) enum DataType {
    Float = 1,
    Int8 = 3,
    Int32 = 6,
    Int64 = 7,
}

/// A constant tensor from its little-endian bytes.
pub(super) fn raw_initializer(
    name: &str,
    dims: &[usize],
    ty: DataType,
    bytes: Vec<u8>,
) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.data_type = ty as i32;
    t.raw_data = bytes.into();
    t
}

/// A float tensor value with a symbolic batch `N` and fixed other dims.
pub(super) fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    typed_value_info(name, DataType::Float, dims)
}

/// A tensor value of element type `ty` with a symbolic batch `N` and fixed other dims.
fn typed_value_info(name: &str, ty: DataType, dims: &[usize]) -> ValueInfoProto {
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    let elem = ty as i32;
    let ty = v.type_.mut_or_insert_default();
    let tt = ty.mut_tensor_type();
    tt.elem_type = elem;
    let shape = tt.shape.mut_or_insert_default();
    shape.dim.push(Default::default());
    shape.dim[0].set_dim_param("N".into());
    for &d in dims {
        shape.dim.push(Default::default());
        shape
            .dim
            .last_mut()
            .expect("pushed")
            .set_dim_value(d as i64);
    }
    v
}

/// Render a network as an ONNX model (the serialised bytes).
pub fn export(spec: &NetSpec, weights: &Weights, doc: &str) -> Result<Vec<u8>> {
    let shapes = spec.shapes()?;
    weights
        .check(spec)
        .context("the weights do not match the spec")?;
    let mut g = GraphProto::new();
    g.name = "nas".into();
    let mut x = graph_input(&mut g, spec);
    if spec.input.embedding_dim().is_some() {
        let table = Param::Embedding.name();
        constants(&mut g, weights, &[&table]);
        x = embedding(&mut g, &table, &x);
    }
    for (i, (b, sh)) in spec.blocks.iter().zip(&shapes).enumerate() {
        x = block(&mut g, weights, i, b, sh, x);
    }
    g.node
        .push(node("GlobalAveragePool", "gap", &[&x], "gap", vec![]));
    g.node.push(node(
        "Flatten",
        "flatten",
        &["gap"],
        "features",
        vec![int("axis", 1)],
    ));
    let (dw, db) = (Param::DenseWeight.name(), Param::DenseBias.name());
    constants(&mut g, weights, &[&dw, &db]);
    g.node.push(node(
        "Gemm",
        "dense",
        &["features", &dw, &db],
        "logits",
        vec![],
    ));
    g.output.push(value_info("logits", &[spec.classes]));
    model(g, spec, doc, &[])
}

/// Declare the graph's input — `byte × 1/255` as float `[N, C, L]`, or with an input
/// embedding the bytes as int64 indices `[N, L]` — and return its name.
pub(super) fn graph_input(g: &mut GraphProto, spec: &NetSpec) -> String {
    g.input.push(match spec.input.embedding_dim() {
        None => value_info("input", &[spec.input_channels, spec.input_len]),
        Some(_) => typed_value_info("input", DataType::Int64, &[spec.input_len]),
    });
    "input".to_string()
}

/// The input embedding: `Gather` (axis 0) of the `[256, D]` table `table` at the int64 indices
/// `indices` (`[N, L]` → `[N, L, D]`), then `Transpose` to the channels-first `[N, D, L]` the
/// convolutions read; returns that tensor's name.
pub(super) fn embedding(g: &mut GraphProto, table: &str, indices: &str) -> String {
    g.node.push(node(
        "Gather",
        "embed",
        &[table, indices],
        "embed",
        vec![int("axis", 0)],
    ));
    g.node.push(node(
        "Transpose",
        "embed.channels_first",
        &["embed"],
        "embed.channels_first",
        vec![ints("perm", &[0, 2, 1])],
    ));
    "embed.channels_first".to_string()
}

/// The named weight tensors as initializers, under their tensor names (`weights::Param::name`;
/// present: the exporter checks the weights against the spec first).
fn constants(g: &mut GraphProto, weights: &Weights, names: &[&str]) {
    for n in names {
        if let Some(t) = weights.tensors.get(*n) {
            g.initializer.push(initializer(n, &t.shape, &t.data));
        }
    }
}

/// Block `i` after tensor `x`: Conv → BatchNormalization (if any) → Relu → pooling (if any);
/// returns the block's output tensor.
fn block(
    g: &mut GraphProto,
    weights: &Weights,
    i: usize,
    b: &crate::net::Block,
    sh: &crate::net::BlockShape,
    x: String,
) -> String {
    let (w, bias) = (Param::ConvWeight(i).name(), Param::ConvBias(i).name());
    constants(g, weights, &[&w, &bias]);
    let conv = format!("conv{i}");
    g.node.push(node(
        "Conv",
        &conv,
        &[&x, &w, &bias],
        &conv,
        vec![
            ints("kernel_shape", &[b.kernel as i64]),
            ints("strides", &[b.stride as i64]),
            ints("pads", &[sh.pad_left as i64, sh.pad_right as i64]),
            ints("dilations", &[1]),
            int("group", 1),
        ],
    ));
    let mut x = conv;
    if b.batch_norm {
        let names: Vec<String> = BnParam::ALL
            .iter()
            .map(|&p| Param::Bn(i, p).name())
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        constants(g, weights, &refs);
        let out = format!("bn{i}");
        let inputs = [x.as_str(), refs[0], refs[1], refs[2], refs[3]];
        let attrs = vec![float("epsilon", BN_EPSILON)];
        g.node
            .push(node("BatchNormalization", &out, &inputs, &out, attrs));
        x = out;
    }
    let relu = format!("relu{i}");
    g.node.push(node("Relu", &relu, &[&x], &relu, vec![]));
    x = relu;
    if let Some(p) = b.pool {
        let op = match p.kind {
            crate::net::PoolKind::Max => "MaxPool",
            crate::net::PoolKind::Avg => "AveragePool",
        };
        let out = format!("pool{i}");
        let window = vec![
            ints("kernel_shape", &[p.size as i64]),
            ints("strides", &[p.size as i64]),
        ];
        g.node.push(node(op, &out, &[&x], &out, window));
        x = out;
    }
    x
}

/// Wrap a graph into an opset-13 model whose metadata carries the spec, the input scale, the
/// input layout and what the output means, plus `extra` entries.
pub(super) fn model(
    g: GraphProto,
    spec: &NetSpec,
    doc: &str,
    extra: &[(&str, String)],
) -> Result<Vec<u8>> {
    let mut m = ModelProto::new();
    m.ir_version = IR_VERSION;
    m.producer_name = "nas".into();
    m.producer_version = env!("CARGO_PKG_VERSION").into();
    m.doc_string = doc.into();
    m.opset_import.push(Default::default());
    m.opset_import[0].domain = String::new();
    m.opset_import[0].version = EXPORT_OPSET;
    // With an input embedding the graph reads the bytes themselves: no input scale.
    let input = match spec.input.embedding_dim() {
        None => vec![
            (META_INPUT_SCALE, format!("{}", crate::data::INPUT_SCALE)),
            (
                "nas.input_layout",
                "input[n][channel][position] = byte × nas.input_scale (channels-first)".to_string(),
            ),
        ],
        Some(dim) => vec![(
            "nas.input_layout",
            format!(
                "input[n][position] = byte (int64), the row of the [256, {dim}] embedding table"
            ),
        )],
    };
    for (k, v) in [(META_SPEC, serde_json::to_string(spec)?)]
        .into_iter()
        .chain(input)
        .chain([(
            "nas.output",
            "logits (no softmax): argmax is the class".to_string(),
        )])
        .chain(extra.iter().cloned())
    {
        m.metadata_props.push(Default::default());
        let e = m.metadata_props.last_mut().expect("pushed");
        e.key = k.into();
        e.value = v;
    }
    m.graph = Some(g).into();
    Ok(m.write_to_bytes()?)
}
