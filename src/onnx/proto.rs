//! Reading values out of ONNX protobuf messages without trusting them: every size is checked
//! before anything is allocated from it, every field that may be absent is optional.

use anyhow::{bail, Result};
use onnx_ir::{AttributeProto, AttributeType, NodeProto, TensorProto};

/// Most elements one constant tensor may hold (64 M float32 = 256 MB, far beyond any MCU).
pub const MAX_CONST_ELEMENTS: usize = 1 << 26;

/// ONNX element types this importer reads.
pub const FLOAT: i32 = 1;
pub const INT32: i32 = 6;
pub const INT64: i32 = 7;
pub const DOUBLE: i32 = 11;

/// A constant tensor (initializer or `Constant` node).
#[derive(Debug, Clone, PartialEq)]
pub struct Const {
    pub dims: Vec<usize>,
    pub data: Data,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Const {
    pub fn numel(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// Float values (integers converted), or an error naming `what`.
    pub fn floats(&self, what: &str) -> Result<Vec<f32>> {
        match &self.data {
            Data::F32(v) => Ok(v.clone()),
            Data::I64(_) => bail!("{what} is an integer tensor, a float tensor was expected"),
        }
    }

    /// Integer values, or an error naming `what`.
    pub fn ints(&self, what: &str) -> Result<Vec<i64>> {
        match &self.data {
            Data::I64(v) => Ok(v.clone()),
            Data::F32(_) => bail!("{what} is a float tensor, an integer tensor was expected"),
        }
    }
}

fn type_name(t: i32) -> String {
    match t {
        1 => "float32".into(),
        2 => "uint8".into(),
        3 => "int8".into(),
        6 => "int32".into(),
        7 => "int64".into(),
        9 => "bool".into(),
        10 => "float16".into(),
        11 => "float64".into(),
        16 => "bfloat16".into(),
        other => format!("element type {other}"),
    }
}

/// Decode a tensor's dims and data.
pub fn tensor(t: &TensorProto, what: &str) -> Result<Const> {
    if t.data_location.value() == 1 {
        bail!("{what} keeps its data in an external file; save the model with the weights inside (e.g. onnx.save(model, path, save_as_external_data=False))");
    }
    let (dims, n) = checked_dims(t, what)?;
    let raw = &t.raw_data[..];
    let width = match t.data_type {
        FLOAT | INT32 => 4,
        INT64 | DOUBLE => 8,
        other => bail!(
            "{what} is {}; only float32 (and integer shapes/axes) are supported",
            type_name(other)
        ),
    };
    if !raw.is_empty() && raw.len() != n * width {
        bail!(
            "{what} holds {} bytes for {n} {} values",
            raw.len(),
            type_name(t.data_type)
        );
    }
    let c = Const {
        dims,
        data: values(t, raw),
    };
    if c.numel() != n {
        bail!("{what} holds {} values for dims {:?}", c.numel(), t.dims);
    }
    Ok(c)
}

/// A tensor's dims and element count, checked to be non-negative and at most
/// [`MAX_CONST_ELEMENTS`] in all.
fn checked_dims(t: &TensorProto, what: &str) -> Result<(Vec<usize>, usize)> {
    let mut dims = Vec::with_capacity(t.dims.len().min(8));
    let mut n: usize = 1;
    for &d in &t.dims {
        if d < 0 {
            bail!("{what} has a negative dimension {d}");
        }
        let d = d as usize;
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_CONST_ELEMENTS)
            .ok_or_else(|| anyhow::anyhow!("{what} is too large ({:?})", t.dims))?;
        dims.push(d);
    }
    Ok((dims, n))
}

/// Little-endian `W`-byte chunks of raw data.
fn le_chunks<const W: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; W]> + '_ {
    raw.chunks_exact(W)
        .map(|c| c.try_into().expect("chunks_exact yields W bytes"))
}

/// A tensor's values: from its raw bytes when it has them, else from its typed field. The
/// element type is one of [`FLOAT`], [`DOUBLE`], [`INT64`], [`INT32`].
fn values(t: &TensorProto, raw: &[u8]) -> Data {
    let from_raw = !raw.is_empty();
    match t.data_type {
        FLOAT if from_raw => Data::F32(le_chunks(raw).map(f32::from_le_bytes).collect()),
        FLOAT => Data::F32(t.float_data.clone()),
        DOUBLE if from_raw => Data::F32(
            le_chunks(raw)
                .map(|c| f64::from_le_bytes(c) as f32)
                .collect(),
        ),
        DOUBLE => Data::F32(t.double_data.iter().map(|&x| x as f32).collect()),
        INT64 if from_raw => Data::I64(le_chunks(raw).map(i64::from_le_bytes).collect()),
        INT64 => Data::I64(t.int64_data.clone()),
        // INT32
        _ if from_raw => Data::I64(
            le_chunks(raw)
                .map(|c| i32::from_le_bytes(c) as i64)
                .collect(),
        ),
        _ => Data::I64(t.int32_data.iter().map(|&x| x as i64).collect()),
    }
}

/// A node's attributes, looked up by name.
pub struct Attrs<'a> {
    node: &'a NodeProto,
    label: &'a str,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto, label: &'a str) -> Attrs<'a> {
        Attrs { node, label }
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn kind(a: &AttributeProto) -> Option<AttributeType> {
        a.type_.enum_value().ok()
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::kind(a) == Some(AttributeType::INT) || a.ints.is_empty() => {
                Ok(Some(a.i))
            }
            Some(_) => bail!("{}: attribute '{name}' is not an integer", self.label),
        }
    }

    pub fn float(&self, name: &str) -> Result<Option<f32>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::kind(a) == Some(AttributeType::FLOAT) => Ok(Some(a.f)),
            Some(_) => bail!("{}: attribute '{name}' is not a float", self.label),
        }
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::kind(a) == Some(AttributeType::INTS) || !a.ints.is_empty() => {
                if a.ints.len() > 16 {
                    bail!(
                        "{}: attribute '{name}' has {} values",
                        self.label,
                        a.ints.len()
                    );
                }
                Ok(Some(a.ints.clone()))
            }
            Some(_) => bail!(
                "{}: attribute '{name}' is not a list of integers",
                self.label
            ),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::kind(a) == Some(AttributeType::STRING) || !a.s.is_empty() => {
                Ok(Some(String::from_utf8_lossy(&a.s).into_owned()))
            }
            Some(_) => bail!("{}: attribute '{name}' is not a string", self.label),
        }
    }

    pub fn tensor(&self, name: &str) -> Option<&'a TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }

    /// The value of a `Constant` node in any of its forms.
    pub fn constant_value(&self) -> Result<Const> {
        if let Some(t) = self.tensor("value") {
            return tensor(t, &format!("{}: its value", self.label));
        }
        if let Some(f) = self.float("value_float")? {
            return Ok(Const {
                dims: vec![],
                data: Data::F32(vec![f]),
            });
        }
        if let Some(a) = self.get("value_floats") {
            return Ok(Const {
                dims: vec![a.floats.len()],
                data: Data::F32(a.floats.clone()),
            });
        }
        if let Some(i) = self.int("value_int")? {
            return Ok(Const {
                dims: vec![],
                data: Data::I64(vec![i]),
            });
        }
        if let Some(a) = self.get("value_ints") {
            return Ok(Const {
                dims: vec![a.ints.len()],
                data: Data::I64(a.ints.clone()),
            });
        }
        bail!(
            "{}: a Constant without a tensor, float or integer value (sparse and string constants are not supported)",
            self.label
        )
    }
}
