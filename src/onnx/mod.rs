//! ONNX in and out: bring a trained 1D-CNN from PyTorch or Keras to `cost` / `export` /
//! `verify`, and hand our networks to other runtimes.
//!
//! Parsing and writing use the protobuf types `onnx-ir` generates (pure Rust, no `protoc`);
//! the graph is interpreted here, node by node, because what matters is not what each node
//! computes in general but whether the whole graph is exactly a [`NetSpec`]: a chain of
//! conv → (BatchNorm) → ReLU → (pool) blocks, global average pooling and a dense layer.
//!
//! - [`import_bytes`] / [`import_file`]: an ONNX model → [`Imported`] (spec, weights, how the
//!   graph's input relates to bytes, notes on what was folded). What else a graph may hold is
//!   listed in [`SUPPORTED`]; anything else is an error naming the node, its op type and why.
//! - [`export`]: a spec and its weights → an ONNX model (opset 13, float32), which the importer
//!   reads back to the identical spec and weights.
//! - [`export_int8`]: an int8 network → a QDQ model (int8 weights, int32 biases, our scales
//!   and zero points) for int8 runtimes.

mod export;
mod import;
mod proto;
mod qdq;

pub use export::{export, EXPORT_OPSET};
pub use import::{import_bytes, import_file, ImportOptions, Imported, InputLayout, SUPPORTED};
pub use qdq::export_int8;

/// Metadata key under which [`export`] stores the spec JSON (training-only fields such as
/// dropout, and the padding choice where 'same' and 'valid' coincide, which the graph alone
/// cannot tell apart).
pub const META_SPEC: &str = "nas.spec";
/// Metadata key of the input scale: the graph's input is `byte × scale`.
pub const META_INPUT_SCALE: &str = "nas.input_scale";
