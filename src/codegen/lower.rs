//! Lowering with weights: the plan's layers with deployable constants (BatchNorm folded into
//! the conv, kernel layouts).

use super::*;

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
            Op::Conv(c) => fold_conv(c, weights)?,
            Op::GlobalAvgPool { .. } => LayerConsts {
                weights: Vec::new(),
                bias: Vec::new(),
            },
            Op::Dense { inputs, outputs } => {
                let w = weights.get("dense.weight"); // [in][classes]
                let mut t = vec![0.0f32; inputs * outputs];
                for i in 0..*inputs {
                    for k in 0..*outputs {
                        t[k * inputs + i] = w[i * outputs + k];
                    }
                }
                LayerConsts {
                    weights: t,
                    bias: weights.get("dense.bias").to_vec(),
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
    let w = weights.get(&format!("conv{i}.weight")); // [out][in][kernel]
    let b = weights.get(&format!("conv{i}.bias"));
    let (co, ci, k) = (c.out_channels, c.in_channels, c.kernel);
    // Per output channel: y' = y·s + t.
    let (s, t): (Vec<f64>, Vec<f64>) = if c.batch_norm {
        let g = weights.get(&format!("bn{i}.gamma"));
        let beta = weights.get(&format!("bn{i}.beta"));
        let mean = weights.get(&format!("bn{i}.mean"));
        let var = weights.get(&format!("bn{i}.var"));
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
    Ok(LayerConsts { weights: wk, bias })
}
