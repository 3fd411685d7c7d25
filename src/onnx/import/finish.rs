//! After the walk: the spec and weights assembled from what was read and validated, the
//! exporter's recorded spec applied where the graph cannot tell (dropout, 'same' vs 'valid'),
//! and the model's input scaling folded into the first convolution's weights.

use super::super::{META_INPUT_SCALE, META_SPEC};
use super::{ImportOptions, Importer, InputLayout, Stage};
use crate::net::{Head, InputStage, NetSpec};
use crate::weights::{Param, Weights};
use anyhow::{anyhow, bail, Context, Result};

/// The network read from a graph, and how its input relates to bytes.
pub(super) struct Network {
    pub(super) spec: NetSpec,
    pub(super) weights: Weights,
    pub(super) layout: InputLayout,
    pub(super) graph_input_scale: f32,
    pub(super) internal_scale: f64,
    pub(super) output_softmax: bool,
    pub(super) notes: Vec<String>,
}

/// Whether a recorded spec is this graph's network, up to what the graph cannot show
/// (dropout, and 'same' vs 'valid' where both pad nothing and give the same length).
fn same_network(recorded: &NetSpec, graph: &NetSpec) -> bool {
    if recorded.validate().is_err()
        || recorded.input != graph.input
        || recorded.input_len != graph.input_len
        || recorded.input_channels != graph.input_channels
        || recorded.classes != graph.classes
        || recorded.blocks.len() != graph.blocks.len()
    {
        return false;
    }
    let (Ok(rs), Ok(gs)) = (recorded.shapes(), graph.shapes()) else {
        return false;
    };
    recorded
        .blocks
        .iter()
        .zip(&graph.blocks)
        .zip(rs.iter().zip(&gs))
        .all(|((r, g), (rsh, gsh))| {
            r.filters == g.filters
                && r.kernel == g.kernel
                && r.stride == g.stride
                && r.batch_norm == g.batch_norm
                && r.pool == g.pool
                && rsh == gsh
        })
}

/// Take the training-only fields and the padding choice from the exporter's record (the
/// `META_SPEC` metadata `text`) when it describes this network; else note that it was ignored.
fn apply_recorded_spec(text: &str, spec: &mut NetSpec, notes: &mut Vec<String>) {
    match serde_json::from_str::<NetSpec>(text) {
        Ok(recorded) if same_network(&recorded, spec) => {
            for (b, r) in spec.blocks.iter_mut().zip(&recorded.blocks) {
                b.padding = r.padding;
                b.dropout = r.dropout;
            }
        }
        _ => notes.push(format!(
            "the model's '{META_SPEC}' metadata does not describe this graph; ignored"
        )),
    }
}

/// The graph's input is `byte × this`: the option, else the model's record, else 1 when the
/// graph scales its input itself, else the kernels' own scale.
fn choose_input_scale(opts: &ImportOptions, recorded: Option<f32>, internal_scale: f64) -> f32 {
    match (opts.input_scale, recorded) {
        (Some(s), _) => s,
        (None, Some(s)) => s,
        _ if internal_scale != 1.0 => 1.0,
        _ => crate::data::INPUT_SCALE,
    }
}

/// The model's recorded input scale (the `META_INPUT_SCALE` metadata `text`): a positive,
/// finite number, else an error naming the value. A damaged record must not fall back to
/// another scale silently: the kernels would compute on wrongly scaled inputs.
fn recorded_input_scale(text: &str) -> Result<f32> {
    let v = text.trim();
    match v.parse::<f32>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(s),
        _ => bail!(
            "the model's '{META_INPUT_SCALE}' metadata is {v:?}, not a positive finite number \
             (e.g. 0.003921569 for 1/255); fix it, or give the scale with --input-scale"
        ),
    }
}

impl Importer {
    /// The network the walk read; `meta` looks up the model's metadata.
    pub(super) fn finish(
        mut self,
        opts: &ImportOptions,
        meta: impl Fn(&str) -> Option<String>,
    ) -> Result<Network> {
        let (mut spec, layout) = self.assemble()?;
        // The exporter's record of training-only fields and of the padding choice where the
        // graph cannot tell 'same' from 'valid'.
        if let Some(text) = meta(META_SPEC) {
            apply_recorded_spec(&text, &mut spec, &mut self.notes);
        }
        let graph_input_scale = if self.embedding.is_some() {
            // The graph's input is the bytes themselves, indices into the table: no scale.
            if let Some(s) = opts.input_scale {
                bail!(
                    "an input scale ({s}) was given, but the graph's input is the bytes as the indices of an input embedding, which no scale applies to"
                );
            }
            1.0
        } else {
            // An explicit scale overrides the record, so a damaged record only matters
            // without one.
            let recorded_scale = match (opts.input_scale, meta(META_INPUT_SCALE)) {
                (None, Some(text)) => Some(recorded_input_scale(&text)?),
                _ => None,
            };
            let scale = choose_input_scale(opts, recorded_scale, self.internal_scale);
            self.fold_input_scale(scale)?;
            scale
        };
        self.weights
            .check(&spec)
            .context("the imported weights do not match the imported network")?;
        Ok(Network {
            spec,
            weights: self.weights,
            layout,
            graph_input_scale,
            internal_scale: self.internal_scale,
            output_softmax: self.stage == Stage::Softmax,
            notes: self.notes,
        })
    }

    /// The spec (validated) and the input layout; the dense layer's weights join the others.
    fn assemble(&mut self) -> Result<(NetSpec, InputLayout)> {
        let (dense_w, dense_b, classes) = match (self.stage, self.dense.take()) {
            (Stage::Dense | Stage::Softmax, Some(d)) => d,
            _ => bail!(
                "the graph ends before its dense layer ({}); the network must end with global average pooling and a dense layer (Gemm, or MatMul + Add)",
                self.stage.describe()
            ),
        };
        let Some((input_len, input_channels, layout)) = self.input_info else {
            bail!("the graph has no convolution");
        };
        let head_in = self.channels;
        self.weights
            .insert(Param::DenseWeight, vec![head_in, classes], dense_w);
        self.weights
            .insert(Param::DenseBias, vec![classes], dense_b);
        let spec = NetSpec {
            input_len,
            input_channels,
            input: match self.embedding {
                None => InputStage::Scale,
                Some(dim) => InputStage::embedding(dim),
            },
            classes,
            blocks: std::mem::take(&mut self.blocks),
            head: Head::GapDense,
        };
        spec.validate()
            .context("the imported network is not one the kernels can run")?;
        Ok((spec, layout))
    }

    /// Input scaling: the kernels compute with byte × INPUT_SCALE; a model that expects another
    /// scale has it folded into the first convolution's weights (convolution is linear and pads
    /// with zeros, so this is exact up to float rounding).
    fn fold_input_scale(&mut self, graph_input_scale: f32) -> Result<()> {
        let effective = graph_input_scale as f64 * self.internal_scale;
        let factor = effective / crate::data::INPUT_SCALE as f64;
        if (factor as f32) != 1.0 {
            let w = self
                .weights
                .tensors
                .get_mut("conv0.weight")
                .ok_or_else(|| anyhow!("the graph has no first convolution"))?;
            for x in &mut w.data {
                *x = (*x as f64 * factor) as f32;
            }
            self.notes.push(format!(
                "the model computes on byte × {effective:e}; the kernels scale bytes by 1/255, so the first convolution's weights were multiplied by {factor:.6}"
            ));
        }
        if !effective.is_finite() || effective <= 0.0 {
            bail!("the graph's input scaling ({effective}) is not a positive number");
        }
        Ok(())
    }
}
