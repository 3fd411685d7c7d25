//! [`QuantLowered`] → ONNX in the QDQ format (opset 13): the int8 network that `nas export
//! --dtype int8` deploys, written so that onnxruntime, ST Edge AI and other QDQ-aware tools can
//! run it as int8.
//!
//! Every int8 tensor of the kernels appears as a `QuantizeLinear` → `DequantizeLinear` pair
//! with our scale and zero point; the weights are int8 initializers behind a per-channel
//! `DequantizeLinear` (axis 0, zero point 0) and the biases int32 initializers at scale
//! `s_in · s_w[c]`, so a QDQ runtime fuses each conv into `QLinearConv`. Per layer:
//! - conv: `Conv` → `Relu` → Q/DQ at the layer's output parameters; a fused pooling follows as
//!   `MaxPool`/`AveragePool` → Q/DQ at the same parameters (our kernels pool the requantized
//!   values, like this graph);
//! - global average pooling: `GlobalAveragePool` → Q/DQ → `Flatten`;
//! - input embedding: the int8 `[256, D]` table behind a per-tensor `DequantizeLinear` (the
//!   table's own scale and zero point), `Gather` at the int64 byte indices, `Transpose` to
//!   `[N, D, L]`, Q/DQ at the table's parameters (which gives back the table's int8 rows
//!   exactly); the first conv pads that tensor with real 0, the table's zero point, as the
//!   kernels' embed layer writes it;
//! - dense: `Gemm` → Q/DQ; the graph's output is that dequantized tensor, which is exactly
//!   the kernels' `scale · (q − zero_point)` logits.
//!
//! A float runtime evaluating this graph rounds where the kernels use TFLite's fixed-point
//! requantization, so it may differ from them by a quantization step on a tensor; the
//! prediction is the same (checked in `tests/onnx.rs`). The input is `byte × 1/255` as in the
//! float export; its `QuantizeLinear` (scale 1/255, zero point −128) gives back `byte − 128`. With an input
//! embedding the input is the int64 bytes, as in the float export.

use super::export::{
    embedding, graph_input, initializer, int, ints, model, node, raw_initializer, value_info,
    DataType,
};
use crate::net::plan::{ConvOp, Layer, Op};
use crate::net::{NetSpec, PoolKind};
use crate::quant::{QuantLayer, QuantLowered, QuantParams};
use anyhow::{ensure, Result};
use onnx_ir::GraphProto;

/// The graph under construction and the name of its current (float, dequantized) tensor.
struct Builder {
    g: GraphProto,
    x: String,
}

impl Builder {
    /// Add `QuantizeLinear` → `DequantizeLinear` at `p` after the current tensor; `name`
    /// names the int8 tensor (`name`) and its dequantized copy (`name.dq`).
    fn qdq(&mut self, name: &str, p: QuantParams) {
        let (scale, zp) = (format!("{name}.scale"), format!("{name}.zero_point"));
        self.g
            .initializer
            .push(initializer(&scale, &[], &[p.scale]));
        self.g.initializer.push(raw_initializer(
            &zp,
            &[],
            DataType::Int8,
            vec![p.zero_point as i8 as u8],
        ));
        let q = format!("{name}.q");
        let dq = format!("{name}.dq");
        self.g.node.push(node(
            "QuantizeLinear",
            &q,
            &[&self.x, &scale, &zp],
            name,
            vec![],
        ));
        self.g.node.push(node(
            "DequantizeLinear",
            &dq,
            &[name, &scale, &zp],
            &dq,
            vec![],
        ));
        self.x = dq;
    }

    /// A float node on the current tensor whose output becomes the current tensor.
    fn op(
        &mut self,
        op: &str,
        name: &str,
        extra_inputs: &[&str],
        attrs: Vec<onnx_ir::AttributeProto>,
    ) {
        let mut inputs = vec![self.x.as_str()];
        inputs.extend_from_slice(extra_inputs);
        self.g.node.push(node(op, name, &inputs, name, attrs));
        self.x = name.to_string();
    }

    /// The layer's int8 weights (`dims`, ONNX order) and int32 bias as initializers behind
    /// per-channel `DequantizeLinear`s; returns the names of the float weight and bias.
    fn weights(&mut self, layer: &str, q: &QuantLayer, dims: &[usize], w: Vec<i8>) -> [String; 2] {
        let out = q.bias.len();
        let names = [format!("{layer}.weight"), format!("{layer}.bias")];
        let bias_scales: Vec<f32> = q
            .weight_scales
            .iter()
            .map(|&s| (q.input.scale as f64 * s as f64) as f32)
            .collect();
        let tensors = [
            (
                &names[0],
                dims,
                DataType::Int8,
                w.iter().map(|&v| v as u8).collect::<Vec<u8>>(),
                &q.weight_scales,
            ),
            (
                &names[1],
                &[out][..],
                DataType::Int32,
                q.bias.iter().flat_map(|v| v.to_le_bytes()).collect(),
                &bias_scales,
            ),
        ];
        for (name, dims, ty, bytes, scales) in tensors {
            let zero_size = match ty {
                DataType::Int32 => 4,
                _ => 1,
            };
            let (qn, sn, zn) = (
                format!("{name}.q"),
                format!("{name}.scale"),
                format!("{name}.zero_point"),
            );
            self.g
                .initializer
                .push(raw_initializer(&qn, dims, ty, bytes));
            self.g.initializer.push(initializer(&sn, &[out], scales));
            self.g
                .initializer
                .push(raw_initializer(&zn, &[out], ty, vec![0; out * zero_size]));
            self.g.node.push(node(
                "DequantizeLinear",
                &format!("{name}.dq"),
                &[&qn, &sn, &zn],
                name,
                vec![int("axis", 0)],
            ));
        }
        names
    }

    /// The input embedding at the int64 indices `self.x`: the int8 table (`[256][dim]`, one
    /// scale and zero point: the layer's output parameters) behind a `DequantizeLinear`,
    /// gathered, made channels-first, and Q/DQ at the table's parameters.
    fn embed(&mut self, layer: &Layer, dim: usize, q: &QuantLayer) -> Result<()> {
        let rows = crate::net::EMBEDDING_ROWS;
        ensure!(
            q.weights.len() == rows * dim,
            "{}: an int8 table of {} values for {rows} rows of {dim}",
            layer.name,
            q.weights.len()
        );
        let name = &layer.name;
        let (qn, sn, zn, table) = (
            format!("{name}.table.q"),
            format!("{name}.table.scale"),
            format!("{name}.table.zero_point"),
            format!("{name}.table"),
        );
        let bytes = q.weights.iter().map(|&v| v as u8).collect();
        self.g
            .initializer
            .push(raw_initializer(&qn, &[rows, dim], DataType::Int8, bytes));
        self.g
            .initializer
            .push(initializer(&sn, &[], &[q.output.scale]));
        self.g.initializer.push(raw_initializer(
            &zn,
            &[],
            DataType::Int8,
            vec![q.output.zero_point as i8 as u8],
        ));
        self.g.node.push(node(
            "DequantizeLinear",
            &format!("{table}.dq"),
            &[&qn, &sn, &zn],
            &table,
            vec![],
        ));
        self.x = embedding(&mut self.g, &table, &self.x);
        self.qdq(&format!("{name}.out"), q.output);
        Ok(())
    }

    /// A conv layer; `pads` its block's padding (for the first conv after an embedding the
    /// plan's conv reads the padding the embed layer wrote, the graph pads here).
    fn conv(&mut self, layer: &Layer, c: &ConvOp, q: &QuantLayer, pads: (usize, usize)) {
        // Ours [out][kernel][in] → ONNX [out][in][kernel].
        let mut w = vec![0i8; q.weights.len()];
        for f in 0..c.out_channels {
            for j in 0..c.kernel {
                for ch in 0..c.in_channels {
                    w[(f * c.in_channels + ch) * c.kernel + j] =
                        q.weights[(f * c.kernel + j) * c.in_channels + ch];
                }
            }
        }
        let name = &layer.name;
        let [wn, bn] = self.weights(name, q, &[c.out_channels, c.in_channels, c.kernel], w);
        self.op(
            "Conv",
            name,
            &[&wn, &bn],
            vec![
                ints("kernel_shape", &[c.kernel as i64]),
                ints("strides", &[c.stride as i64]),
                ints("pads", &[pads.0 as i64, pads.1 as i64]),
                ints("dilations", &[1]),
                int("group", 1),
            ],
        );
        self.op("Relu", &format!("{name}.relu"), &[], vec![]);
        self.qdq(&format!("{name}.out"), q.output);
        if let Some((kind, size)) = c.pool {
            let op = match kind {
                PoolKind::Max => "MaxPool",
                PoolKind::Avg => "AveragePool",
            };
            let window = ints("kernel_shape", &[size as i64]);
            let strides = ints("strides", &[size as i64]);
            self.op(op, &format!("{name}.pool"), &[], vec![window, strides]);
            self.qdq(&format!("{name}.pooled"), q.output);
        }
    }

    fn dense(&mut self, layer: &Layer, inputs: usize, outputs: usize, q: &QuantLayer) {
        let [wn, bn] = self.weights(&layer.name, q, &[outputs, inputs], q.weights.clone());
        self.op("Gemm", &layer.name, &[&wn, &bn], vec![int("transB", 1)]);
        self.qdq(&format!("{}.out", layer.name), q.output);
    }
}

/// Render an int8 network as a QDQ ONNX model (the serialised bytes).
pub fn export_int8(spec: &NetSpec, q: &QuantLowered, doc: &str) -> Result<Vec<u8>> {
    let shapes = spec.shapes()?;
    ensure!(
        q.plan.layers.len() == q.layers.len(),
        "the int8 network has {} layers for a plan of {}",
        q.layers.len(),
        q.plan.layers.len()
    );
    let mut b = Builder {
        g: GraphProto::new(),
        x: "input".into(),
    };
    b.g.name = "nas_int8".into();
    b.x = graph_input(&mut b.g, spec);
    if spec.input.is_scale() {
        b.qdq("input.int8", crate::quant::lower::INPUT_PARAMS);
    }
    for (layer, ql) in q.plan.layers.iter().zip(&q.layers) {
        match &layer.op {
            Op::Conv(c) => {
                let sh = shapes.get(c.block).ok_or_else(|| {
                    anyhow::anyhow!("the plan names block {} of {}", c.block, shapes.len())
                })?;
                b.conv(layer, c, ql, (sh.pad_left, sh.pad_right));
            }
            Op::GlobalAvgPool { .. } => {
                b.op("GlobalAveragePool", &layer.name, &[], vec![]);
                b.qdq(&format!("{}.out", layer.name), ql.output);
                b.op("Flatten", "flatten", &[], vec![int("axis", 1)]);
            }
            Op::Dense { inputs, outputs } => b.dense(layer, *inputs, *outputs, ql),
            Op::Embed { dim, .. } => b.embed(layer, *dim, ql)?,
            // The graph computes the folded form's integers as the rows form does: the int8
            // table gathered, then the conv.
            Op::LutConv(c) => {
                let table = QuantLayer {
                    weights: ql.table.clone(),
                    output: ql.input,
                    ..ql.clone()
                };
                let embed = Layer {
                    name: "embed".into(),
                    ..layer.clone()
                };
                b.embed(&embed, c.in_channels, &table)?;
                let sh = shapes.get(c.block).ok_or_else(|| {
                    anyhow::anyhow!("the plan names block {} of {}", c.block, shapes.len())
                })?;
                b.conv(layer, c, ql, (sh.pad_left, sh.pad_right));
            }
        }
    }
    // The graph's output is the last dequantized tensor, renamed by an Identity.
    b.op("Identity", "logits", &[], vec![]);
    b.g.output.push(value_info("logits", &[spec.classes]));
    model(
        b.g,
        spec,
        doc,
        &[
            ("nas.dtype", "int8".to_string()),
            (
                "nas.quantization",
                "TFLite int8 scheme: weights per output channel (symmetric), activations per \
                 tensor (asymmetric), bias int32 at s_in·s_w"
                    .to_string(),
            ),
        ],
    )
}
