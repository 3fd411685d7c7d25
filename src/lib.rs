//! `nas`: hardware-aware neural architecture search for microcontrollers.
//!
//! The stages, in the order data flows through them (one folder or file each):
//! - [`data`]: IDX datasets, stratified splits and folds, the synthetic demo set.
//! - [`net`]: [`net::NetSpec`] (the architecture every other stage derives from), shapes, the
//!   [`net::plan::Plan`] shared by the cost model and the code generator, and the cost model.
//! - [`target`]: MCU profiles and their budgets ([`target::Limits`]).
//! - [`weights`]: trained parameters as plain named tensors.
//! - [`train`]: the burn model, the training loop and the metrics.
//! - [`search`]: the evolutionary search and its resumable run directory.
//! - [`codegen`]: the C and `no_std` Rust kernels, and the host reference they must equal.
//! - [`onnx`]: import a trained 1D-CNN from an ONNX file (PyTorch, Keras + tf2onnx) as a spec
//!   and weights, and export ours as ONNX.
//! - [`firmware`], [`elf`], [`emulate`]: cross-compiled firmware, its ELF, QEMU runs.
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
pub mod net;
pub mod onnx;
pub mod quant;
#[cfg(feature = "train")]
pub mod report;
#[cfg(feature = "train")]
pub mod search;
pub mod target;
#[cfg(feature = "train")]
pub mod train;
pub mod util;
pub mod weights;
