//! The input embedding: the graph's integer input (the bytes, possibly through a `Cast` to
//! another integer type, as tf2onnx writes for a float input) as the indices of a `Gather`
//! (axis 0) from a constant `[256, D]` table, whose `[…, L, D]` output the layout ops bring to
//! the channels the first convolution reads. Until that `Gather`, the running activation holds
//! byte values as integers: only layout ops and casts may touch it; after it, only layout ops
//! until the first convolution (anything else would compute on the embedding, which the
//! kernels' embed layer does not).

use super::super::proto::{self, Attrs};
use super::axes::{axis, fmt_axes, Ax, Role};
use super::{Importer, Stage};
use crate::net::spec::{EMBEDDING_ROWS, MAX_EMBEDDING_DIM};
use crate::weights::Param;
use anyhow::{anyhow, bail, Result};
use onnx_ir::NodeProto;

/// Integer element types that hold byte values (uint8, uint16, int16, int32, int64, uint32,
/// uint64): what a graph input or a `Cast` of it may be to be the embedding's indices.
pub(super) const INDEX_TYPES: &[i32] = &[2, 4, 5, proto::INT32, proto::INT64, 12, 13];

/// Ops that may read the integer byte indices before the embedding's `Gather`.
const ON_INDICES: &[&str] = &[
    "Identity",
    "Cast",
    "Gather",
    "Transpose",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
];

/// Ops that may come between the embedding's `Gather` and the first convolution.
const AFTER_EMBEDDING: &[&str] = &[
    "Identity",
    "Dropout",
    "Cast",
    "Transpose",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Conv",
];

const WHAT_GATHER_IS: &str = "a Gather is supported only as the input embedding: \
Gather(axis 0) of a constant [256, D] table at the graph's integer input (the bytes), before \
the first convolution";

impl Importer {
    /// Refuse `op` where it would compute on the byte indices or on the embedding before the
    /// first convolution.
    pub(super) fn check_embedding_order(&self, op: &str, label: &str) -> Result<()> {
        if self.indices && !ON_INDICES.contains(&op) {
            bail!(
                "{label}: {op} on the graph's integer input; an integer input is supported only as the byte indices of an input embedding ({WHAT_GATHER_IS})"
            );
        }
        if self.embedding.is_some() && self.stage == Stage::Pre && !AFTER_EMBEDDING.contains(&op) {
            bail!(
                "{label}: {op} between the input embedding and the first convolution is not supported (the kernels feed the embedded rows to the first convolution as they are; only layout ops may come between)"
            );
        }
        Ok(())
    }

    /// A `Cast` of the running activation to element type `to`.
    pub(super) fn cast(&mut self, a: &Attrs, label: &str) -> Result<()> {
        let to = a.int("to")?.unwrap_or(0);
        if to == proto::FLOAT as i64 {
            if self.indices {
                bail!(
                    "{label}: casts the graph's integer input to float32; an integer input is supported only as the byte indices of an input embedding ({WHAT_GATHER_IS})"
                );
            }
            return Ok(());
        }
        if !INDEX_TYPES.iter().any(|&t| t as i64 == to) {
            bail!(
                "{label}: casts to element type {to}; only float32 (or, for an input embedding's indices, an integer type) is supported"
            );
        }
        if self.indices {
            return Ok(());
        }
        // A float input cast to integers: the bytes as indices (Keras's Embedding on a float
        // input), which is only the graph input itself, unscaled.
        if self.stage != Stage::Pre || self.embedding.is_some() || self.internal_scale != 1.0 {
            bail!(
                "{label}: casts {} to integers; a Cast to an integer type is supported only of the graph's unscaled input, as the indices of an input embedding",
                if self.stage == Stage::Pre && self.embedding.is_none() {
                    "the scaled input"
                } else {
                    "an activation"
                }
            );
        }
        self.indices = true;
        Ok(())
    }

    /// A `Gather` whose input `pos` is the running activation: the input embedding.
    pub(super) fn gather(
        &mut self,
        n: &NodeProto,
        a: &Attrs,
        pos: usize,
        label: &str,
    ) -> Result<()> {
        if pos != 1 || !self.indices || self.stage != Stage::Pre || self.embedding.is_some() {
            bail!("{label}: {WHAT_GATHER_IS}");
        }
        let tname = n
            .input
            .first()
            .filter(|x| !x.is_empty())
            .ok_or_else(|| anyhow!("{label}: no table input"))?;
        let table = self.konst(tname, label, "table")?;
        if table.dims.len() != 2 {
            bail!(
                "{label}: gathers from a table of shape {:?}; an input embedding's table is [256, D]",
                table.dims
            );
        }
        if axis(a.int("axis")?.unwrap_or(0), 2, label)? != 0 {
            bail!("{label}: gathers along axis 1 of its table; an input embedding gathers rows (axis 0)");
        }
        let (rows, dim) = (table.dims[0], table.dims[1]);
        if rows != EMBEDDING_ROWS {
            bail!(
                "{label}: an embedding table of {rows} rows (shape {:?}); the kernels' input embedding has exactly {EMBEDDING_ROWS}, one per byte value",
                table.dims
            );
        }
        if !(1..=MAX_EMBEDDING_DIM).contains(&dim) {
            bail!("{label}: an embedding of width {dim}; it must lie in 1..={MAX_EMBEDDING_DIM}");
        }
        let data = table.floats(&format!("{label}: its table"))?;
        if data.iter().any(|v| !v.is_finite()) {
            bail!("{label}: its table has a non-finite value");
        }
        let long = self.axes[1..].iter().filter(|x| x.size != 1).count();
        if long != 1 || self.axes.len() + 1 > 6 {
            bail!(
                "{label}: indices of shape {}; an input embedding reads one byte per position, [N, L] (and unit axes)",
                fmt_axes(&self.axes)
            );
        }
        self.weights.insert(Param::Embedding, vec![rows, dim], data);
        self.axes.push(Ax::new(Role::Chan, dim));
        self.embedding = Some(dim);
        self.indices = false;
        Ok(())
    }
}
