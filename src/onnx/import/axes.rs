//! What each axis of the running activation means ([`Role`], [`Ax`]), how it is written in
//! errors, and the checks layers make on it: the batch stays first, and a 1-D layer's input has
//! its channels on axis 1 and its sequence on a known spatial axis.

use super::{Importer, Stage};
use anyhow::{bail, Result};

/// What an axis of the running activation means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
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

/// An axis of the running activation: its meaning and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ax {
    pub(super) role: Role,
    /// 0 for the batch.
    pub(super) size: usize,
}

impl Ax {
    pub(super) fn new(role: Role, size: usize) -> Ax {
        Ax { role, size }
    }
}

/// Axes as errors show them, e.g. `[N, C=8, L=30]`.
pub(super) fn fmt_axes(axes: &[Ax]) -> String {
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

/// Turn an ONNX integer attribute into a size in `lo..=hi`.
pub(super) fn size(v: i64, lo: usize, hi: usize, what: &str) -> Result<usize> {
    if v < lo as i64 || v > hi as i64 {
        bail!("{what} is {v}; it must lie in {lo}..={hi}");
    }
    Ok(v as usize)
}

/// Normalise a possibly negative axis against a rank.
pub(super) fn axis(a: i64, rank: usize, label: &str) -> Result<usize> {
    let r = rank as i64;
    if a < -r || a >= r {
        bail!("{label}: axis {a} is out of range for a tensor of rank {rank}");
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

impl Importer {
    /// Axes that keep the batch first and only there.
    pub(super) fn check_batch_first(&self, axes: &[Ax], label: &str) -> Result<()> {
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

    /// Position of the channel axis (1) checked, and of the length axis among the spatial ones.
    /// Returns `(length axis, unit spatial axis if rank 4)`.
    pub(super) fn spatial(&self, label: &str, what: &str) -> Result<(usize, Option<usize>)> {
        let rank = self.axes.len();
        if !(rank == 3 || rank == 4) {
            bail!(
                "{label}: {what} over {}; a 1-D layer needs [N, C, L] (or [N, C, 1, L] / [N, C, L, 1])",
                fmt_axes(&self.axes)
            );
        }
        self.check_channels_axis(label, what)?;
        if rank == 3 {
            if !self.is_len(&self.axes[2]) {
                bail!(
                    "{label}: {what} reads axis 2 of {} as the sequence, but it is not",
                    fmt_axes(&self.axes)
                );
            }
            return Ok((2, None));
        }
        self.spatial_2d(label, what)
    }

    /// Axis 1 can be read as the channels.
    fn check_channels_axis(&self, label: &str, what: &str) -> Result<()> {
        let pre = self.stage == Stage::Pre;
        let chan_ok = match self.axes[1].role {
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
        Ok(())
    }

    /// Whether an axis can be read as the sequence.
    fn is_len(&self, a: &Ax) -> bool {
        let pre = self.stage == Stage::Pre;
        match a.role {
            Role::Len => true,
            Role::In(_) => pre,
            Role::Unit => pre || self.len == 1,
            _ => false,
        }
    }

    /// `(length axis, unit axis)` of a rank-4 activation: one of axes 2 and 3 has size 1.
    fn spatial_2d(&self, label: &str, what: &str) -> Result<(usize, Option<usize>)> {
        let (h, w) = (self.axes[2], self.axes[3]);
        if h.size > 1 && w.size > 1 {
            bail!(
                "{label}: a 2-D {what} over a {}×{} input; only 1-D layers (or 2-D ones over an input of height or width 1) are supported — is this an image model?",
                h.size,
                w.size
            );
        }
        if h.size > 1 || (h.size == 1 && w.size == 1 && h.role == Role::Len) {
            if !self.is_len(&h) {
                bail!(
                    "{label}: {what}: axis 2 of {} is not the sequence",
                    fmt_axes(&self.axes)
                );
            }
            Ok((2, Some(3)))
        } else {
            if !self.is_len(&w) {
                bail!(
                    "{label}: {what}: axis 3 of {} is not the sequence",
                    fmt_axes(&self.axes)
                );
            }
            Ok((3, Some(2)))
        }
    }
}
