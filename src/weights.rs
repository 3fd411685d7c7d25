//! Trained parameters of a [`NetSpec`] as plain data, independent of the training framework.
//!
//! Tensors are named and shaped the way the trainer holds them:
//! `conv{i}.weight` `[out, in, kernel]`, `conv{i}.bias` `[out]`, for blocks with BatchNorm
//! `bn{i}.gamma`, `bn{i}.beta`, `bn{i}.mean`, `bn{i}.var` `[out]`, and the head
//! `dense.weight` `[in, classes]`, `dense.bias` `[classes]`. Files are safetensors (float32).

use crate::net::{NetSpec, EMBEDDING_ROWS};
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;

/// BatchNorm epsilon (Keras's default, which the trainer uses).
pub const BN_EPSILON: f32 = 1e-3;

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Named parameter tensors of one network.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Weights {
    pub tensors: BTreeMap<String, Tensor>,
}

/// One of BatchNorm's four vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnParam {
    Gamma,
    Beta,
    Mean,
    Var,
}

impl BnParam {
    /// In the order the tensors are listed (and ONNX's BatchNormalization takes them).
    pub const ALL: [BnParam; 4] = [BnParam::Gamma, BnParam::Beta, BnParam::Mean, BnParam::Var];

    pub fn as_str(self) -> &'static str {
        match self {
            BnParam::Gamma => "gamma",
            BnParam::Beta => "beta",
            BnParam::Mean => "mean",
            BnParam::Var => "var",
        }
    }
}

/// A parameter tensor by its role in the network; [`Param::name`] is the one place tensor
/// names are spelled (weights files, ONNX initializers and the trainer all use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// The input embedding's table `[256, dim]` (a row per byte value).
    Embedding,
    /// Block `i`'s convolution kernel `[out, in, kernel]`.
    ConvWeight(usize),
    ConvBias(usize),
    /// Block `i`'s BatchNorm vectors.
    Bn(usize, BnParam),
    /// The head `[in, classes]`.
    DenseWeight,
    DenseBias,
}

impl Param {
    pub fn name(self) -> String {
        match self {
            Param::Embedding => "embedding.weight".to_string(),
            Param::ConvWeight(i) => format!("conv{i}.weight"),
            Param::ConvBias(i) => format!("conv{i}.bias"),
            Param::Bn(i, p) => format!("bn{i}.{}", p.as_str()),
            Param::DenseWeight => "dense.weight".to_string(),
            Param::DenseBias => "dense.bias".to_string(),
        }
    }

    /// The block a parameter belongs to (`None` for the input embedding and the head).
    pub fn block(self) -> Option<usize> {
        match self {
            Param::ConvWeight(i) | Param::ConvBias(i) | Param::Bn(i, _) => Some(i),
            Param::Embedding | Param::DenseWeight | Param::DenseBias => None,
        }
    }
}

impl From<Param> for String {
    fn from(p: Param) -> String {
        p.name()
    }
}

/// The tensors a spec needs, with their shapes, in the order of the network.
pub fn expected_params(spec: &NetSpec) -> Vec<(Param, Vec<usize>)> {
    let mut v = Vec::new();
    if let Some(dim) = spec.input.embedding_dim() {
        v.push((Param::Embedding, vec![EMBEDDING_ROWS, dim]));
    }
    let mut ch = spec.first_channels();
    for (i, b) in spec.blocks.iter().enumerate() {
        v.push((Param::ConvWeight(i), vec![b.filters, ch, b.kernel]));
        v.push((Param::ConvBias(i), vec![b.filters]));
        if b.batch_norm {
            for p in BnParam::ALL {
                v.push((Param::Bn(i, p), vec![b.filters]));
            }
        }
        ch = b.filters;
    }
    v.push((Param::DenseWeight, vec![ch, spec.classes]));
    v.push((Param::DenseBias, vec![spec.classes]));
    v
}

/// The tensors a spec needs: name and shape.
pub fn expected_shapes(spec: &NetSpec) -> Vec<(String, Vec<usize>)> {
    expected_params(spec)
        .into_iter()
        .map(|(p, s)| (p.name(), s))
        .collect()
}

impl Weights {
    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) {
        self.tensors.insert(name.into(), Tensor { shape, data });
    }

    /// The data of a parameter tensor; an error naming it when the weights lack it (which
    /// [`Weights::check`] rules out for a checked spec).
    pub fn get(&self, p: Param) -> Result<&[f32]> {
        self.tensor(p).map(|t| t.data.as_slice())
    }

    /// A parameter tensor with its shape, or an error naming it.
    pub fn tensor(&self, p: Param) -> Result<&Tensor> {
        let name = p.name();
        self.tensors
            .get(&name)
            .with_context(|| format!("weights lack tensor '{name}'"))
    }

    /// Check that every tensor the spec needs is present with the right shape and finite values,
    /// and that nothing else is.
    pub fn check(&self, spec: &NetSpec) -> Result<()> {
        let expected = expected_shapes(spec);
        for (name, shape) in &expected {
            let t = self
                .tensors
                .get(name)
                .with_context(|| format!("weights lack tensor '{name}' that the spec needs"))?;
            if &t.shape != shape {
                bail!(
                    "weights tensor '{name}' has shape {:?}, the spec needs {:?}",
                    t.shape,
                    shape
                );
            }
            if t.data.len() != shape.iter().product::<usize>() {
                bail!(
                    "weights tensor '{name}' holds {} values for shape {:?}",
                    t.data.len(),
                    shape
                );
            }
            if let Some(i) = t.data.iter().position(|x| !x.is_finite()) {
                bail!("weights tensor '{name}' has a non-finite value at index {i}");
            }
            if name.ends_with(".var") && t.data.iter().any(|&x| x < 0.0) {
                bail!("weights tensor '{name}' has a negative variance");
            }
        }
        if let Some(extra) = self
            .tensors
            .keys()
            .find(|k| !expected.iter().any(|(n, _)| n == *k))
        {
            bail!("weights hold tensor '{extra}' that the spec does not have");
        }
        Ok(())
    }

    /// Random weights for a spec (tests, and a start for codegen checks): Xavier-uniform
    /// kernels, small biases, BatchNorm statistics away from the identity, an embedding table
    /// uniform in ±1.
    pub fn random(spec: &NetSpec, seed: u64) -> Weights {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut w = Weights::default();
        for (name, shape) in expected_shapes(spec) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name == Param::Embedding.name() {
                // About the spread a trained table reaches.
                (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
            } else if name.ends_with(".weight") {
                let (fan_in, fan_out) = if name.starts_with("dense") {
                    (shape[0], shape[1])
                } else {
                    (shape[1] * shape[2], shape[0] * shape[2])
                };
                let a = (6.0 / (fan_in + fan_out) as f32).sqrt();
                (0..n).map(|_| rng.random_range(-a..a)).collect()
            } else if name.ends_with(".gamma") || name.ends_with(".var") {
                (0..n).map(|_| rng.random_range(0.5..1.5)).collect()
            } else {
                (0..n).map(|_| rng.random_range(-0.2..0.2)).collect()
            };
            w.insert(name, shape, data);
        }
        w
    }

    /// Write a safetensors file (atomically: temp file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    t.shape.clone(),
                )
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(k, b, s)| {
                let view =
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                        .expect("shape and byte length agree");
                (k.clone(), view)
            })
            .collect();
        let data = safetensors::serialize(views, None)?;
        crate::util::write_atomic(path, &data)
    }

    /// Read a safetensors file written by [`Weights::save`].
    pub fn load(path: &Path) -> Result<Weights> {
        let data = std::fs::read(path)
            .with_context(|| format!("cannot read weights {}", path.display()))?;
        Weights::from_bytes(&data, &path.display().to_string())
    }

    /// Parse safetensors bytes (`origin` names them in errors). Any bytes give weights or an
    /// error, never a panic.
    pub fn from_bytes(data: &[u8], origin: &str) -> Result<Weights> {
        let st = safetensors::SafeTensors::deserialize(data)
            .with_context(|| format!("{origin} is not a valid safetensors file"))?;
        let mut w = Weights::default();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                bail!(
                    "{origin}: tensor '{name}' is {:?}, expected F32",
                    view.dtype()
                );
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            w.insert(name, view.shape().to_vec(), data);
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_weights_round_trip_through_safetensors() {
        let spec = NetSpec::smart_start(784, 12);
        let w = Weights::random(&spec, 7);
        w.check(&spec).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        w.save(&p).unwrap();
        assert_eq!(Weights::load(&p).unwrap(), w);
    }

    #[test]
    fn mismatched_weights_are_rejected() {
        let spec = NetSpec::smart_start(784, 12);
        let mut w = Weights::random(&spec, 7);
        w.tensors.get_mut("conv1.weight").unwrap().shape = vec![114, 27, 3];
        assert!(w
            .check(&spec)
            .unwrap_err()
            .to_string()
            .contains("conv1.weight"));
        let mut w = Weights::random(&spec, 7);
        w.tensors.remove("bn1.var");
        assert!(w.check(&spec).unwrap_err().to_string().contains("bn1.var"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.safetensors");
        std::fs::write(&p, b"not a tensor file").unwrap();
        assert!(Weights::load(&p).is_err());
    }
}
