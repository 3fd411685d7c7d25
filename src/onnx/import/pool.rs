//! Pooling: a block's MaxPool or AveragePool ('valid', stride = window; a max pool may come
//! before the ReLU), and the global average pooling that ends the blocks — GlobalAveragePool,
//! or ReduceMean over the sequence.

use super::super::proto::Attrs;
use super::axes::{axis, fmt_axes, size, Ax, Role};
use super::{Importer, Stage};
use crate::net::{Pool, PoolKind};
use anyhow::{anyhow, bail, Result};

/// A pooling's window along the sequence (axis `li` of `sp + 2`, `unit` the other spatial axis
/// if rank 4), checked to be one the kernels compute: unpadded, undilated, stride = window.
fn pool_window(a: &Attrs, sp: usize, li: usize, unit: Option<usize>, label: &str) -> Result<usize> {
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
    Ok(window)
}

/// The length after pooling a sequence of `len` by `window`, which must leave no partial window
/// the attributes would keep.
fn pooled_len(a: &Attrs, len: usize, window: usize, label: &str) -> Result<usize> {
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
    Ok(len / window)
}

impl Importer {
    pub(super) fn pool(&mut self, op: &str, a: &Attrs, label: &str) -> Result<()> {
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
        let window = pool_window(a, self.axes.len() - 2, li, unit, label)?;
        let out_len = pooled_len(a, self.axes[li].size, window, label)?;
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

    pub(super) fn global_average_pool(&mut self, label: &str) -> Result<()> {
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

    pub(super) fn reduce_mean(
        &mut self,
        axes: Option<Vec<i64>>,
        keep: bool,
        label: &str,
    ) -> Result<()> {
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
        self.check_mean_axes(&axes, label)?;
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

    /// A mean's axes reduce the sequence, and nothing else but unit axes.
    fn check_mean_axes(&self, axes: &[usize], label: &str) -> Result<()> {
        let mut has_len = self.len == 1;
        for &i in axes {
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
        Ok(())
    }
}
