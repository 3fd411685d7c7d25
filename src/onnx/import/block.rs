//! A block after its convolution: BatchNormalization (kept exact when alone, else composed
//! with other per-channel arithmetic into an affine), ReLU, Dropout (its ratio recorded), and
//! the finished block turned into `conv{i}` / `bn{i}` weights.

use super::super::proto::{Attrs, Data};
use super::axes::{fmt_axes, Ax, Role};
use super::{BnParams, Importer, Pending, Stage};
use crate::net::Block;
use crate::weights::{BnParam, Param, BN_EPSILON};
use anyhow::{anyhow, bail, Result};
use onnx_ir::NodeProto;

/// A block's BatchNorm as the kernels hold it: `(gamma, beta, mean, var)` at [`BN_EPSILON`].
type KernelBn = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

/// The pending block's per-channel affine `(scale, shift)` so far, taken out of it: its affine,
/// else its BatchNorm as one, else the identity.
pub(super) fn take_affine(p: &mut Pending, n: usize) -> (Vec<f64>, Vec<f64>) {
    if let Some(ab) = p.affine.take() {
        return ab;
    }
    if let Some((g, b, m, v, eps)) = p.bn.take() {
        let mut sa = vec![0.0; n];
        let mut sb = vec![0.0; n];
        for k in 0..n {
            let s = g[k] as f64 / (v[k] as f64 + eps as f64).sqrt();
            sa[k] = s;
            sb[k] = b[k] as f64 - m[k] as f64 * s;
        }
        return (sa, sb);
    }
    (vec![1.0; n], vec![0.0; n])
}

impl Importer {
    pub(super) fn batch_norm(&mut self, n: &NodeProto, a: &Attrs, label: &str) -> Result<()> {
        if self.stage != Stage::Conv {
            bail!(
                "{label}: a BatchNormalization {}; the kernels support it between a convolution and its ReLU",
                self.stage.describe()
            );
        }
        if a.int("training_mode")?.unwrap_or(0) != 0 {
            bail!("{label}: BatchNormalization in training mode; export the model for inference");
        }
        let chan_ok = |a: &Ax| a.role == Role::Chan || (a.size == 1 && self.channels == 1);
        if self.axes.len() < 2 || !chan_ok(&self.axes[1]) {
            bail!(
                "{label}: normalises axis 1 of {}, which is not the channels",
                fmt_axes(&self.axes)
            );
        }
        let eps = a.float("epsilon")?.unwrap_or(1e-5);
        if !(eps.is_finite() && eps >= 0.0) {
            bail!("{label}: epsilon {eps}");
        }
        let c = self.channels;
        let mut vals = self.bn_inputs(n, label)?;
        let p = self.pending.as_mut().expect("pending conv");
        if p.max_before_relu {
            bail!("{label}: BatchNorm between a max pool and its ReLU is not supported");
        }
        let var = vals.pop().expect("4");
        let mean = vals.pop().expect("3");
        let beta = vals.pop().expect("2");
        let gamma = vals.pop().expect("1");
        if p.bn.is_none() && p.affine.is_none() {
            p.bn = Some((gamma, beta, mean, var, eps));
        } else {
            let (mut sa, mut sb) = take_affine(p, c);
            for k in 0..c {
                let s = gamma[k] as f64 / (var[k] as f64 + eps as f64).sqrt();
                let t = beta[k] as f64 - mean[k] as f64 * s;
                sa[k] *= s;
                sb[k] = sb[k] * s + t;
            }
            p.affine = Some((sa, sb));
        }
        Ok(())
    }

    /// A BatchNormalization's scale, bias, mean and variance, one value per channel each.
    fn bn_inputs(&self, n: &NodeProto, label: &str) -> Result<Vec<Vec<f32>>> {
        let c = self.channels;
        let mut vals = Vec::with_capacity(4);
        for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")] {
            let name = n
                .input
                .get(i)
                .filter(|x| !x.is_empty())
                .ok_or_else(|| anyhow!("{label}: no {what} input"))?;
            let v = self
                .konst(name, label, what)?
                .floats(&format!("{label}: its {what}"))?;
            if v.len() != c {
                bail!("{label}: {what} has {} values for {c} channels", v.len());
            }
            if v.iter().any(|x| !x.is_finite()) || (i == 4 && v.iter().any(|&x| x < 0.0)) {
                bail!("{label}: {what} has a non-finite or negative value");
            }
            vals.push(v);
        }
        Ok(vals)
    }

    pub(super) fn relu(&mut self, label: &str) -> Result<()> {
        if self.stage != Stage::Conv {
            bail!(
                "{label}: a ReLU {}; the kernels apply ReLU right after a convolution (and its BatchNorm)",
                self.stage.describe()
            );
        }
        let p = self.pending.as_mut().expect("pending conv");
        p.relu = true;
        self.stage = if p.max_before_relu {
            Stage::Pooled
        } else {
            Stage::Act
        };
        Ok(())
    }

    /// A Dropout: nothing at inference; its ratio is recorded on the block it follows.
    pub(super) fn dropout(&mut self, n: &NodeProto, a: &Attrs, label: &str) -> Result<()> {
        if let Some(t) = n.input.get(2).filter(|x| !x.is_empty()) {
            let on = self.konst(t, label, "training_mode")?;
            if matches!(&on.data, Data::I64(v) if v.iter().any(|&x| x != 0)) {
                bail!("{label}: dropout in training mode; export the model for inference");
            }
        }
        let ratio = match n.input.get(1).filter(|x| !x.is_empty()) {
            Some(r) => self
                .konst(r, label, "ratio")?
                .floats("the ratio")?
                .first()
                .copied(),
            None => a.float("ratio")?.or(Some(0.5)),
        };
        if let (Some(r), Some(b)) = (ratio, self.current_block_mut()) {
            if (0.0..1.0).contains(&r) {
                b.dropout = r;
            }
        }
        Ok(())
    }

    fn current_block_mut(&mut self) -> Option<&mut Block> {
        match self.stage {
            Stage::Act | Stage::Pooled => self.pending.as_mut().map(|p| &mut p.block),
            _ => None,
        }
    }

    /// Close the pending block, if any: its weights (BatchNorm or affine folded as the kernels
    /// hold them) go into the weights, the block into the blocks.
    pub(super) fn finish_block(&mut self, label: &str) -> Result<()> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        if !p.relu {
            bail!(
                "{label}: {} is not followed by a ReLU; every block is conv → (BatchNorm) → ReLU → (pool)",
                p.label
            );
        }
        let i = self.blocks.len();
        let mut block = p.block;
        let n = block.filters;
        let mut bias = p.bias;
        let bn = self.kernel_bn(i, n, p.bn, p.affine, &mut bias);
        let in_ch = self.weights_in_channels(i);
        self.weights
            .insert(Param::ConvWeight(i), vec![n, in_ch, block.kernel], p.weight);
        self.weights.insert(Param::ConvBias(i), vec![n], bias);
        block.batch_norm = bn.is_some();
        if let Some((g, b, m, v)) = bn {
            for (p, data) in BnParam::ALL.into_iter().zip([g, b, m, v]) {
                self.weights.insert(Param::Bn(i, p), vec![n], data);
            }
        }
        self.blocks.push(block);
        Ok(())
    }

    /// Block `i`'s BatchNorm as the kernels hold it (epsilon rescaled to theirs; an affine as a
    /// BatchNorm of mean 0 and variance 1), or none: no normalisation, or only a shift, which is
    /// added to `bias` (the block's `n` conv biases).
    fn kernel_bn(
        &mut self,
        i: usize,
        n: usize,
        bn: Option<BnParams>,
        affine: Option<(Vec<f64>, Vec<f64>)>,
        bias: &mut [f32],
    ) -> Option<KernelBn> {
        match (bn, affine) {
            (Some((gamma, beta, mean, var, eps)), None) => {
                let gamma = if eps == BN_EPSILON {
                    gamma
                } else {
                    self.notes.push(format!(
                        "block {i}: BatchNorm epsilon {eps:e} rescaled to the kernels' {BN_EPSILON:e} (γ adjusted so that γ/√(var+ε) is unchanged)"
                    ));
                    gamma
                        .iter()
                        .zip(&var)
                        .map(|(&g, &v)| {
                            let v = v as f64;
                            (g as f64 * ((v + BN_EPSILON as f64) / (v + eps as f64)).sqrt()) as f32
                        })
                        .collect()
                };
                Some((gamma, beta, mean, var))
            }
            (None, Some((a, b))) if a.iter().all(|&x| x == 1.0) => {
                // Only a bias: fold it into the convolution's.
                for k in 0..n {
                    bias[k] = (bias[k] as f64 + b[k]) as f32;
                }
                None
            }
            (None, Some((a, b))) => {
                // A per-channel scale and shift (how tf2onnx writes an inference BatchNorm):
                // a BatchNorm with mean 0 and variance 1.
                let root = (1.0 + BN_EPSILON as f64).sqrt();
                Some((
                    a.iter().map(|&x| (x * root) as f32).collect(),
                    b.iter().map(|&x| x as f32).collect(),
                    vec![0.0; n],
                    vec![1.0; n],
                ))
            }
            (None, None) => None,
            (Some(_), Some(_)) => unreachable!("a BatchNorm mixed with others becomes an affine"),
        }
    }

    /// Input channels of block `i`'s convolution (the first reads the input embedding's width
    /// when there is one).
    fn weights_in_channels(&self, i: usize) -> usize {
        if i == 0 {
            self.embedding
                .unwrap_or_else(|| self.input_info.map_or(1, |x| x.1))
        } else {
            self.blocks[i - 1].filters
        }
    }
}
