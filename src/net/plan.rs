//! Lowering: [`NetSpec`] → [`Plan`], the layer sequence the generated kernel executes.
//!
//! The plan is shared by the cost model and the code generator, so the RAM the search believes
//! in is by construction the arena the generated code declares. Lowering folds BatchNorm into
//! the convolution, fuses ReLU and pooling into it (a conv with pooling computes each pooled
//! output straight from the conv windows, so the un-pooled tensor never exists), and places every
//! intermediate buffer at a byte offset in one static arena.
//!
//! Arena placement: a layer's input and output are alive at the same time, nothing else is. In
//! a chain that makes `max_i(size_i + size_{i+1})` a lower bound on the arena, and placing the
//! even-numbered buffers at offset 0 and the odd-numbered ones flush against the end reaches it.
//!
//! Tensor layout in the kernel is channels-last (`[len][channels]`), so a conv window over all
//! input channels is one contiguous run. Conv weights are `[out][kernel][in]`, dense `[out][in]`.

use crate::net::spec::EMBEDDING_ROWS;
use crate::net::{BlockShape, NetSpec, PoolKind, SpecError};
use serde::Serialize;

/// Bytes per activation and weight element (float32 kernels).
pub const ELEM_BYTES: usize = 4;

/// Where a layer reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Buffer {
    /// The caller's input array (`u8` or `f32`), not in the arena.
    Input { elements: usize },
    /// A region of the static arena.
    Arena { offset: usize, elements: usize },
    /// The caller's logits array, not in the arena.
    Logits { elements: usize },
}

impl Buffer {
    pub fn elements(&self) -> usize {
        match *self {
            Buffer::Input { elements }
            | Buffer::Arena { elements, .. }
            | Buffer::Logits { elements } => elements,
        }
    }
    /// Byte range in the arena, if the buffer lives there.
    pub fn arena_range(&self) -> Option<std::ops::Range<usize>> {
        match *self {
            Buffer::Arena { offset, elements } => Some(offset..offset + elements * ELEM_BYTES),
            _ => None,
        }
    }
}

/// A fused convolution: conv (BN folded) → ReLU → optional pooling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConvOp {
    /// Index of the block in the spec.
    pub block: usize,
    pub in_len: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad_left: usize,
    /// Length of the conv output (before pooling).
    pub conv_len: usize,
    /// Pooling fused into the conv, if any: kind and window (= stride).
    pub pool: Option<(PoolKind, usize)>,
    /// Length written to the output buffer (after pooling).
    pub out_len: usize,
    /// Whether a BatchNorm is folded into the weights.
    pub batch_norm: bool,
}

impl ConvOp {
    /// Conv positions the kernel computes: `out_len × pool` with pooling (the tail a pooling
    /// window drops is not computed), else `conv_len`.
    pub fn windows(&self) -> usize {
        self.pool
            .map_or(self.conv_len, |(_, size)| self.out_len * size)
    }

    /// Taps of each computed window that fall inside the input (the others are padding): j in
    /// [0, kernel) with 0 <= o·stride − pad_left + j < in_len. One interval per window, no tap
    /// loop.
    pub fn window_taps(&self) -> impl Iterator<Item = u64> + '_ {
        self.window_tap_ranges()
            .map(|(lo, hi)| (hi - lo).max(0) as u64)
    }

    /// The same taps as intervals `[lo, hi)` of tap indices (empty when `hi <= lo`).
    pub fn window_tap_ranges(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        (0..self.windows()).map(|o| {
            let start = (o * self.stride) as i64 - self.pad_left as i64;
            (
                (-start).max(0),
                (self.in_len as i64 - start).min(self.kernel as i64),
            )
        })
    }
}

/// One executed layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The input embedding: each of the `len` input bytes selects a row of `dim` values of a
    /// 256-row table, `[len]` bytes → `[pad_left + len + pad_right][dim]` (channels-last, as
    /// the first conv reads it). The first conv's `same` padding is written here, as the
    /// embedded value of real 0 (an int8 zero point is not 0 in the stored bytes), so that conv
    /// reads every tap and runs `valid`.
    Embed {
        len: usize,
        dim: usize,
        pad_left: usize,
        pad_right: usize,
    },
    Conv(ConvOp),
    /// The input embedding folded into the first conv ([`crate::net::EmbeddingForm::Lut`]):
    /// a conv over the raw bytes whose weights are a lookup table `[out][kernel][256]`, entry
    /// `(f, j, b)` being byte `b`'s embedded row dotted with filter `f`'s tap `j` (`in_channels`
    /// is the embedding's width). Each output is its bias plus one lookup per tap inside the
    /// input: padding taps, the embedded zero, add nothing. ReLU and pooling as [`Op::Conv`].
    LutConv(ConvOp),
    /// Mean over the sequence: `[len][channels]` → `[channels]`.
    GlobalAvgPool {
        len: usize,
        channels: usize,
    },
    /// `[inputs]` → `[outputs]` logits.
    Dense {
        inputs: usize,
        outputs: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layer {
    /// Identifier-safe name, e.g. `conv0`, `gap`, `dense`.
    pub name: String,
    pub op: Op,
    pub input: Buffer,
    pub output: Buffer,
}

/// The lowered network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub input_len: usize,
    pub input_channels: usize,
    pub classes: usize,
    pub layers: Vec<Layer>,
    /// Size of the one static arena, in bytes.
    pub arena_bytes: usize,
}

impl Layer {
    /// Weights and biases this layer holds once deployed (BN folded away).
    pub fn deployed_params(&self) -> (usize, usize) {
        match &self.op {
            Op::Embed { dim, .. } => (EMBEDDING_ROWS * dim, 0),
            Op::Conv(c) => (c.out_channels * c.kernel * c.in_channels, c.out_channels),
            Op::LutConv(c) => (c.out_channels * c.kernel * EMBEDDING_ROWS, c.out_channels),
            Op::GlobalAvgPool { .. } => (0, 0),
            Op::Dense { inputs, outputs } => (inputs * outputs, *outputs),
        }
    }

    /// Parameters as Keras counts them: the deployed weights and biases, plus BatchNorm's four
    /// per-channel vectors (γ, β, moving mean and variance) where one is folded in.
    /// A lookup-table conv counts as the embedding table and the conv it folds.
    pub fn keras_params(&self) -> u64 {
        let (w, b) = match &self.op {
            Op::LutConv(c) => (
                EMBEDDING_ROWS * c.in_channels + c.out_channels * c.kernel * c.in_channels,
                c.out_channels,
            ),
            _ => self.deployed_params(),
        };
        let bn = match &self.op {
            Op::Conv(c) | Op::LutConv(c) if c.batch_norm => 4 * c.out_channels,
            _ => 0,
        };
        (w + b + bn) as u64
    }

    /// Multiply-accumulates by the usual convention: every kernel tap of every conv output,
    /// padded taps included; `inputs × outputs` for dense.
    /// A lookup-table conv counts the MACs of the conv it folds: the network's figure, whatever
    /// the form.
    pub fn macs(&self) -> u64 {
        match &self.op {
            Op::Conv(c) | Op::LutConv(c) => {
                (c.conv_len * c.out_channels * c.kernel * c.in_channels) as u64
            }
            Op::Embed { .. } | Op::GlobalAvgPool { .. } => 0,
            Op::Dense { inputs, outputs } => (inputs * outputs) as u64,
        }
    }

    /// Multiply-accumulates the generated kernel really executes: padded taps are skipped and
    /// conv outputs that fall in the tail a pooling window drops are never computed. A
    /// lookup-table conv multiplies nothing: see [`Layer::lookups`].
    pub fn executed_macs(&self) -> u64 {
        match &self.op {
            Op::Conv(c) => executed_taps(c) * (c.in_channels * c.out_channels) as u64,
            Op::Embed { .. } | Op::LutConv(_) | Op::GlobalAvgPool { .. } => 0,
            Op::Dense { inputs, outputs } => (inputs * outputs) as u64,
        }
    }

    /// Table entries a lookup-table conv adds: one per filter for every tap inside the input.
    pub fn lookups(&self) -> u64 {
        match &self.op {
            Op::LutConv(c) => executed_taps(c) * c.out_channels as u64,
            _ => 0,
        }
    }
}

/// Taps inside the input over every conv output the kernel computes (those in the tail a
/// pooling window drops are not).
fn executed_taps(c: &ConvOp) -> u64 {
    c.window_taps().sum()
}

/// Lower a spec into a plan. Fails only for an invalid spec.
pub fn lower(spec: &NetSpec) -> Result<Plan, SpecError> {
    let shapes = spec.shapes()?;
    // Operators first, with element counts of their outputs; then place the buffers.
    let ops = operators(spec, &shapes);
    let (layers, arena_bytes) = place_buffers(spec, ops);
    Ok(Plan {
        input_len: spec.input_len,
        input_channels: spec.input_channels,
        classes: spec.classes,
        layers,
        arena_bytes,
    })
}

/// The executed operators in order, each with its name and the element count of its output:
/// the input embedding (if any), one fused conv per block, the global average pool, the dense
/// head.
fn operators(spec: &NetSpec, shapes: &[BlockShape]) -> Vec<(String, Op, usize)> {
    let mut ops = Vec::new();
    // With an input embedding in rows, the first conv reads the padded embedded input; folded
    // into a lookup table, the first conv reads the bytes.
    let mut padded = None;
    let lut = spec.input.is_lut();
    if let (Some(dim), Some(s), false) = (spec.input.embedding_dim(), shapes.first(), lut) {
        let (len, pad_left, pad_right) = (spec.input_len, s.pad_left, s.pad_right);
        let op = Op::Embed {
            len,
            dim,
            pad_left,
            pad_right,
        };
        let padded_len = pad_left + len + pad_right;
        ops.push(("embed".to_string(), op, padded_len * dim));
        padded = Some(padded_len);
    }
    for (i, (b, s)) in spec.blocks.iter().zip(shapes).enumerate() {
        let (in_len, pad_left) = match padded.filter(|_| i == 0) {
            Some(len) => (len, 0),
            None => (s.in_len, s.pad_left),
        };
        let conv = ConvOp {
            block: i,
            in_len,
            in_channels: s.in_channels,
            out_channels: s.out_channels,
            kernel: b.kernel,
            stride: b.stride,
            pad_left,
            conv_len: s.conv_len,
            pool: b.pool.map(|p| (p.kind, p.size)),
            out_len: s.out_len,
            batch_norm: b.batch_norm,
        };
        let op = if lut && i == 0 {
            Op::LutConv(conv)
        } else {
            Op::Conv(conv)
        };
        ops.push((format!("conv{i}"), op, s.out_len * s.out_channels));
    }
    let last = shapes.last().expect("a valid spec has at least one block");
    ops.push((
        "gap".to_string(),
        Op::GlobalAvgPool {
            len: last.out_len,
            channels: last.out_channels,
        },
        last.out_channels,
    ));
    ops.push((
        "dense".to_string(),
        Op::Dense {
            inputs: last.out_channels,
            outputs: spec.classes,
        },
        spec.classes,
    ));
    ops
}

/// The embedded input of `bytes` as [`Op::Embed`] writes it: `pad_left` rows of `pad` (the
/// embedded value of real 0), each byte's row of `table` (`[256][dim]`), `pad_right` rows of
/// `pad`. Shared by the float and int8 host references and calibration.
pub fn embed_rows<T: Copy>(
    bytes: &[u8],
    table: &[T],
    dim: usize,
    (pad_left, pad_right): (usize, usize),
    pad: T,
) -> Vec<T> {
    let mut out = Vec::with_capacity((pad_left + bytes.len() + pad_right) * dim);
    out.resize(pad_left * dim, pad);
    for &b in bytes {
        out.extend_from_slice(&table[b as usize * dim..(b as usize + 1) * dim]);
    }
    out.resize(out.len() + pad_right * dim, pad);
    out
}

/// Offsets in one arena for a chain of buffers of `sizes` bytes, where only neighbours are alive
/// together (see the module documentation): even-numbered buffers at offset 0, odd-numbered
/// ones flush against the end. Returns the offsets and the arena's size in bytes,
/// `max_i(size_i + size_{i+1})`. The float and the int8 arenas are both placed by it.
pub fn place_chain(sizes: &[usize]) -> (Vec<usize>, usize) {
    let bytes = (0..sizes.len())
        .map(|i| sizes[i] + sizes.get(i + 1).copied().unwrap_or(0))
        .max()
        .unwrap_or(0);
    let offsets = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| if i % 2 == 0 { 0 } else { bytes - s })
        .collect();
    (offsets, bytes)
}

/// The layers with their buffers placed in one arena (see the module documentation), and the
/// arena's size in bytes.
fn place_buffers(spec: &NetSpec, ops: Vec<(String, Op, usize)>) -> (Vec<Layer>, usize) {
    // Intermediate buffers are the outputs of every layer but the last (which writes logits).
    let elements: Vec<usize> = ops[..ops.len() - 1].iter().map(|o| o.2).collect();
    let sizes: Vec<usize> = elements.iter().map(|e| e * ELEM_BYTES).collect();
    let (offsets, arena_bytes) = place_chain(&sizes);
    let place = |i: usize| Buffer::Arena {
        offset: offsets[i],
        elements: elements[i],
    };

    let n = ops.len();
    let layers = ops
        .into_iter()
        .enumerate()
        .map(|(i, (name, op, out_elems))| Layer {
            name,
            op,
            input: if i == 0 {
                Buffer::Input {
                    elements: spec.input_len * spec.input_channels,
                }
            } else {
                place(i - 1)
            },
            output: if i + 1 == n {
                Buffer::Logits {
                    elements: out_elems,
                }
            } else {
                place(i)
            },
        })
        .collect();
    (layers, arena_bytes)
}

/// Where the int8 tensors live: the float plan's buffers with one byte per element, placed by
/// the same rule ([`place_chain`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Int8Arena {
    pub bytes: usize,
    /// Per plan layer: byte offset of its input / output in the arena (`None`: the caller's
    /// input bytes or the logits).
    pub input: Vec<Option<usize>>,
    pub output: Vec<Option<usize>>,
}

/// Place the plan's intermediate tensors as int8 in one arena.
pub fn int8_arena(plan: &Plan) -> Int8Arena {
    // The plan's arena buffers, in order: the outputs of every layer but the last.
    let sizes: Vec<usize> = plan
        .layers
        .iter()
        .filter_map(|l| match l.output {
            Buffer::Arena { elements, .. } => Some(elements),
            _ => None,
        })
        .collect();
    let (offsets, bytes) = place_chain(&sizes);
    let (mut input, mut output) = (Vec::new(), Vec::new());
    let mut k = 0usize;
    for l in &plan.layers {
        input.push(match l.input {
            Buffer::Arena { .. } => Some(offsets[k - 1]),
            _ => None,
        });
        output.push(match l.output {
            Buffer::Arena { .. } => {
                k += 1;
                Some(offsets[k - 1])
            }
            _ => None,
        });
    }
    Int8Arena {
        bytes,
        input,
        output,
    }
}

impl Plan {
    /// Parameters as Keras counts them, over all layers.
    pub fn keras_params(&self) -> u64 {
        self.layers.iter().map(Layer::keras_params).sum()
    }

    /// Multiply-accumulates by the usual convention, over all layers.
    pub fn macs(&self) -> u64 {
        self.layers.iter().map(Layer::macs).sum()
    }

    /// The naive arena: one buffer per intermediate tensor, none shared.
    pub fn naive_arena_bytes(&self) -> usize {
        self.layers
            .iter()
            .filter_map(|l| l.output.arena_range())
            .map(|r| r.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Block, Head, Padding, Pool, SearchSpace};
    use proptest::prelude::*;

    #[test]
    fn smart_start_plan() {
        let p = lower(&NetSpec::smart_start(784, 12)).unwrap();
        let names: Vec<_> = p.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["conv0", "conv1", "gap", "dense"]);
        // conv0 out 196×27 = 5292 floats, conv1 (pooled) 16×114 = 1824, gap 114.
        // Live pairs: 5292+1824 = 7116, 1824+114 = 1938 → arena 7116 floats = 28,464 bytes.
        assert_eq!(p.arena_bytes, 7116 * 4);
        assert_eq!(p.naive_arena_bytes(), (5292 + 1824 + 114) * 4);
    }

    fn arb_spec() -> impl Strategy<Value = NetSpec> {
        (
            8usize..1200,
            2usize..20,
            proptest::collection::vec(
                (
                    1usize..64,
                    1usize..9,
                    1usize..7,
                    any::<bool>(),
                    proptest::option::of((any::<bool>(), 2usize..4)),
                ),
                1..6,
            ),
        )
            .prop_map(|(input_len, classes, blocks)| {
                let mut spec = NetSpec {
                    input_len,
                    input_channels: 1,
                    input: Default::default(),
                    classes,
                    blocks: blocks
                        .into_iter()
                        .map(|(filters, kernel, stride, valid, pool)| Block {
                            filters,
                            kernel,
                            stride,
                            padding: if valid { Padding::Valid } else { Padding::Same },
                            batch_norm: false,
                            pool: pool.map(|(max, size)| Pool {
                                kind: if max { PoolKind::Max } else { PoolKind::Avg },
                                size,
                            }),
                            dropout: 0.0,
                        })
                        .collect(),
                    head: Head::GapDense,
                };
                spec.correct(&SearchSpace::default());
                spec
            })
    }

    proptest! {
        #[test]
        fn live_buffers_never_overlap(spec in arb_spec()) {
            let p = lower(&spec).unwrap();
            for l in &p.layers {
                // Every arena buffer fits in the arena …
                for b in [l.input, l.output] {
                    if let Some(r) = b.arena_range() {
                        prop_assert!(r.end <= p.arena_bytes, "{:?} beyond arena {}", r, p.arena_bytes);
                        prop_assert_eq!(r.start % ELEM_BYTES, 0);
                    }
                }
                // … and a layer's input and output, alive together, are disjoint.
                if let (Some(a), Some(b)) = (l.input.arena_range(), l.output.arena_range()) {
                    prop_assert!(a.end <= b.start || b.end <= a.start, "{} overlaps: {:?} {:?}", l.name, a, b);
                }
            }
            // Consecutive layers agree on the buffer between them.
            for w in p.layers.windows(2) {
                prop_assert_eq!(w[0].output, w[1].input);
            }
            prop_assert!(p.arena_bytes <= p.naive_arena_bytes());
        }
    }
}
