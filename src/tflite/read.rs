//! The flatbuffer, read through the official schema's generated accessors (tract-tflite's
//! `tflite` module, made by `flatc`), after the flatbuffers verifier has checked every offset.
//!
//! The verifier makes each accessor safe, but not each index the file holds (a tensor index
//! of an operator, a buffer index of a tensor): those are checked here, against the vectors
//! collected once, so that a corrupt file is an error naming what it points past.

use anyhow::{anyhow, bail, ensure, Result};
use tract_tflite::tflite::{self, BuiltinOperator, TensorType};

/// The flatbuffer file identifier of a TFLite model (bytes 4..8).
pub const IDENTIFIER: &[u8; 4] = b"TFL3";

/// Most elements of one tensor the importer accepts (far beyond a microcontroller's model).
const MAX_ELEMENTS: usize = 1 << 28;

/// The one subgraph of a model, its tensors, buffers and operators collected for indexing.
pub(super) struct Graph<'a> {
    pub description: String,
    tensors: Vec<tflite::Tensor<'a>>,
    buffers: Vec<tflite::Buffer<'a>>,
    codes: Vec<tflite::OperatorCode<'a>>,
    pub operators: Vec<tflite::Operator<'a>>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
}

/// A tensor's quantization: per-tensor (one scale) or per-channel along `dim`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Quant {
    pub scales: Vec<f32>,
    pub zero_points: Vec<i64>,
    pub dim: usize,
}

/// What the importer needs of a tensor.
#[derive(Debug, Clone)]
pub(super) struct TensorInfo {
    pub index: i32,
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: TensorType,
    pub quant: Option<Quant>,
    buffer: u32,
}

impl TensorInfo {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// `name (#index)`, for messages.
    pub fn label(&self) -> String {
        format!("tensor {} '{}'", self.index, self.name)
    }

    /// The one scale and zero point of a per-tensor quantized int8 tensor.
    pub fn per_tensor(&self) -> Result<(f32, i32)> {
        let q = self
            .quant
            .as_ref()
            .ok_or_else(|| anyhow!("{} is int8 but carries no quantization", self.label()))?;
        ensure!(
            q.scales.len() == 1 && q.zero_points.len() == 1,
            "{} has {} scales: activations must be quantized per tensor",
            self.label(),
            q.scales.len()
        );
        let (s, zp) = (q.scales[0], q.zero_points[0]);
        ensure!(
            s.is_finite() && s > 0.0,
            "{} has scale {s}, not a positive number",
            self.label()
        );
        ensure!(
            (-128..=127).contains(&zp),
            "{} has zero point {zp}, outside int8",
            self.label()
        );
        Ok((s, zp as i32))
    }
}

/// TFLite's name of a tensor type.
pub(super) fn type_name(t: TensorType) -> String {
    t.variant_name()
        .map_or_else(|| format!("type {}", t.0), |n| n.to_string())
}

/// TFLite's name of an operator.
pub(super) fn op_name(op: BuiltinOperator) -> String {
    op.variant_name()
        .map_or_else(|| format!("operator code {}", op.0), |n| n.to_string())
}

impl<'a> Graph<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Graph<'a>> {
        ensure!(
            bytes.len() >= 8 && &bytes[4..8] == IDENTIFIER,
            "not a TFLite model: a .tflite file is a flatbuffer with the identifier 'TFL3' at \
             byte 4 ({} bytes given{})",
            bytes.len(),
            if bytes.len() >= 8 {
                format!(", found {:?}", String::from_utf8_lossy(&bytes[4..8]))
            } else {
                String::new()
            }
        );
        let model = tflite::root_as_model(bytes)
            .map_err(|e| anyhow!("corrupt or truncated TFLite flatbuffer: {e}"))?;
        ensure!(
            model.version() == 3,
            "TFLite schema version {} (this reader knows version 3)",
            model.version()
        );
        let subgraphs: Vec<_> = model
            .subgraphs()
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let sub = match subgraphs.as_slice() {
            [one] => *one,
            [] => bail!("the model has no subgraph"),
            more => bail!(
                "the model has {} subgraphs (control flow or signatures with their own graphs); \
                 a 1-D CNN has one",
                more.len()
            ),
        };
        Ok(Graph {
            description: model.description().unwrap_or_default().to_string(),
            tensors: sub
                .tensors()
                .map(|v| v.iter().collect())
                .unwrap_or_default(),
            buffers: model
                .buffers()
                .map(|v| v.iter().collect())
                .unwrap_or_default(),
            codes: model
                .operator_codes()
                .map(|v| v.iter().collect())
                .unwrap_or_default(),
            operators: sub
                .operators()
                .map(|v| v.iter().collect())
                .unwrap_or_default(),
            inputs: sub.inputs().map(|v| v.iter().collect()).unwrap_or_default(),
            outputs: sub
                .outputs()
                .map(|v| v.iter().collect())
                .unwrap_or_default(),
        })
    }

    /// The builtin operator of `op` (TFLite's rule: the larger of the deprecated 8-bit code and
    /// the 32-bit one). Custom operators are an error.
    pub fn opcode(&self, op: &tflite::Operator<'a>, label: &str) -> Result<BuiltinOperator> {
        let i = op.opcode_index() as usize;
        let code = self.codes.get(i).ok_or_else(|| {
            anyhow!(
                "{label} names operator code {i}, the model has {}",
                self.codes.len()
            )
        })?;
        let b = BuiltinOperator((code.deprecated_builtin_code() as i32).max(code.builtin_code().0));
        if b == BuiltinOperator::CUSTOM {
            bail!(
                "{label} is the custom operator '{}': only TFLite's builtin operators can be \
                 imported",
                code.custom_code().unwrap_or("?")
            );
        }
        Ok(b)
    }

    /// Tensor `index` (an operator's input or output, or the graph's).
    pub fn tensor(&self, index: i32) -> Result<TensorInfo> {
        let t = usize::try_from(index)
            .ok()
            .and_then(|i| self.tensors.get(i))
            .ok_or_else(|| {
                anyhow!(
                    "tensor index {index} is outside the graph's {} tensors",
                    self.tensors.len()
                )
            })?;
        let name = t.name().unwrap_or("").to_string();
        let label = format!("tensor {index} '{name}'");
        let dims: Vec<i32> = t.shape().map(|v| v.iter().collect()).unwrap_or_default();
        let mut shape = Vec::with_capacity(dims.len());
        let mut elements = 1usize;
        for &d in &dims {
            ensure!(d >= 0, "{label} has a negative dimension in {dims:?}");
            elements = elements
                .checked_mul(d as usize)
                .filter(|&e| e <= MAX_ELEMENTS)
                .ok_or_else(|| anyhow!("{label} of shape {dims:?} is too large"))?;
            shape.push(d as usize);
        }
        ensure!(
            t.sparsity().is_none(),
            "{label} is sparse: sparse tensors are not supported"
        );
        let quant = match t.quantization() {
            None => None,
            Some(q) => {
                ensure!(
                    q.details_type() == tflite::QuantizationDetails::NONE,
                    "{label} uses custom quantization details"
                );
                let scales: Vec<f32> = q.scale().map(|v| v.iter().collect()).unwrap_or_default();
                let zero_points: Vec<i64> = q
                    .zero_point()
                    .map(|v| v.iter().collect())
                    .unwrap_or_default();
                if scales.is_empty() && zero_points.is_empty() {
                    None
                } else {
                    ensure!(
                        scales.len() == zero_points.len(),
                        "{label} has {} scales and {} zero points",
                        scales.len(),
                        zero_points.len()
                    );
                    let dim = usize::try_from(q.quantized_dimension())
                        .ok()
                        .filter(|&d| scales.len() == 1 || d < shape.len())
                        .ok_or_else(|| {
                            anyhow!(
                                "{label} is quantized along dimension {} of {:?}",
                                q.quantized_dimension(),
                                shape
                            )
                        })?;
                    Some(Quant {
                        scales,
                        zero_points,
                        dim,
                    })
                }
            }
        };
        Ok(TensorInfo {
            index,
            name,
            shape,
            dtype: t.type_(),
            quant,
            buffer: t.buffer(),
        })
    }

    /// The constant data of `t`, which must have exactly `elements × elem_bytes` bytes.
    fn data(&self, t: &TensorInfo, elem_bytes: usize) -> Result<&'a [u8]> {
        let b = self.buffers.get(t.buffer as usize).ok_or_else(|| {
            anyhow!(
                "{} names buffer {}, the model has {}",
                t.label(),
                t.buffer,
                self.buffers.len()
            )
        })?;
        let data = b.data().map(|v| v.bytes()).unwrap_or(&[]);
        ensure!(
            !data.is_empty() || t.elements() == 0,
            "{} should be a constant but has no data in the file (buffer {})",
            t.label(),
            t.buffer
        );
        ensure!(
            data.len() == t.elements() * elem_bytes,
            "{} of shape {:?} holds {} bytes, expected {}",
            t.label(),
            t.shape,
            data.len(),
            t.elements() * elem_bytes
        );
        Ok(data)
    }

    /// Whether `t` is a constant (has data in the file).
    pub fn is_constant(&self, t: &TensorInfo) -> bool {
        self.buffers
            .get(t.buffer as usize)
            .and_then(|b| b.data())
            .is_some_and(|d| !d.is_empty())
    }

    pub fn f32s(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        self.expect_type(t, TensorType::FLOAT32)?;
        Ok(self
            .data(t, 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub fn i32s(&self, t: &TensorInfo) -> Result<Vec<i32>> {
        self.expect_type(t, TensorType::INT32)?;
        Ok(self
            .data(t, 4)?
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub fn i8s(&self, t: &TensorInfo) -> Result<Vec<i8>> {
        self.expect_type(t, TensorType::INT8)?;
        Ok(self.data(t, 1)?.iter().map(|&b| b as i8).collect())
    }

    fn expect_type(&self, t: &TensorInfo, want: TensorType) -> Result<()> {
        ensure!(
            t.dtype == want,
            "{} is {}, expected {}",
            t.label(),
            type_name(t.dtype),
            type_name(want)
        );
        Ok(())
    }
}
