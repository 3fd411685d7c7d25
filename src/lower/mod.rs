//! Lowering: a spec and its trained weights as the kernels compute them, and the float host
//! reference every generated kernel must equal.
//!
//! [`lower_weights`] turns a spec and its trained tensors into the plan's layers with deployable
//! constants: BatchNorm folded into the conv (`w' = w·γ/√(var+ε)`, `b' = (b−mean)·γ/√(var+ε)+β`,
//! computed in f64 and rounded once), conv weights transposed from burn's `[out][in][kernel]` to
//! the kernel's `[out][kernel][in]`, dense weights from `[in][classes]` to `[classes][in]`.
//! [`reference`] runs the result on the host with the kernels' arithmetic contract (see
//! the `codegen` stage). Both the int8 quantizer and the code generator start from [`Lowered`].

use crate::net::plan::{self, ConvOp, Op, Plan};
use crate::net::{NetSpec, EMBEDDING_ROWS};
use crate::weights::{BnParam, Param, Weights, BN_EPSILON};
use anyhow::{bail, ensure, Context, Result};

mod reference;

pub use reference::*;

/// Deployable constants of one plan layer: weights in the kernel's layout with BatchNorm folded
/// in, and the bias. Both empty for global average pooling; the embedding's table is its
/// weights, with no bias.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerConsts {
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    /// A lookup-table conv's factors, which its `weights` (the float lookup table) are the
    /// product of; the int8 quantizer quantizes them and folds them again in integers.
    pub folded: Option<Folded>,
}

/// The two factors of a lookup-table conv ([`Op::LutConv`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    /// The embedding table as trained, `[256][dim]`.
    pub table: Vec<f32>,
    /// The first conv's weights with BatchNorm folded, `[out][kernel][dim]`.
    pub conv: Vec<f32>,
}

/// The float lookup table of a conv over embedded bytes: entry `(f, j, b)` of
/// `[out][kernel][256]` is `Σ_d conv[f][j][d] · table[b][d]`, summed in `d` order from 0 in f32
/// (the kernels store it; this is the only place it is computed).
pub fn lookup_table(c: &ConvOp, table: &[f32], conv: &[f32]) -> Vec<f32> {
    let dim = c.in_channels;
    let mut lut = Vec::with_capacity(c.out_channels * c.kernel * EMBEDDING_ROWS);
    for tap in conv.chunks_exact(dim) {
        lut.extend(table.chunks_exact(dim).map(|row| ref_dot(row, tap)));
    }
    lut
}

/// A plan with its constants: what the generated kernels execute.
#[derive(Debug, Clone, PartialEq)]
pub struct Lowered {
    pub plan: Plan,
    /// One entry per `plan.layers`, in the same order.
    pub layers: Vec<LayerConsts>,
}

/// Lower a spec with its trained weights: the plan plus per-layer constants.
pub fn lower_weights(spec: &NetSpec, weights: &Weights) -> Result<Lowered> {
    spec.validate().context("invalid network spec")?;
    weights
        .check(spec)
        .context("the weights do not belong to this network spec")?;
    let plan = plan::lower(spec)?;
    let mut layers = Vec::with_capacity(plan.layers.len());
    for layer in &plan.layers {
        let consts = match &layer.op {
            // The table as trained, `[256][dim]`: row `b` is byte `b`'s values.
            Op::Embed { .. } => LayerConsts {
                weights: weights.get(Param::Embedding)?.to_vec(),
                bias: Vec::new(),
                folded: None,
            },
            Op::Conv(c) => fold_conv(c, weights)?,
            Op::LutConv(c) => {
                let conv = fold_conv(c, weights)?;
                let table = weights.get(Param::Embedding)?.to_vec();
                LayerConsts {
                    weights: lookup_table(c, &table, &conv.weights),
                    bias: conv.bias,
                    folded: Some(Folded {
                        table,
                        conv: conv.weights,
                    }),
                }
            }
            Op::GlobalAvgPool { .. } => LayerConsts {
                weights: Vec::new(),
                bias: Vec::new(),
                folded: None,
            },
            Op::Dense { inputs, outputs } => {
                let w = weights.get(Param::DenseWeight)?; // [in][classes]
                let mut t = vec![0.0f32; inputs * outputs];
                for i in 0..*inputs {
                    for k in 0..*outputs {
                        t[k * inputs + i] = w[i * outputs + k];
                    }
                }
                LayerConsts {
                    weights: t,
                    bias: weights.get(Param::DenseBias)?.to_vec(),
                    folded: None,
                }
            }
        };
        let (nw, nb) = layer.deployed_params();
        ensure!(
            consts.weights.len() == nw && consts.bias.len() == nb,
            "internal: layer {} has {}+{} constants, the plan expects {nw}+{nb}",
            layer.name,
            consts.weights.len(),
            consts.bias.len()
        );
        layers.push(consts);
    }
    Ok(Lowered { plan, layers })
}

pub(crate) fn fold_conv(c: &ConvOp, weights: &Weights) -> Result<LayerConsts> {
    let i = c.block;
    let w = weights.get(Param::ConvWeight(i))?; // [out][in][kernel]
    let b = weights.get(Param::ConvBias(i))?;
    let (co, ci, k) = (c.out_channels, c.in_channels, c.kernel);
    // Per output channel: y' = y·s + t.
    let (s, t): (Vec<f64>, Vec<f64>) = if c.batch_norm {
        let g = weights.get(Param::Bn(i, BnParam::Gamma))?;
        let beta = weights.get(Param::Bn(i, BnParam::Beta))?;
        let mean = weights.get(Param::Bn(i, BnParam::Mean))?;
        let var = weights.get(Param::Bn(i, BnParam::Var))?;
        (0..co)
            .map(|f| {
                let s = g[f] as f64 / (var[f] as f64 + BN_EPSILON as f64).sqrt();
                (s, beta[f] as f64 - mean[f] as f64 * s)
            })
            .unzip()
    } else {
        (vec![1.0; co], vec![0.0; co])
    };
    let mut wk = vec![0.0f32; co * k * ci];
    for f in 0..co {
        for c_in in 0..ci {
            for j in 0..k {
                wk[(f * k + j) * ci + c_in] = (w[(f * ci + c_in) * k + j] as f64 * s[f]) as f32;
            }
        }
    }
    let bias: Vec<f32> = (0..co)
        .map(|f| (b[f] as f64 * s[f] + t[f]) as f32)
        .collect();
    if let Some(p) = wk.iter().chain(&bias).position(|x| !x.is_finite()) {
        bail!("folding batch norm into conv{i} gives a non-finite constant (index {p}): are bn{i}.var and bn{i}.gamma sane?");
    }
    Ok(LayerConsts {
        weights: wk,
        bias,
        folded: None,
    })
}
