//! The model around the nodes: the protobuf parsed, the default opset, the initializers, the
//! one input (its element type and shape, turned into tracked axes) and the one output, and the
//! metadata.

use super::super::proto::{self, Const};
use super::axes::{Ax, Role};
use anyhow::{anyhow, bail, Result};
use onnx_ir::{GraphProto, Message, ModelProto, TensorShapeProto, ValueInfoProto};
use std::collections::HashMap;

/// Parse the protobuf.
pub(super) fn parse(bytes: &[u8]) -> Result<ModelProto> {
    ModelProto::parse_from_bytes(bytes).map_err(|e| {
        anyhow!("not an ONNX model: the file is not a valid ONNX protobuf ({e}); is it truncated?")
    })
}

/// The model's graph, which must have nodes.
pub(super) fn nonempty_graph(model: &ModelProto) -> Result<&GraphProto> {
    let Some(graph) = model.graph.as_ref() else {
        bail!("not an ONNX model: it holds no graph");
    };
    if graph.node.is_empty() {
        bail!("not an ONNX model, or an empty one: its graph has no nodes");
    }
    Ok(graph)
}

/// The version of the default operator set the model imports (1 when it names none).
pub(super) fn default_opset(model: &ModelProto) -> Result<i64> {
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
    Ok(opset)
}

/// Ops of quantized graphs (QDQ and QOperator forms). The importer reads float networks:
/// their int8 form is ours to compute (`--dtype int8`), from the float weights.
const QUANTIZED_OPS: &[&str] = &[
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
];

/// A quantized model is refused up front, naming its first quantization node, rather than
/// failing on whichever int8 initializer comes first.
pub(super) fn refuse_quantized(graph: &GraphProto) -> Result<()> {
    if let Some((i, n)) = graph
        .node
        .iter()
        .enumerate()
        .find(|(_, n)| QUANTIZED_OPS.contains(&n.op_type.as_str()))
    {
        bail!(
            "{} makes this a quantized model; nas import reads float32 models: import the float \
             model (e.g. `nas export --lang onnx` without --dtype int8, or your framework's float \
             export) and deploy it in int8 with --dtype int8",
            super::node::node_label(i, n)
        );
    }
    Ok(())
}

/// The initializers, decoded, by name.
pub(super) fn initializers(graph: &GraphProto) -> Result<HashMap<String, Const>> {
    let mut consts = HashMap::new();
    for (i, t) in graph.initializer.iter().enumerate() {
        let c = proto::tensor(t, &format!("initializer '{}'", t.name))?;
        if t.name.is_empty() {
            bail!("initializer #{i} has no name");
        }
        consts.insert(t.name.clone(), c);
    }
    Ok(consts)
}

/// The graph's one input that is not an initializer.
pub(super) fn single_input<'g>(
    graph: &'g GraphProto,
    consts: &HashMap<String, Const>,
) -> Result<&'g ValueInfoProto> {
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
    Ok(inputs[0])
}

/// The name of the graph's one output.
pub(super) fn single_output(graph: &GraphProto) -> Result<String> {
    if graph.output.len() != 1 {
        let names: Vec<&str> = graph.output.iter().map(|v| v.name.as_str()).collect();
        bail!(
            "the graph has {} outputs ({names:?}); the kernels return exactly one, the logits",
            graph.output.len()
        );
    }
    Ok(graph.output[0].name.clone())
}

/// The input's axes (batch first, then fixed sizes, each `In(k)` or a unit axis until the first
/// convolution says what it is), its dims (batch as 0), and whether it is an integer tensor
/// (the bytes, as an input embedding's indices).
pub(super) fn input_axes(input: &ValueInfoProto) -> Result<(Vec<Ax>, Vec<usize>, bool)> {
    let (shape, integer) = input_shape(input)?;
    let rank = shape.dim.len();
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
    Ok((axes, input_dims, integer))
}

/// The input's shape, checked to be a float32 (or, for an input embedding, integer) tensor of 2
/// to 4 axes, and whether it is an integer tensor.
fn input_shape(input: &ValueInfoProto) -> Result<(&TensorShapeProto, bool)> {
    let ty = input
        .type_
        .as_ref()
        .filter(|t| t.has_tensor_type())
        .ok_or_else(|| anyhow!("the graph input '{}' is not a tensor", input.name))?;
    let tt = ty.tensor_type();
    let integer = super::embedding::INDEX_TYPES.contains(&tt.elem_type);
    if tt.elem_type != proto::FLOAT && !integer {
        bail!(
            "the graph input '{}' has element type {}; float32 is supported (the kernels turn bytes into floats), or an integer type for the byte indices of an input embedding",
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
    Ok((shape, integer))
}

/// The model's metadata value under `key`.
pub(super) fn metadata(model: &ModelProto, key: &str) -> Option<String> {
    model
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.clone())
}

/// Who wrote the model: producer name and version.
pub(super) fn producer(model: &ModelProto) -> String {
    format!("{} {}", model.producer_name, model.producer_version)
        .trim()
        .to_string()
}
