//! Shape arithmetic: output lengths and paddings of convolutions and pools, with Keras/burn
//! semantics ('same' = ceil(L/s) with the left pad floor(total/2); pooling rounds down). The
//! only place these are computed: the spec, the plan, the burn model and the kernels use it.

use serde::{Deserialize, Serialize};

/// Convolution padding, with Keras semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// Output length `ceil(L / s)`; the total padding `max((out-1)·s + k − L, 0)` is split with
    /// the smaller half on the left (Keras/TensorFlow convention).
    Same,
    /// No padding: output length `floor((L − k) / s) + 1`, requires `L ≥ k`.
    Valid,
}

/// Output length of a convolution, or `None` when the configuration produces nothing
/// (zero kernel/stride, or 'valid' with the kernel longer than the input).
pub fn conv_out_len(len: usize, kernel: usize, stride: usize, padding: Padding) -> Option<usize> {
    if len == 0 || kernel == 0 || stride == 0 {
        return None;
    }
    match padding {
        Padding::Same => Some(len.div_ceil(stride)),
        Padding::Valid => (len >= kernel).then(|| (len - kernel) / stride + 1),
    }
}

/// `(left, right)` zero padding of a convolution with Keras semantics.
pub fn conv_padding(len: usize, kernel: usize, stride: usize, padding: Padding) -> (usize, usize) {
    match padding {
        Padding::Valid => (0, 0),
        Padding::Same => {
            let out = len.div_ceil(stride);
            let total = ((out.saturating_sub(1)) * stride + kernel).saturating_sub(len);
            (total / 2, total - total / 2)
        }
    }
}

/// Output length of a pooling layer (window = stride = size, 'valid').
pub fn pool_out_len(len: usize, size: usize) -> Option<usize> {
    (size >= 1 && len >= size).then_some(len / size)
}

/// Shapes of one block as executed: lengths before and after the conv and the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BlockShape {
    pub in_len: usize,
    pub in_channels: usize,
    pub conv_len: usize,
    pub pad_left: usize,
    pub pad_right: usize,
    pub out_len: usize,
    pub out_channels: usize,
}
