//! `nas`: hardware-aware neural architecture search for microcontrollers.
//!
//! The stages, in the order data flows through them:
//! - [`data`]: IDX datasets, stratified splits and folds.
//! - [`arch`]: [`arch::NetSpec`], the architecture every other stage derives from.
//! - [`target`]: MCU profiles and their budgets.
//! - [`plan`] and [`cost`]: the lowering shared by the cost model and the code generator.
//! - [`weights`]: trained parameters as plain named tensors.

pub mod arch;
pub mod bench;
pub mod cli;
pub mod codegen;
pub mod cost;
pub mod data;
pub mod elf;
pub mod emulate;
pub mod firmware;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod report;
pub mod search;
pub mod target;
pub mod train;
pub mod util;
pub mod weights;

/// The error a command returns while its stage is still being built (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("`nas {0}` is not implemented yet")]
pub struct NotYetImplemented(pub &'static str);
