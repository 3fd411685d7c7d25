//! The head: the dense layer (Gemm, or MatMul whose bias a following Add supplies) over the
//! pooled features `[N, C]`, and a final Softmax over the classes, dropped.

use super::super::proto::{Attrs, Const};
use super::axes::{axis, fmt_axes, Ax, Role};
use super::{Importer, Stage};
use anyhow::{anyhow, bail, Result};
use onnx_ir::NodeProto;

impl Importer {
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

    pub(super) fn gemm(&mut self, n: &NodeProto, a: &Attrs, label: &str) -> Result<()> {
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

    pub(super) fn matmul(&mut self, n: &NodeProto, label: &str) -> Result<()> {
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

    pub(super) fn softmax(&mut self, a: &Attrs, label: &str) -> Result<()> {
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
