//! `nas`: hardware-aware neural architecture search for microcontrollers.
//!
//! The stages, bottom first; each names only the stages before it (ARCHITECTURE.md's "Stage
//! order", checked by `tests/stages.rs`):
//! - [`util`]: atomic writes, JSON files, output tails.
//! - [`metrics`]: classification metrics from predictions.
//! - [`target`]: MCU profiles and their budgets ([`target::Limits`]).
//! - [`net`]: [`net::NetSpec`] (the architecture every other stage derives from), shapes, the
//!   [`net::plan::Plan`] shared by the cost model and the code generator, [`net::Dtype`], and
//!   the cost model.
//! - [`data`]: IDX datasets, stratified splits and folds, the synthetic demo set, captures.
//! - [`weights`]: trained parameters as plain named tensors.
//! - [`lower`]: BatchNorm folded, kernel layouts, and the float host reference.
//! - [`quant`]: int8 arithmetic, calibration, the quantized network and its host reference.
//! - [`codegen`]: the C and `no_std` Rust kernels, float and int8.
//! - [`onnx`]: import a trained 1D-CNN from an ONNX file (PyTorch, Keras + tf2onnx) as a spec
//!   and weights, and export ours as ONNX.
//! - [`tflite`]: import a `.tflite` model (TensorFlow's converter, Edge Impulse), an int8 one
//!   with its own quantization kept bit for bit.
//! - [`elf`], [`emulate`], [`firmware`]: the ELF, QEMU runs, cross-compiled firmware.
//! - [`project`]: a kernel inside a complete firmware project for the target's board.
//! - [`train`]: the burn model, the training loop, quantization-aware training.
//! - [`search`]: the evolutionary search and its resumable run directory.
//! - [`report`]: the report of a run directory.
//! - [`bench`]: training and inference throughput against the Keras yardstick.
//! - [`cli`]: every command-line argument and everything printed; `main.rs` only calls it.

#[cfg(feature = "train")]
pub mod bench;
#[cfg(feature = "train")]
pub mod cli;
pub mod codegen;
pub mod data;
pub mod elf;
pub mod emulate;
pub mod firmware;
pub mod lower;
pub mod metrics;
pub mod net;
pub mod onnx;
pub mod project;
pub mod quant;
#[cfg(feature = "train")]
pub mod report;
#[cfg(feature = "train")]
pub mod search;
pub mod target;
pub mod tflite;
#[cfg(feature = "train")]
pub mod train;
pub mod util;
pub mod weights;
