//! Add, Sub, Mul and Div by a constant, where the kernels can absorb them: scaling the input
//! before the first convolution (folded into its weights later), a per-channel affine between a
//! convolution and its ReLU (as a BatchNorm), and the dense layer's bias and scale.

use super::super::proto::Const;
use super::axes::{fmt_axes, Role};
use super::block::take_affine;
use super::{Importer, Stage};
use anyhow::{bail, Result};

impl Importer {
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

    /// `op` (Add, Sub, Mul or Div) of the running activation and the constant `c` (`vals`).
    pub(super) fn elementwise(
        &mut self,
        op: &str,
        c: &Const,
        vals: &[f32],
        label: &str,
    ) -> Result<()> {
        if vals.is_empty() {
            bail!("{label}: its operand is empty");
        }
        match self.stage {
            Stage::Pre => self.scale_input(op, c, vals, label),
            Stage::Conv => self.affine_after_conv(op, c, vals, label),
            Stage::Dense => self.adjust_dense(op, c, vals, label),
            s => bail!(
                "{label}: {op} {}; elementwise arithmetic is supported on the input (scaling), between a convolution and its ReLU (per channel, as BatchNorm) and on the dense layer's output (bias)",
                s.describe()
            ),
        }
    }

    /// Before the first convolution: scaling the input by one number.
    fn scale_input(&mut self, op: &str, c: &Const, vals: &[f32], label: &str) -> Result<()> {
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

    /// Between a convolution and its ReLU: composed into the block's per-channel affine.
    fn affine_after_conv(&mut self, op: &str, c: &Const, vals: &[f32], label: &str) -> Result<()> {
        let p = self
            .pending
            .as_mut()
            .expect("a conv is pending in Stage::Conv");
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

    /// After the dense layer: a bias added or subtracted, or the outputs scaled.
    fn adjust_dense(&mut self, op: &str, c: &Const, vals: &[f32], label: &str) -> Result<()> {
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
}
