//! The walk, node by node: each node's domain checked, `Constant`s and nodes on constants only
//! folded into the constants, every other node checked to read the running activation once (and
//! otherwise only constants), its op-specific inputs and attributes read, and dispatched by op
//! type to the layer that interprets it.

use super::super::proto::Attrs;
use super::{Importer, SUPPORTED};
use anyhow::{anyhow, bail, Result};
use onnx_ir::NodeProto;

/// A node's input `i`, when present and named.
fn input(n: &NodeProto, i: usize) -> Option<&String> {
    n.input.get(i).filter(|x| !x.is_empty())
}

/// How errors name a node: by its name, else its position, with its op type.
pub(super) fn node_label(i: usize, node: &NodeProto) -> String {
    if node.name.is_empty() {
        format!("node #{i} ({})", node.op_type)
    } else {
        format!("node '{}' ({})", node.name, node.op_type)
    }
}

impl Importer {
    /// Read the nodes in order; the chain of layers must end at the graph's output.
    pub(super) fn walk(&mut self, nodes: &[NodeProto], output_name: &str) -> Result<()> {
        for (i, node) in nodes.iter().enumerate() {
            self.node(node, &node_label(i, node))?;
        }
        if self.cur != output_name {
            bail!(
                "the graph's output '{output_name}' is not the end of the chain of layers (which ends at '{}'); only a single chain of layers is supported",
                self.cur
            );
        }
        Ok(())
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
            return self.constant(n, &a, label);
        }
        let act_pos = self.activation_input(n, label)?;
        let out = n
            .output
            .first()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| anyhow!("{label}: has no output"))?
            .clone();
        let Some(pos) = act_pos else {
            return self.on_constants(n, out, label);
        };
        if pos != 0 && !matches!(op, "Mul" | "Add" | "Gather") {
            bail!("{label}: the previous layer's output is its input #{pos}, not its first input");
        }
        self.layer(n, &a, pos, label)?;
        self.cur = out;
        Ok(())
    }

    /// A `Constant` node: its value becomes a constant.
    fn constant(&mut self, n: &NodeProto, a: &Attrs, label: &str) -> Result<()> {
        let out = n
            .output
            .first()
            .ok_or_else(|| anyhow!("{label}: no output"))?;
        let c = a.constant_value()?;
        self.consts.insert(out.clone(), c);
        Ok(())
    }

    /// Which input is the running activation (`None` when the node reads constants only); all
    /// its other inputs must be constants.
    fn activation_input(&self, n: &NodeProto, label: &str) -> Result<Option<usize>> {
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
        Ok(act_pos)
    }

    /// A node on constants only: an Identity or Cast of a constant is one more constant (named
    /// `out`); anything else should have been folded before importing.
    fn on_constants(&mut self, n: &NodeProto, out: String, label: &str) -> Result<()> {
        if matches!(n.op_type.as_str(), "Identity" | "Cast") {
            if let Some(c) = n.input.first().and_then(|x| self.consts.get(x)).cloned() {
                self.consts.insert(out, c);
                return Ok(());
            }
        }
        bail!(
            "{label}: computes on constants only; fold constants before importing (e.g. onnxsim, or torch.onnx.export(do_constant_folding=True))"
        );
    }

    /// A node on the running activation (its input `pos`), by op type.
    fn layer(&mut self, n: &NodeProto, a: &Attrs, pos: usize, label: &str) -> Result<()> {
        let op = n.op_type.as_str();
        self.check_embedding_order(op, label)?;
        match op {
            "Identity" => {}
            "Dropout" => self.dropout(n, a, label)?,
            "Cast" => self.cast(a, label)?,
            "Gather" => self.gather(n, a, pos, label)?,
            "Transpose" => self.transpose(a, label)?,
            "Reshape" => self.reshape_node(n, a, label)?,
            "Flatten" => {
                let ax = a.int("axis")?.unwrap_or(1);
                self.flatten(ax, label)?;
            }
            "Squeeze" => {
                let axes = self.axes_input(n, a, label)?;
                self.squeeze(axes, label)?;
            }
            "Unsqueeze" => {
                let axes = self
                    .axes_input(n, a, label)?
                    .ok_or_else(|| anyhow!("{label}: no axes"))?;
                self.unsqueeze(&axes, label)?;
            }
            "Mul" | "Div" | "Add" | "Sub" => self.arithmetic(n, pos, label)?,
            "Conv" => self.conv(n, a, label)?,
            "BatchNormalization" => self.batch_norm(n, a, label)?,
            "Relu" => self.relu(label)?,
            "MaxPool" | "AveragePool" => self.pool(op, a, label)?,
            "GlobalAveragePool" => self.global_average_pool(label)?,
            "ReduceMean" => {
                let axes = self.axes_input(n, a, label)?;
                let keep = a.int("keepdims")?.unwrap_or(1) != 0;
                self.reduce_mean(axes, keep, label)?;
            }
            "Gemm" => self.gemm(n, a, label)?,
            "MatMul" => self.matmul(n, label)?,
            "Softmax" => self.softmax(a, label)?,
            "GlobalMaxPool" | "ReduceMax" => bail!(
                "{label}: global max pooling is not supported; the kernels end with global average pooling"
            ),
            "Conv1d" | "ConvTranspose" | "Sigmoid" | "Tanh" | "LeakyRelu" | "Clip" | "Elu"
            | "Selu" | "HardSigmoid" | "HardSwish" | "Gelu" | "PRelu" => bail!(
                "{label}: operator {op} is not supported (the kernels use ReLU activations only). Supported: {SUPPORTED}"
            ),
            _ => bail!("{label}: operator {op} is not supported. Supported: {SUPPORTED}"),
        }
        Ok(())
    }

    /// A Reshape: its target shape from its second input (opset 5+) or attribute (before).
    fn reshape_node(&mut self, n: &NodeProto, a: &Attrs, label: &str) -> Result<()> {
        let shape = match input(n, 1) {
            Some(s) => self.konst(s, label, "shape")?.ints("the shape")?,
            None => a
                .ints("shape")?
                .ok_or_else(|| anyhow!("{label}: no shape"))?,
        };
        if a.int("allowzero")?.unwrap_or(0) != 0 && shape.contains(&0) {
            bail!("{label}: a zero-sized dimension (allowzero) is not supported");
        }
        self.reshape(&shape, label)
    }

    /// The axes of a Squeeze, Unsqueeze or ReduceMean: its second input (opset 13+, 18+ for
    /// ReduceMean) or attribute (before).
    fn axes_input(&self, n: &NodeProto, a: &Attrs, label: &str) -> Result<Option<Vec<i64>>> {
        match input(n, 1) {
            Some(s) => Ok(Some(self.konst(s, label, "axes")?.ints("the axes")?)),
            None => a.ints("axes"),
        }
    }

    /// Add, Sub, Mul or Div of the running activation (input `pos`) and a constant.
    fn arithmetic(&mut self, n: &NodeProto, pos: usize, label: &str) -> Result<()> {
        let ci = if pos == 0 { 1 } else { 0 };
        let name = input(n, ci).ok_or_else(|| anyhow!("{label}: needs two inputs"))?;
        let c = self.konst(name, label, "operand")?.clone();
        let vals = c.floats(&format!("{label}: its operand"))?;
        if vals.iter().any(|v| !v.is_finite()) {
            bail!("{label}: its operand has a non-finite value");
        }
        self.elementwise(&n.op_type, &c, &vals, label)
    }
}
