//! The network: [`NetSpec`] (the architecture every other stage derives from), its shapes, the
//! lowering into the [`plan::Plan`] the kernels execute, and the cost model read off that plan.
//!
//! - [`spec`]: the architecture, its validation (naming the block) and the seed's corrections;
//! - [`shape`]: the only place lengths and paddings are computed (Keras/burn semantics);
//! - [`plan`]: lowering shared by the cost model and the code generator, arena placement;
//! - [`cost`]: parameters, MACs, FLOPs, arena, flash, and the check against typed budgets;
//! - [`int8`]: what the int8 kernels' layout costs (packed words, constants, the counts the
//!   int8 code-size and latency models take);
//! - [`dtype`]: the element type a network is deployed in.

pub mod cost;
pub mod dtype;
pub mod int8;
pub mod latency;
pub mod plan;
pub mod shape;
pub mod spec;

pub use dtype::Dtype;
pub use shape::{conv_out_len, conv_padding, pool_out_len, BlockShape};
pub use spec::*;
