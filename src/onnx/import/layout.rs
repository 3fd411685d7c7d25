//! Layout ops on the running activation — Transpose, Reshape, Flatten, Squeeze, Unsqueeze —
//! accepted exactly when they only permute axes (batch staying first), or add or remove axes of
//! size 1.

use super::super::proto::Attrs;
use super::axes::{axis, fmt_axes, Ax, Role};
use super::Importer;
use anyhow::{anyhow, bail, Result};

impl Importer {
    pub(super) fn transpose(&mut self, a: &Attrs, label: &str) -> Result<()> {
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

    pub(super) fn reshape(&mut self, shape: &[i64], label: &str) -> Result<()> {
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

    pub(super) fn flatten(&mut self, ax: i64, label: &str) -> Result<()> {
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

    pub(super) fn squeeze(&mut self, axes: Option<Vec<i64>>, label: &str) -> Result<()> {
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

    pub(super) fn unsqueeze(&mut self, axes: &[i64], label: &str) -> Result<()> {
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
}
