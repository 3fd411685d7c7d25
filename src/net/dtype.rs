//! The element type a network is deployed in, which the cost model, the code generator and
//! the run configuration all key on.

/// The element type a network is deployed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// float32 weights and activations
    #[default]
    F32,
    /// int8 weights and activations (TFLite / CMSIS-NN arithmetic)
    Int8,
}

impl Dtype {
    pub fn label(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Int8 => "int8",
        }
    }
}
