//! Architecture: [`NetSpec`], the one source of truth for a network.
//!
//! A network is `1..=max_depth` convolution blocks, then global average pooling and a dense
//! softmax head. This module owns the spec's data types (serialisable to JSON), shape inference
//! with the operator semantics the trainer and the generated kernels use (Keras-compatible
//! `same` padding, pooling with stride = size and 'valid' semantics, i.e. lengths round *down*),
//! validation of specs read from files, and the seed's shape-correction rules that turn any
//! block list into a valid spec.

pub use super::shape::Padding;
use super::shape::{conv_out_len, conv_padding, pool_out_len, BlockShape};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Pooling operator kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    Max,
    Avg,
}

impl PoolKind {
    /// `max` or `avg`, as in JSON and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Max => "max",
            PoolKind::Avg => "avg",
        }
    }
}

/// A pooling layer after a block's activation: window = stride = `size`, 'valid' (the tail
/// that does not fill a window is dropped, as Keras and burn compute it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub kind: PoolKind,
    pub size: usize,
}

/// One block: Conv1D → (BatchNorm) → ReLU → (pool) → dropout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    pub filters: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
    #[serde(default)]
    pub batch_norm: bool,
    #[serde(default)]
    pub pool: Option<Pool>,
    /// Dropout rate applied in training only (no effect on the deployed kernel).
    #[serde(default)]
    pub dropout: f32,
}

impl Block {
    /// A block with BatchNorm, no pooling and no dropout; [`NetSpec::correct`] sets batch norm
    /// and dropout by position.
    pub fn new(filters: usize, kernel: usize, stride: usize, padding: Padding) -> Block {
        Block {
            filters,
            kernel,
            stride,
            padding,
            batch_norm: true,
            pool: None,
            dropout: 0.0,
        }
    }

    /// The same block followed by pooling.
    pub fn with_pool(self, kind: PoolKind, size: usize) -> Block {
        Block {
            pool: Some(Pool { kind, size }),
            ..self
        }
    }
}

/// The classifier head. Only one is supported today: global average pooling over the
/// sequence, then a dense layer to the class logits (softmax is applied by the loss / argmax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    #[default]
    GapDense,
}

/// How a byte of the input becomes the first layer's input values.
///
/// `scale` is the seed's: the byte as one value, `byte / 255`. `embedding` reads the byte as a
/// symbol: a learned table of 256 rows of `dim` values, so the first convolution sees `dim`
/// channels per position (`0x17` is no longer "a bit more" than `0x16`). Its `form` says how
/// the deployed kernel computes it (see [`EmbeddingForm`]); training does not see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InputStage {
    #[default]
    Scale,
    Embedding {
        dim: usize,
        #[serde(default, skip_serializing_if = "EmbeddingForm::is_rows")]
        form: EmbeddingForm,
    },
}

/// How the deployed kernel computes an input embedding and the first convolution. Both forms
/// compute the same network (training, ONNX and the trained weights are the same); they trade
/// flash against RAM and time, and the search picks per candidate (`net::cost::choose_form`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingForm {
    /// Look up each byte's row into a `[len][dim]` activation in RAM, which the first conv
    /// then reads: `256 × dim` constants.
    #[default]
    Rows,
    /// Fold the table into the first conv: a per-tap lookup table `[filters][kernel][256]`
    /// (row `b` of tap `j` is byte `b`'s embedded row times the tap's weights), so each output
    /// is its bias plus `kernel` lookups, with no multiplication and no embedded activation in
    /// RAM, for `filters × kernel × 256` constants (as a conv over the one-hot byte).
    Lut,
}

impl EmbeddingForm {
    pub fn is_rows(&self) -> bool {
        *self == EmbeddingForm::Rows
    }
}

impl fmt::Display for EmbeddingForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmbeddingForm::Rows => "rows",
            EmbeddingForm::Lut => "lut",
        })
    }
}

impl InputStage {
    /// An embedding of `dim` values per byte, deployed in the default form (rows).
    pub fn embedding(dim: usize) -> InputStage {
        InputStage::Embedding {
            dim,
            form: EmbeddingForm::Rows,
        }
    }

    /// Values per input position the first block reads: 1, or the embedding's width.
    pub fn width(self) -> usize {
        match self {
            InputStage::Scale => 1,
            InputStage::Embedding { dim, .. } => dim,
        }
    }

    /// The embedding's width, if the input is embedded.
    pub fn embedding_dim(self) -> Option<usize> {
        match self {
            InputStage::Scale => None,
            InputStage::Embedding { dim, .. } => Some(dim),
        }
    }

    /// The embedding's deployed form, if the input is embedded.
    pub fn embedding_form(self) -> Option<EmbeddingForm> {
        match self {
            InputStage::Scale => None,
            InputStage::Embedding { form, .. } => Some(form),
        }
    }

    /// The same stage deployed in `form` (the seed's scaling has no form: unchanged).
    pub fn with_form(self, form: EmbeddingForm) -> InputStage {
        match self {
            InputStage::Scale => InputStage::Scale,
            InputStage::Embedding { dim, .. } => InputStage::Embedding { dim, form },
        }
    }

    /// Whether the deployed kernel folds the embedding into the first conv.
    pub fn is_lut(self) -> bool {
        self.embedding_form() == Some(EmbeddingForm::Lut)
    }

    /// Whether this is the seed's `byte / 255` (what specs without an `input` field mean; it is
    /// then left out of the JSON, so old specs read and write back unchanged).
    pub fn is_scale(&self) -> bool {
        *self == InputStage::Scale
    }
}

impl fmt::Display for InputStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputStage::Scale => f.write_str("byte/255"),
            InputStage::Embedding {
                dim,
                form: EmbeddingForm::Rows,
            } => write!(f, "embedding 256×{dim}"),
            InputStage::Embedding {
                dim,
                form: EmbeddingForm::Lut,
            } => write!(f, "embedding 256×{dim}, folded into a lookup table"),
        }
    }
}

/// Symbols an embedding table has rows for: every byte value.
pub const EMBEDDING_ROWS: usize = 256;
/// Widest embedding: far beyond what pays on a microcontroller (the table alone is 256 × 256
/// floats, 256 KB), so that an absurd spec is an error at once.
pub const MAX_EMBEDDING_DIM: usize = 256;

/// A network architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSpec {
    /// Input sequence length (bytes per sample).
    pub input_len: usize,
    /// Input channels (1 for byte sequences).
    #[serde(default = "one")]
    pub input_channels: usize,
    /// How each input byte is presented to the first block (absent: `byte / 255`).
    #[serde(default, skip_serializing_if = "InputStage::is_scale")]
    pub input: InputStage,
    pub classes: usize,
    pub blocks: Vec<Block>,
    #[serde(default)]
    pub head: Head,
}

fn one() -> usize {
    1
}

/// Upper bounds of a spec's fields, far beyond what any microcontroller could hold (1 M input
/// elements are 4 MB of float32 activations), so that an absurd spec is rejected at once and
/// every size computed from a valid one fits in 64 bits (the largest tensor is at most
/// 2^20 × 2^12 elements, a layer's MACs at most 2^20 × 2^12 × 2^10 × 2^12).
pub const MAX_INPUT_LEN: usize = 1 << 20;
/// Most filters of a block, and input channels.
pub const MAX_FILTERS: usize = 1 << 12;
/// Longest kernel, stride and pool window.
pub const MAX_KERNEL: usize = 1 << 10;
/// Most blocks in a network.
pub const MAX_BLOCKS: usize = 64;

/// Search-space limits used by the correction rules and random generation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchSpace {
    pub max_depth: usize,
    pub filters: (usize, usize),
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub pool_sizes: Vec<usize>,
    /// No pooling once the sequence is shorter than this (the seed's 32).
    pub min_len_for_pool: usize,
    /// Dropout rises linearly with depth between these two rates.
    pub dropout: (f32, f32),
    /// Input embedding widths the search may choose besides `byte / 255` (empty: the input
    /// stays `byte / 255`; absent from the `config.json` of runs made before the embedding).
    #[serde(default)]
    pub embedding_dims: Vec<usize>,
    /// The first block reads every byte: its kernel is at least its stride (a k3/s4 window
    /// never sees byte 3 of 4). Off in runs made before the rule (their `config.json` lacks it).
    #[serde(default)]
    pub first_reads_every_byte: bool,
}

impl SearchSpace {
    /// Reject ranges the mutation and correction rules cannot draw from.
    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |m: String| Err(SpecError::Net(m));
        let range = |name: &str, (lo, hi): (usize, usize), max: usize| {
            if lo == 0 || lo > hi || hi > max {
                Err(SpecError::Net(format!(
                    "search space: {name} range ({lo}, {hi}) must satisfy 1 ≤ low ≤ high ≤ {max}"
                )))
            } else {
                Ok(())
            }
        };
        if self.max_depth == 0 || self.max_depth > MAX_BLOCKS {
            return bad(format!(
                "search space: max_depth {} must lie in 1..={MAX_BLOCKS}",
                self.max_depth
            ));
        }
        range("filters", self.filters, MAX_FILTERS)?;
        range("kernel", self.kernel, MAX_KERNEL)?;
        range("stride", self.stride, MAX_KERNEL)?;
        if self
            .pool_sizes
            .iter()
            .any(|s| !(2..=MAX_KERNEL).contains(s))
        {
            return bad(format!(
                "search space: pool sizes {:?} must lie in 2..={MAX_KERNEL}",
                self.pool_sizes
            ));
        }
        if let Some(d) = self
            .embedding_dims
            .iter()
            .find(|d| !(1..=MAX_EMBEDDING_DIM).contains(*d))
        {
            return bad(format!(
                "search space: embedding width {d} must lie in 1..={MAX_EMBEDDING_DIM}"
            ));
        }
        let (d0, d1) = self.dropout;
        if !(0.0..1.0).contains(&d0) || !(0.0..1.0).contains(&d1) {
            return bad(format!(
                "search space: dropout range ({d0}, {d1}) must lie in [0, 1)"
            ));
        }
        Ok(())
    }
}

impl Default for SearchSpace {
    fn default() -> Self {
        // The seed's ranges.
        SearchSpace {
            max_depth: 5,
            filters: (4, 128),
            kernel: (2, 8),
            stride: (1, 6),
            pool_sizes: vec![2, 3],
            min_len_for_pool: 32,
            dropout: (0.1, 0.5),
            // The seed's: `byte / 255` only, and a first block that may skip bytes; `nas
            // search` widens both (its `--embedding-dims`).
            embedding_dims: Vec::new(),
            first_reads_every_byte: false,
        }
    }
}

/// A spec that is not a valid network, with the block it concerns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("network: {0}")]
    Net(String),
    #[error("block {index}: {msg}")]
    Block { index: usize, msg: String },
}

impl NetSpec {
    /// Infer every block's shapes, or say which block is invalid and why.
    pub fn shapes(&self) -> Result<Vec<BlockShape>, SpecError> {
        self.validate_top()?;
        let mut len = self.input_len;
        let mut ch = self.first_channels();
        let mut out = Vec::with_capacity(self.blocks.len());
        for (index, b) in self.blocks.iter().enumerate() {
            let err = |msg: String| SpecError::Block { index, msg };
            if b.filters == 0 {
                return Err(err("filters must be at least 1".into()));
            }
            if b.kernel == 0 {
                return Err(err("kernel must be at least 1".into()));
            }
            if b.stride == 0 {
                return Err(err("stride must be at least 1".into()));
            }
            for (name, value, max) in [
                ("filters", b.filters, MAX_FILTERS),
                ("kernel", b.kernel, MAX_KERNEL),
                ("stride", b.stride, MAX_KERNEL),
                ("pool size", b.pool.map_or(0, |p| p.size), MAX_KERNEL),
            ] {
                if value > max {
                    return Err(err(format!(
                        "{name} {value} is over {max}, more than any microcontroller could run"
                    )));
                }
            }
            if !(0.0..1.0).contains(&b.dropout) {
                return Err(err(format!("dropout {} is outside [0, 1)", b.dropout)));
            }
            let conv_len = conv_out_len(len, b.kernel, b.stride, b.padding).ok_or_else(|| {
                err(format!(
                    "kernel {} is longer than its input (length {len}) with 'valid' padding",
                    b.kernel
                ))
            })?;
            let (pad_left, pad_right) = conv_padding(len, b.kernel, b.stride, b.padding);
            let out_len = match b.pool {
                None => conv_len,
                Some(p) => {
                    if p.size < 2 {
                        return Err(err(format!("pool size {} must be at least 2", p.size)));
                    }
                    pool_out_len(conv_len, p.size).ok_or_else(|| {
                        err(format!(
                            "pool size {} is larger than the conv output (length {conv_len})",
                            p.size
                        ))
                    })?
                }
            };
            out.push(BlockShape {
                in_len: len,
                in_channels: ch,
                conv_len,
                pad_left,
                pad_right,
                out_len,
                out_channels: b.filters,
            });
            len = out_len;
            ch = b.filters;
        }
        Ok(out)
    }

    fn validate_top(&self) -> Result<(), SpecError> {
        if self.input_len == 0 {
            return Err(SpecError::Net("input_len must be at least 1".into()));
        }
        if self.input_channels == 0 {
            return Err(SpecError::Net("input_channels must be at least 1".into()));
        }
        if self.classes < 2 {
            return Err(SpecError::Net(format!(
                "classes must be at least 2, got {}",
                self.classes
            )));
        }
        if self.classes > 256 {
            return Err(SpecError::Net(format!(
                "classes must be at most 256 (labels are bytes), got {}",
                self.classes
            )));
        }
        if self.blocks.is_empty() {
            return Err(SpecError::Net("a network needs at least one block".into()));
        }
        if let InputStage::Embedding { dim, .. } = self.input {
            if !(1..=MAX_EMBEDDING_DIM).contains(&dim) {
                return Err(SpecError::Net(format!(
                    "input embedding dim {dim} must lie in 1..={MAX_EMBEDDING_DIM}"
                )));
            }
            if self.input_channels != 1 {
                return Err(SpecError::Net(format!(
                    "an input embedding reads one byte per position, but input_channels is {}",
                    self.input_channels
                )));
            }
        }
        for (name, value, max) in [
            ("input_len", self.input_len, MAX_INPUT_LEN),
            ("input_channels", self.input_channels, MAX_FILTERS),
            ("blocks", self.blocks.len(), MAX_BLOCKS),
        ] {
            if value > max {
                return Err(SpecError::Net(format!(
                    "{name} {value} is over {max}, more than any microcontroller could hold"
                )));
            }
        }
        Ok(())
    }

    /// Check the spec is a network the whole tool chain can handle.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.shapes().map(|_| ())
    }

    /// Channels entering the head (the last block's filters).
    pub fn head_channels(&self) -> usize {
        self.blocks
            .last()
            .map_or(self.first_channels(), |b| b.filters)
    }

    /// Channels the first block reads: the input channels, or the embedding's width.
    pub fn first_channels(&self) -> usize {
        self.input_channels * self.input.width()
    }

    /// Parse a spec from JSON and validate it.
    pub fn from_json(text: &str) -> anyhow::Result<NetSpec> {
        let spec: NetSpec = serde_json::from_str(text)?;
        spec.validate()?;
        Ok(spec)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("NetSpec serialises")
    }

    /// The seed's 'smart start' parent: [27 filters, k3, s4, same] then
    /// [114 filters, k4, s4, same, BN, avg-pool 3].
    pub fn smart_start(input_len: usize, classes: usize) -> NetSpec {
        NetSpec::from_blocks(
            input_len,
            classes,
            vec![
                Block::new(27, 3, 4, Padding::Same),
                Block::new(114, 4, 4, Padding::Same).with_pool(PoolKind::Avg, 3),
            ],
        )
    }

    /// A single-channel network of `blocks` with the standard head, after the correction
    /// rules of the seed's search space (batch norm and dropout set by position; the first
    /// block may skip bytes, as the seed's smart start does).
    pub fn from_blocks(input_len: usize, classes: usize, blocks: Vec<Block>) -> NetSpec {
        let mut spec = NetSpec {
            input_len,
            input_channels: 1,
            input: InputStage::Scale,
            classes,
            blocks,
            head: Head::GapDense,
        };
        spec.correct(&SearchSpace::default());
        spec
    }

    /// The same network reading its input through `input`.
    pub fn with_input(self, input: InputStage) -> NetSpec {
        NetSpec { input, ..self }
    }

    /// Apply the seed's correction rules in place so that the spec is valid:
    /// depth clamped to `1..=max_depth`; no batch norm and no pooling in the first block, batch
    /// norm in every other block; kernel ≤ input length; 'valid' padding only where it fits;
    /// pooling only where the conv output is at least the pool size and the input length is at
    /// least `min_len_for_pool`; dropout rising linearly with depth; with
    /// `first_reads_every_byte`, the first block's kernel raised to its stride (within the
    /// input). Zero fields are raised to 1.
    pub fn correct(&mut self, space: &SearchSpace) {
        self.input_len = self.input_len.max(1);
        self.input_channels = self.input_channels.max(1);
        if self.blocks.is_empty() {
            self.blocks.push(Block {
                filters: space.filters.0.max(1),
                kernel: space.kernel.0.max(1),
                stride: 1,
                padding: Padding::Same,
                batch_norm: false,
                pool: None,
                dropout: 0.0,
            });
        }
        self.blocks.truncate(space.max_depth.max(1));
        let n = self.blocks.len();
        let mut len = self.input_len;
        for (i, b) in self.blocks.iter_mut().enumerate() {
            b.filters = b.filters.max(1);
            b.stride = b.stride.max(1);
            if i == 0 && space.first_reads_every_byte {
                b.kernel = b.kernel.max(b.stride);
            }
            b.kernel = b.kernel.clamp(1, len);
            b.batch_norm = i > 0;
            if b.padding == Padding::Valid && b.kernel > len {
                b.padding = Padding::Same;
            }
            let conv_len = conv_out_len(len, b.kernel, b.stride, b.padding).unwrap_or(1);
            if let Some(p) = b.pool {
                let ok =
                    i > 0 && len >= space.min_len_for_pool && p.size >= 2 && conv_len >= p.size;
                if !ok {
                    b.pool = None;
                }
            }
            b.dropout = dropout_for_depth(i, n, space.dropout);
            len = match b.pool {
                Some(p) => conv_len / p.size,
                None => conv_len,
            };
        }
    }

    /// A one-line human summary, e.g. `784 → [27k3s4 same] → [114k4s4 same bn avg3] → 12`,
    /// or `784 → emb8 → …` with an input embedding.
    pub fn summary(&self) -> String {
        let mut s = format!("{}", self.input_len);
        match self.input {
            InputStage::Scale => {}
            InputStage::Embedding { dim, form } => {
                let lut = if form == EmbeddingForm::Lut {
                    " lut"
                } else {
                    ""
                };
                s.push_str(&format!(" → emb{dim}{lut}"));
            }
        }
        for b in &self.blocks {
            s.push_str(&format!(" → [{b}]"));
        }
        s.push_str(&format!(" → gap → dense {}", self.classes));
        s
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pad = match self.padding {
            Padding::Same => "same",
            Padding::Valid => "valid",
        };
        write!(f, "{}k{}s{} {pad}", self.filters, self.kernel, self.stride)?;
        if self.batch_norm {
            write!(f, " bn")?;
        }
        if let Some(p) = self.pool {
            write!(f, " {}{}", p.kind.name(), p.size)?;
        }
        Ok(())
    }
}

/// Dropout for block `i` of `n`: linear from `range.0` (first) to `range.1` (last).
pub fn dropout_for_depth(i: usize, n: usize, range: (f32, f32)) -> f32 {
    if n <= 1 {
        return range.0;
    }
    let t = i as f32 / (n - 1) as f32;
    let r = range.0 + (range.1 - range.0) * t;
    (r * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field the spec does not have (`"dilation": 2` in a block, a typo at the top level) is
    /// an error naming it, as in target profiles, instead of being dropped; the shipped
    /// example specs still load.
    #[test]
    fn unknown_fields_are_rejected_and_the_examples_still_load() {
        let good = NetSpec::smart_start(784, 12).to_json();
        let with = |from: &str, to: &str| {
            assert!(good.contains(from), "{from} not in {good}");
            good.replacen(from, to, 1)
        };
        for (bad, field) in [
            (
                with("\"kernel\"", "\"dilation\": 2, \"kernel\""),
                "dilation",
            ),
            (with("\"classes\"", "\"clases\": 4, \"classes\""), "clases"),
            (with("\"kind\"", "\"stride\": 2, \"kind\""), "stride"),
        ] {
            let e = NetSpec::from_json(&bad).unwrap_err().to_string();
            assert!(e.contains("unknown field") && e.contains(field), "{e}");
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/specs");
        let mut n = 0;
        for f in std::fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            NetSpec::from_json(&text).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
            n += 1;
        }
        assert!(n >= 3, "{n} example specs in {}", dir.display());
    }

    #[test]
    fn same_padding_matches_keras() {
        // L=784, k=3, s=4: out 196, total pad (195·4+3−784) = −1 → 0.
        assert_eq!(conv_out_len(784, 3, 4, Padding::Same), Some(196));
        assert_eq!(conv_padding(784, 3, 4, Padding::Same), (0, 0));
        // L=10, k=4, s=1: out 10, total 3 → left 1, right 2 (TensorFlow puts the extra right).
        assert_eq!(conv_padding(10, 4, 1, Padding::Same), (1, 2));
        // L=7, k=5, s=2: out 4, total (3·2+5−7)=4 → (2, 2).
        assert_eq!(conv_padding(7, 5, 2, Padding::Same), (2, 2));
        assert_eq!(conv_out_len(7, 8, 1, Padding::Valid), None);
        assert_eq!(conv_out_len(10, 3, 3, Padding::Valid), Some(3));
    }

    #[test]
    fn pooling_rounds_down() {
        // The seed's size formula rounds up (ceil(49/3) = 17); Keras and burn give floor = 16.
        assert_eq!(pool_out_len(49, 3), Some(16));
        assert_eq!(pool_out_len(2, 3), None);
    }

    #[test]
    fn smart_start_shapes() {
        let s = NetSpec::smart_start(784, 12);
        let sh = s.shapes().unwrap();
        assert_eq!(sh[0].conv_len, 196);
        assert_eq!(sh[1].conv_len, 49);
        assert_eq!(sh[1].out_len, 16);
        assert!(!s.blocks[0].batch_norm && s.blocks[1].batch_norm);
        assert_eq!(s.blocks[0].dropout, 0.1);
        assert_eq!(s.blocks[1].dropout, 0.5);
    }

    #[test]
    fn invalid_spec_names_the_block() {
        let mut s = NetSpec::smart_start(784, 12);
        s.blocks[1].kernel = 500;
        s.blocks[1].padding = Padding::Valid;
        let e = s.validate().unwrap_err();
        assert!(matches!(e, SpecError::Block { index: 1, .. }), "{e}");
        assert!(e.to_string().contains("block 1"));

        let mut s = NetSpec::smart_start(784, 12);
        s.blocks[0].stride = 0;
        assert!(s.validate().unwrap_err().to_string().starts_with("block 0"));

        let bad = r#"{"input_len": 784, "classes": 12, "blocks": [{"filters": 8, "kernel": 3}]}"#;
        assert!(NetSpec::from_json(bad).is_err());
        let bad = r#"{"input_len": 784, "classes": 1, "blocks": []}"#;
        assert!(NetSpec::from_json(bad)
            .unwrap_err()
            .to_string()
            .contains("classes"));
    }

    #[test]
    fn json_round_trip() {
        let s = NetSpec::smart_start(784, 12);
        let back = NetSpec::from_json(&s.to_json()).unwrap();
        assert_eq!(s, back);
    }

    proptest::proptest! {
        #[test]
        fn correction_makes_any_block_list_valid(
            input_len in 1usize..2000,
            blocks in proptest::collection::vec(
                (0usize..300, 0usize..40, 0usize..10, proptest::bool::ANY,
                 proptest::option::of((proptest::bool::ANY, 0usize..6))), 0..9),
        ) {
            let space = SearchSpace::default();
            let mut spec = NetSpec {
                input_len,
                input_channels: 1,
                input: Default::default(),
                classes: 12,
                blocks: blocks.into_iter().map(|(f, k, s, valid, pool)| Block {
                    filters: f, kernel: k, stride: s,
                    padding: if valid { Padding::Valid } else { Padding::Same },
                    batch_norm: false,
                    pool: pool.map(|(max, size)| Pool {
                        kind: if max { PoolKind::Max } else { PoolKind::Avg }, size }),
                    dropout: 0.9,
                }).collect(),
                head: Head::GapDense,
            };
            spec.correct(&space);
            proptest::prop_assert!(spec.validate().is_ok(), "{:?}", spec);
            proptest::prop_assert!(spec.blocks.len() <= space.max_depth);
            proptest::prop_assert!(spec.blocks[0].pool.is_none() && !spec.blocks[0].batch_norm);
        }
    }
}
