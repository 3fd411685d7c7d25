//! Code generation: [`Plan`] + weights → C and `no_std` Rust inference kernels through tera
//! templates.
//!
//! [`lower_weights`] turns a spec and its trained tensors into the plan's layers with deployable
//! constants: BatchNorm folded into the conv (`w' = w·γ/√(var+ε)`, `b' = (b−mean)·γ/√(var+ε)+β`,
//! computed in f64 and rounded once), conv weights transposed from burn's `[out][in][kernel]` to
//! the kernel's `[out][kernel][in]`, dense weights from `[in][classes]` to `[classes][in]`.
//!
//! Arithmetic contract, shared by the C kernel, the Rust kernel and [`reference_logits`] so that
//! all three agree bit for bit (on IEEE single precision without FMA contraction):
//! - conv output = `scale · Σ x·w + b'`, the sum in window order (taps, then input channels),
//!   starting from 0, padded taps skipped; `scale` is 1/255 for raw bytes (the input scaling is
//!   folded into one multiply per first-layer output, so the `u8` entry point needs no float copy
//!   of the input) and 1 for floats;
//! - ReLU as `v > 0 ? v : 0`; max pooling takes the largest pre-activation then ReLU (equal to
//!   max of ReLUs), average pooling sums the ReLUs and multiplies by `1/size`;
//! - global average pooling sums over the sequence and multiplies by `1/len`;
//! - dense = `Σ x·w + b`.
//!
//! Within the contract the kernels are free in how they schedule the work, not in how they
//! round: they loop over output position, pooling window, then filters four at a time (each
//! input loaded once for four dot products; a window's geometry worked out once for all
//! filters), and keep a pooled output's running max or sum in the output buffer between windows.
//! Every sum still has one accumulator of its own, fed in the order above: no partial sums, no
//! reassociation.
//!
//! Templates (`templates/c`, `templates/rust`, embedded in the binary) hold no decisions: every
//! size, offset, loop bound, identifier and literal is computed here and handed to tera as data.

use crate::arch::{NetSpec, PoolKind};
use crate::cost::Cost;
use crate::plan::{self, Buffer, ConvOp, Op, Plan, ELEM_BYTES};
use crate::weights::{Weights, BN_EPSILON};
use anyhow::{bail, ensure, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::path::{Component, Path, PathBuf};

const C_HEADER: &str = include_str!("../templates/c/model.h.tera");
const C_SOURCE: &str = include_str!("../templates/c/model.c.tera");
const C_WEIGHTS: &str = include_str!("../templates/c/weights.h.tera");
const RS_CARGO: &str = include_str!("../templates/rust/Cargo.toml.tera");
const RS_LIB: &str = include_str!("../templates/rust/lib.rs.tera");
const RS_WEIGHTS: &str = include_str!("../templates/rust/weights.rs.tera");

/// Longest identifier [`sanitize_identifier`] returns (C99 guarantees 31 significant characters
/// for external names; `NAME_infer_f32` must stay within them).
pub const MAX_IDENTIFIER_LEN: usize = 20;

/// Values per line in generated weight tables.
const VALUES_PER_LINE: usize = 8;

/// Deployable constants of one plan layer: weights in the kernel's layout with BatchNorm folded
/// in, and the bias. Both empty for global average pooling.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerConsts {
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A plan with its constants: what the generated kernels execute.
#[derive(Debug, Clone, PartialEq)]
pub struct Lowered {
    pub plan: Plan,
    /// One entry per `plan.layers`, in the same order.
    pub layers: Vec<LayerConsts>,
}

/// One generated file, its path relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: String,
    pub contents: String,
}

/// Where a kernel comes from, rendered as comments in the generated files.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    pub tool_version: String,
    /// The run directory or the files the spec and weights were read from.
    pub source: String,
    /// The target the footprint was computed for.
    pub target: Option<String>,
    pub footprint: Option<Cost>,
}

impl Provenance {
    /// This tool's version, a source and no footprint.
    pub fn new(source: impl Into<String>) -> Provenance {
        Provenance {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            source: source.into(),
            target: None,
            footprint: None,
        }
    }
}

/// Lower a spec with its trained weights: the plan plus per-layer constants.
pub fn lower_weights(spec: &NetSpec, weights: &Weights) -> Result<Lowered> {
    spec.validate().context("invalid network spec")?;
    weights
        .check(spec)
        .context("the weights do not belong to this network spec")?;
    let plan = plan::lower(spec)?;
    let mut layers = Vec::with_capacity(plan.layers.len());
    for layer in &plan.layers {
        let consts = match &layer.op {
            Op::Conv(c) => fold_conv(c, weights)?,
            Op::GlobalAvgPool { .. } => LayerConsts {
                weights: Vec::new(),
                bias: Vec::new(),
            },
            Op::Dense { inputs, outputs } => {
                let w = weights.get("dense.weight"); // [in][classes]
                let mut t = vec![0.0f32; inputs * outputs];
                for i in 0..*inputs {
                    for k in 0..*outputs {
                        t[k * inputs + i] = w[i * outputs + k];
                    }
                }
                LayerConsts {
                    weights: t,
                    bias: weights.get("dense.bias").to_vec(),
                }
            }
        };
        let (nw, nb) = layer.deployed_params();
        ensure!(
            consts.weights.len() == nw && consts.bias.len() == nb,
            "internal: layer {} has {}+{} constants, the plan expects {nw}+{nb}",
            layer.name,
            consts.weights.len(),
            consts.bias.len()
        );
        layers.push(consts);
    }
    Ok(Lowered { plan, layers })
}

fn fold_conv(c: &ConvOp, weights: &Weights) -> Result<LayerConsts> {
    let i = c.block;
    let w = weights.get(&format!("conv{i}.weight")); // [out][in][kernel]
    let b = weights.get(&format!("conv{i}.bias"));
    let (co, ci, k) = (c.out_channels, c.in_channels, c.kernel);
    // Per output channel: y' = y·s + t.
    let (s, t): (Vec<f64>, Vec<f64>) = if c.batch_norm {
        let g = weights.get(&format!("bn{i}.gamma"));
        let beta = weights.get(&format!("bn{i}.beta"));
        let mean = weights.get(&format!("bn{i}.mean"));
        let var = weights.get(&format!("bn{i}.var"));
        (0..co)
            .map(|f| {
                let s = g[f] as f64 / (var[f] as f64 + BN_EPSILON as f64).sqrt();
                (s, beta[f] as f64 - mean[f] as f64 * s)
            })
            .unzip()
    } else {
        (vec![1.0; co], vec![0.0; co])
    };
    let mut wk = vec![0.0f32; co * k * ci];
    for f in 0..co {
        for c_in in 0..ci {
            for j in 0..k {
                wk[(f * k + j) * ci + c_in] = (w[(f * ci + c_in) * k + j] as f64 * s[f]) as f32;
            }
        }
    }
    let bias: Vec<f32> = (0..co)
        .map(|f| (b[f] as f64 * s[f] + t[f]) as f32)
        .collect();
    if let Some(p) = wk.iter().chain(&bias).position(|x| !x.is_finite()) {
        bail!("folding batch norm into conv{i} gives a non-finite constant (index {p}): are bn{i}.var and bn{i}.gamma sane?");
    }
    Ok(LayerConsts { weights: wk, bias })
}

// ---------------------------------------------------------------------------------------------
// Host reference
// ---------------------------------------------------------------------------------------------

/// Logits of one raw-byte sample computed on the host with exactly the generated kernels'
/// arithmetic (same operations in the same order, in the same arena at the same offsets), so the
/// C and Rust kernels must match it bit for bit.
///
/// # Panics
/// If `input` does not hold `input_len × input_channels` bytes.
pub fn reference_logits(lowered: &Lowered, input: &[u8]) -> Vec<f32> {
    reference_run(lowered, &|i| input[i] as f32, input.len(), 1.0 / 255.0)
}

/// As [`reference_logits`] for an input already scaled to [0, 1] (the `infer_f32` entry point).
///
/// # Panics
/// If `input` does not hold `input_len × input_channels` values.
pub fn reference_logits_f32(lowered: &Lowered, input: &[f32]) -> Vec<f32> {
    reference_run(lowered, &|i| input[i], input.len(), 1.0)
}

fn reference_run(lowered: &Lowered, x: &dyn Fn(usize) -> f32, n: usize, scale: f32) -> Vec<f32> {
    let plan = &lowered.plan;
    assert_eq!(
        n,
        plan.input_len * plan.input_channels,
        "input length does not match the network"
    );
    let mut arena = vec![0.0f32; plan.arena_bytes / ELEM_BYTES];
    let mut logits = vec![0.0f32; plan.classes];
    for (layer, consts) in plan.layers.iter().zip(&lowered.layers) {
        let src: Vec<f32> = match layer.input {
            Buffer::Input { elements } => (0..elements).map(x).collect(),
            Buffer::Arena { offset, elements } => {
                arena[offset / ELEM_BYTES..offset / ELEM_BYTES + elements].to_vec()
            }
            Buffer::Logits { .. } => unreachable!("no layer reads the logits"),
        };
        let layer_scale = if matches!(layer.input, Buffer::Input { .. }) {
            scale
        } else {
            1.0
        };
        let mut dst = vec![0.0f32; layer.output.elements()];
        match &layer.op {
            Op::Conv(c) => ref_conv(c, &src, &mut dst, consts, layer_scale),
            Op::GlobalAvgPool { len, channels } => {
                let inv = 1.0f32 / *len as f32;
                for c in 0..*channels {
                    let mut s = 0.0f32;
                    for t in 0..*len {
                        s += src[t * channels + c];
                    }
                    dst[c] = s * inv;
                }
            }
            Op::Dense { inputs, outputs } => {
                for (k, d) in dst.iter_mut().enumerate().take(*outputs) {
                    *d = ref_dot(&src, &consts.weights[k * inputs..(k + 1) * inputs])
                        + consts.bias[k];
                }
            }
        }
        match layer.output {
            Buffer::Arena { offset, elements } => {
                arena[offset / ELEM_BYTES..offset / ELEM_BYTES + elements].copy_from_slice(&dst)
            }
            Buffer::Logits { .. } => logits.copy_from_slice(&dst),
            Buffer::Input { .. } => unreachable!("no layer writes the input"),
        }
    }
    logits
}

fn ref_dot(x: &[f32], w: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (a, b) in x.iter().zip(w) {
        acc += a * b;
    }
    acc
}

fn relu(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

fn ref_conv(c: &ConvOp, src: &[f32], dst: &mut [f32], k: &LayerConsts, scale: f32) {
    let (pool, pool_max, pool_scale) = pool_params(c);
    let row = c.kernel * c.in_channels;
    let end = c.in_len + c.pad_left;
    for p in 0..c.out_len {
        for f in 0..c.out_channels {
            let wf = &k.weights[f * row..(f + 1) * row];
            let (mut best, mut sum) = (0.0f32, 0.0f32);
            for i in 0..pool {
                let start = (p * pool + i) * c.stride;
                let j0 = c.pad_left.saturating_sub(start);
                let j1 = end.saturating_sub(start).min(c.kernel);
                let mut acc = 0.0f32;
                if j1 > j0 {
                    let x0 = (start + j0 - c.pad_left) * c.in_channels;
                    let n = (j1 - j0) * c.in_channels;
                    acc = ref_dot(
                        &src[x0..x0 + n],
                        &wf[j0 * c.in_channels..j1 * c.in_channels],
                    );
                }
                let v = acc * scale + k.bias[f];
                if pool_max {
                    if i == 0 || v > best {
                        best = v;
                    }
                } else {
                    sum += relu(v);
                }
            }
            dst[p * c.out_channels + f] = if pool_max {
                relu(best)
            } else {
                sum * pool_scale
            };
        }
    }
}

/// `(window, is_max, 1/window)`; no pooling is a max pool of window 1.
fn pool_params(c: &ConvOp) -> (usize, bool, f32) {
    match c.pool {
        None => (1, true, 1.0),
        Some((PoolKind::Max, size)) => (size, true, 1.0),
        Some((PoolKind::Avg, size)) => (size, false, 1.0f32 / size as f32),
    }
}

/// Index of the largest value, the first one on ties (as the kernels' `predict`).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (k, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = k;
        }
    }
    best
}

// ---------------------------------------------------------------------------------------------
// Identifiers and literals
// ---------------------------------------------------------------------------------------------

/// Keywords of C99/C11 and Rust (strict and reserved), and crate names Rust resolves specially.
const RESERVED: &[&str] = &[
    // C
    "auto",
    "break",
    "case",
    "char",
    "const",
    "continue",
    "default",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "float",
    "for",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "register",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "typedef",
    "union",
    "unsigned",
    "void",
    "volatile",
    "while",
    "main",
    "asm",
    "bool",
    "true",
    "false",
    // Rust
    "as",
    "async",
    "await",
    "crate",
    "dyn",
    "fn",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "self",
    "super",
    "trait",
    "type",
    "unsafe",
    "use",
    "where",
    "abstract",
    "become",
    "box",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "macro_rules",
    // crates
    "core",
    "std",
    "alloc",
    "proc_macro",
    "test",
];

/// A C- and Rust-safe lower_snake identifier from a user-supplied name: ASCII letters and digits
/// kept (lowercased), every other run of characters becomes one `_`, leading and trailing `_`
/// dropped, at most [`MAX_IDENTIFIER_LEN`] characters; `nn_` is prefixed to a leading digit and
/// `_nn` appended to a keyword. Errors when nothing usable is left.
///
/// `foo-bar; system("rm -rf /")` → `foo_bar_system_rm_rf`.
pub fn sanitize_identifier(name: &str) -> Result<String> {
    let mut out = String::new();
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let mut out = out.trim_end_matches('_').to_string();
    if out.is_empty() {
        bail!("the name {name:?} has no ASCII letters or digits to make an identifier from");
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "nn_");
    }
    if out.len() > MAX_IDENTIFIER_LEN {
        out.truncate(MAX_IDENTIFIER_LEN);
        out = out.trim_end_matches('_').to_string();
    }
    if RESERVED.contains(&out.as_str()) {
        out.push_str("_nn");
    }
    Ok(out)
}

/// Text safe inside a `/* */` or `//` comment: ASCII printable only, no comment delimiters.
pub(crate) fn comment_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            '→' => "->".to_string(),
            '×' => "x".to_string(),
            ' '..='~' => c.to_string(),
            _ => "?".to_string(),
        })
        .collect();
    while out.contains("*/") || out.contains("/*") {
        out = out.replace("*/", "* /").replace("/*", "/ *");
    }
    out
}

/// An f32 literal that C and Rust both parse back to exactly `x` (shortest round-trip digits).
fn float_literal(x: f32, lang: Lang) -> String {
    let s = format!("{x:?}");
    debug_assert!(x.is_finite() && (s.contains('.') || s.contains('e')));
    match lang {
        Lang::C => format!("{s}f"),
        Lang::Rust => s,
    }
}

fn table_lines(v: &[f32], lang: Lang) -> Vec<String> {
    v.chunks(VALUES_PER_LINE)
        .map(|c| {
            let mut s = c
                .iter()
                .map(|&x| float_literal(x, lang))
                .collect::<Vec<_>>()
                .join(", ");
            s.push(',');
            s
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Template data
// ---------------------------------------------------------------------------------------------

/// Output language of `nas export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// C99: NAME.h, NAME.c and NAME_weights.h
    C,
    /// A no_std Rust crate: Cargo.toml, src/lib.rs, src/weights.rs
    Rust,
}

#[derive(Serialize)]
struct ArrayCtx {
    ident: String,
    comment: String,
    len: usize,
    lines: Vec<String>,
}

#[derive(Serialize)]
struct ConvCtx {
    ident: String,
    comment: String,
    in_len: usize,
    in_ch: usize,
    out_ch: usize,
    kernel: usize,
    stride: usize,
    pad_left: usize,
    out_len: usize,
    pool: usize,
    /// `1`/`0` in C, `true`/`false` in Rust.
    pool_max: String,
    pool_scale: String,
}

#[derive(Serialize, Default)]
struct StepCtx {
    op: &'static str,
    comment: String,
    // C: argument expressions.
    src_u8: String,
    src_f32: String,
    dst: String,
    scale: String,
    // Rust: arena ranges in elements.
    from_input: bool,
    src_start: usize,
    src_end: usize,
    dst_start: usize,
    dst_end: usize,
    // Constants.
    cfg: String,
    w: String,
    b: String,
    len: usize,
    ch: usize,
    inv_len: String,
    inputs: usize,
    outputs: usize,
}

#[derive(Serialize)]
struct Ctx {
    name: String,
    upper: String,
    guard: String,
    tool_version: String,
    header: Vec<String>,
    header_short: Vec<String>,
    input_len: usize,
    classes: usize,
    arena_bytes: usize,
    arena_len: usize,
    u8_scale: String,
    arrays: Vec<ArrayCtx>,
    convs: Vec<ConvCtx>,
    steps: Vec<StepCtx>,
}

pub(crate) fn layer_desc(l: &plan::Layer) -> String {
    match &l.op {
        Op::Conv(c) => {
            let pool = match c.pool {
                None => String::new(),
                Some((PoolKind::Max, s)) => format!(" -> max pool {s}"),
                Some((PoolKind::Avg, s)) => format!(" -> avg pool {s}"),
            };
            format!(
                "{}: conv {}x{} k{} s{} pad_left {}{} -> relu{pool}: [{}][{}] -> [{}][{}]",
                l.name,
                c.in_channels,
                c.out_channels,
                c.kernel,
                c.stride,
                c.pad_left,
                if c.batch_norm { " (+bn folded)" } else { "" },
                c.in_len,
                c.in_channels,
                c.out_len,
                c.out_channels
            )
        }
        Op::GlobalAvgPool { len, channels } => {
            format!(
                "{}: global average pool [{len}][{channels}] -> [{channels}]",
                l.name
            )
        }
        Op::Dense { inputs, outputs } => format!("{}: dense {inputs} -> {outputs}", l.name),
    }
}

fn buffer_desc(b: &Buffer) -> String {
    match b {
        Buffer::Input { .. } => "input".into(),
        Buffer::Arena { offset, elements } => {
            format!(
                "arena[{}..{}]",
                offset / ELEM_BYTES,
                offset / ELEM_BYTES + elements
            )
        }
        Buffer::Logits { .. } => "logits".into(),
    }
}

/// The spec as JSON, one block per line (valid JSON once the comment markers are stripped).
pub(crate) fn spec_json_lines(spec: &NetSpec) -> Vec<String> {
    let top = serde_json::json!({
        "input_len": spec.input_len,
        "input_channels": spec.input_channels,
        "classes": spec.classes,
        "head": spec.head,
    });
    let top = serde_json::to_string(&top).expect("JSON of plain values");
    let mut v = vec![format!("{},\"blocks\":[", top.trim_end_matches('}'))];
    let n = spec.blocks.len();
    for (i, b) in spec.blocks.iter().enumerate() {
        let sep = if i + 1 < n { "," } else { "" };
        let b = serde_json::to_string(b).expect("JSON of plain values");
        v.push(format!("  {b}{sep}"));
    }
    v.push("]}".into());
    v
}

/// Comment lines for the top of a generated file; `full` adds the layer table, the numerics
/// and the spec JSON.
fn header_lines(
    spec: &NetSpec,
    lowered: &Lowered,
    name: &str,
    note: &Provenance,
    lang: Lang,
    full: bool,
) -> Vec<String> {
    let plan = &lowered.plan;
    let lang = match lang {
        Lang::C => "c",
        Lang::Rust => "rust",
    };
    let mut h = vec![
        format!(
            "{name}: 1D-CNN inference kernel generated by nas {} (`nas export --lang {lang}`).",
            note.tool_version
        ),
        "Do not edit: regenerate it from the spec and weights instead.".into(),
        String::new(),
        format!("source: {}", note.source),
        format!("network: {}", spec.summary()),
        format!(
            "input: {} bytes (raw, or floats scaled to [0, 1]); output: {} logits",
            plan.input_len * plan.input_channels,
            plan.classes
        ),
    ];
    if full {
        h.push(String::new());
        h.push("layers (activations channels-last, offsets in floats of the arena):".into());
        for l in &plan.layers {
            h.push(format!(
                "  {}  [{} -> {}]",
                layer_desc(l),
                buffer_desc(&l.input),
                buffer_desc(&l.output)
            ));
        }
    }
    h.push(String::new());
    match &note.footprint {
        Some(c) => {
            let on = note.target.as_deref().map(|t| format!(" on {t}"));
            h.push(format!("footprint{}:", on.unwrap_or_default()));
            h.push(format!(
                "  params {} (Keras count; {} deployed with BN folded), MACs {} ({} executed)",
                c.params, c.deployed_params, c.macs, c.executed_macs
            ));
            h.push(format!(
                "  arena {} bytes, RAM estimate {} bytes (arena + stack)",
                c.arena_bytes, c.ram_bytes
            ));
            h.push(format!(
                "  flash estimate {} bytes (weights {} + code {})",
                c.flash_bytes, c.weights_bytes, c.code_bytes
            ));
            let fits = if c.fits { "yes" } else { "NO" };
            h.push(format!("  fits the budget: {fits}"));
        }
        None => h.push(format!("arena {} bytes", plan.arena_bytes)),
    }
    if full {
        h.push(String::new());
        h.push(
            "numerics: float32; the u8 entry point multiplies each first-layer sum by 1/255".into(),
        );
        h.push(
            "(no float copy of the input); results match nas's host reference bit for bit".into(),
        );
        h.push(match lang {
            "c" => "when compiled without FMA contraction (-ffp-contract=off).".into(),
            _ => "(Rust never contracts a multiply and an add into an FMA).".into(),
        });
        h.push(String::new());
        h.push("spec (JSON):".into());
        h.extend(spec_json_lines(spec).into_iter().map(|l| format!("  {l}")));
    }
    h.into_iter().map(|l| comment_safe(&l)).collect()
}

fn context(
    spec: &NetSpec,
    lowered: &Lowered,
    name: &str,
    note: &Provenance,
    lang: Lang,
) -> Result<Ctx> {
    let plan = &lowered.plan;
    ensure!(
        plan.arena_bytes % ELEM_BYTES == 0,
        "internal: arena of {} bytes is not whole floats",
        plan.arena_bytes
    );
    let upper = name.to_ascii_uppercase();
    let arr_ident = |layer: &str, what: &str| match lang {
        Lang::C => format!("{name}_{layer}_{what}"),
        Lang::Rust => format!(
            "{}_{}",
            layer.to_ascii_uppercase(),
            what.to_ascii_uppercase()
        ),
    };
    let cfg_ident = |layer: &str| match lang {
        Lang::C => format!("{name}_{layer}_cfg"),
        Lang::Rust => layer.to_ascii_uppercase(),
    };
    let arena_expr = |offset: usize| format!("{name}_arena + {}", offset / ELEM_BYTES);
    let mut arrays = Vec::new();
    let mut convs = Vec::new();
    let mut steps = Vec::new();
    for (l, k) in plan.layers.iter().zip(&lowered.layers) {
        if !k.weights.is_empty() {
            arrays.push(ArrayCtx {
                ident: arr_ident(&l.name, "w"),
                comment: comment_safe(&format!("{}: weights", layer_desc(l))),
                len: k.weights.len(),
                lines: table_lines(&k.weights, lang),
            });
            arrays.push(ArrayCtx {
                ident: arr_ident(&l.name, "b"),
                comment: comment_safe(&format!("{}: bias", l.name)),
                len: k.bias.len(),
                lines: table_lines(&k.bias, lang),
            });
        }
        let mut s = StepCtx {
            comment: comment_safe(&format!(
                "{}  [{} -> {}]",
                layer_desc(l),
                buffer_desc(&l.input),
                buffer_desc(&l.output)
            )),
            w: arr_ident(&l.name, "w"),
            b: arr_ident(&l.name, "b"),
            ..StepCtx::default()
        };
        match l.input {
            Buffer::Input { .. } => {
                s.from_input = true;
                s.src_u8 = "in_u8".into();
                s.src_f32 = "in_f32".into();
                s.scale = "scale".into();
            }
            Buffer::Arena { offset, elements } => {
                s.src_u8 = "NULL".into();
                s.src_f32 = arena_expr(offset);
                s.scale = float_literal(1.0, lang);
                s.src_start = offset / ELEM_BYTES;
                s.src_end = s.src_start + elements;
            }
            Buffer::Logits { .. } => bail!("internal: layer {} reads the logits", l.name),
        }
        match l.output {
            Buffer::Arena { offset, elements } => {
                s.dst = arena_expr(offset);
                s.dst_start = offset / ELEM_BYTES;
                s.dst_end = s.dst_start + elements;
            }
            Buffer::Logits { .. } => s.dst = "logits".into(),
            Buffer::Input { .. } => bail!("internal: layer {} writes the input", l.name),
        }
        match &l.op {
            Op::Conv(c) => {
                let (pool, pool_max, pool_scale) = pool_params(c);
                ensure!(
                    matches!(l.output, Buffer::Arena { .. }),
                    "internal: conv {} must write to the arena",
                    l.name
                );
                convs.push(ConvCtx {
                    ident: cfg_ident(&l.name),
                    comment: comment_safe(&layer_desc(l)),
                    in_len: c.in_len,
                    in_ch: c.in_channels,
                    out_ch: c.out_channels,
                    kernel: c.kernel,
                    stride: c.stride,
                    pad_left: c.pad_left,
                    out_len: c.out_len,
                    pool,
                    pool_max: match lang {
                        Lang::C => u8::from(pool_max).to_string(),
                        Lang::Rust => pool_max.to_string(),
                    },
                    pool_scale: float_literal(pool_scale, lang),
                });
                s.op = "conv";
                s.cfg = cfg_ident(&l.name);
            }
            Op::GlobalAvgPool { len, channels } => {
                ensure!(!s.from_input, "internal: global pooling reads the input");
                s.op = "gap";
                s.len = *len;
                s.ch = *channels;
                s.inv_len = float_literal(1.0f32 / *len as f32, lang);
            }
            Op::Dense { inputs, outputs } => {
                ensure!(
                    !s.from_input && matches!(l.output, Buffer::Logits { .. }),
                    "internal: the dense head must read the arena and write the logits"
                );
                s.op = "dense";
                s.inputs = *inputs;
                s.outputs = *outputs;
            }
        }
        steps.push(s);
    }
    Ok(Ctx {
        name: name.to_string(),
        guard: format!("{upper}_H"),
        upper,
        tool_version: note.tool_version.clone(),
        header: header_lines(spec, lowered, name, note, lang, true),
        header_short: header_lines(spec, lowered, name, note, lang, false),
        input_len: plan.input_len * plan.input_channels,
        classes: plan.classes,
        arena_bytes: plan.arena_bytes,
        arena_len: plan.arena_bytes / ELEM_BYTES,
        u8_scale: float_literal(1.0f32 / 255.0, lang),
        arrays,
        convs,
        steps,
    })
}

fn render(templates: &[(&str, &str, String)], ctx: &Ctx) -> Result<Vec<GeneratedFile>> {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    tera.add_raw_templates(templates.iter().map(|(n, t, _)| (*n, *t)))
        .context("internal: a built-in template does not parse")?;
    let context = tera::Context::from_serialize(ctx)?;
    templates
        .iter()
        .map(|(n, _, path)| {
            let contents = tera
                .render(n, &context)
                .with_context(|| format!("internal: rendering template {n}"))?;
            Ok(GeneratedFile {
                path: path.clone(),
                contents,
            })
        })
        .collect()
}

/// Render the C kernel: `NAME.h` (API), `NAME.c` (kernels, arena, layer calls) and
/// `NAME_weights.h` (the constants, included by `NAME.c` only). `name` is sanitised.
pub fn generate_c(
    spec: &NetSpec,
    weights: &Weights,
    name: &str,
    note: &Provenance,
) -> Result<Vec<GeneratedFile>> {
    let name = sanitize_identifier(name)?;
    let lowered = lower_weights(spec, weights)?;
    let ctx = context(spec, &lowered, &name, note, Lang::C)?;
    render(
        &[
            ("c/model.h", C_HEADER, format!("{name}.h")),
            ("c/model.c", C_SOURCE, format!("{name}.c")),
            ("c/weights.h", C_WEIGHTS, format!("{name}_weights.h")),
        ],
        &ctx,
    )
}

/// Render the `no_std` Rust crate `NAME`: `Cargo.toml`, `src/lib.rs`, `src/weights.rs`.
/// `name` is sanitised.
pub fn generate_rust(
    spec: &NetSpec,
    weights: &Weights,
    name: &str,
    note: &Provenance,
) -> Result<Vec<GeneratedFile>> {
    let name = sanitize_identifier(name)?;
    let lowered = lower_weights(spec, weights)?;
    let ctx = context(spec, &lowered, &name, note, Lang::Rust)?;
    render(
        &[
            ("rust/Cargo.toml", RS_CARGO, "Cargo.toml".to_string()),
            ("rust/lib.rs", RS_LIB, "src/lib.rs".to_string()),
            ("rust/weights.rs", RS_WEIGHTS, "src/weights.rs".to_string()),
        ],
        &ctx,
    )
}

/// Write generated files under `dir` (created if needed), each atomically. Paths must be
/// relative and stay inside `dir`.
pub fn write_files(files: &[GeneratedFile], dir: &Path) -> Result<()> {
    for f in files {
        let rel = Path::new(&f.path);
        ensure!(
            !f.path.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_))),
            "refusing to write {:?}: generated paths must be relative and stay in the output directory",
            f.path
        );
        crate::util::write_atomic(&dir.join(rel), f.contents.as_bytes())
            .with_context(|| format!("cannot write {}", dir.join(rel).display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `nas export`
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nas export --run runs/r1 --lang c --out out/c\n  \
    nas export --net spec.json --weights w.safetensors --lang rust --out out/kernel --name kws"
)]
pub struct ExportArgs {
    /// Run directory of `nas search`: exports its winner (best/spec.json, best/weights.safetensors)
    #[arg(long, conflicts_with_all = ["net", "weights"], required_unless_present_any = ["net", "weights"])]
    pub run: Option<PathBuf>,
    /// Network spec JSON (instead of --run; needs --weights)
    #[arg(long, requires = "weights")]
    pub net: Option<PathBuf>,
    /// Trained weights, safetensors (instead of --run; needs --net)
    #[arg(long, requires = "net")]
    pub weights: Option<PathBuf>,
    /// Output language
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Output directory (created if needed; generated files in it are overwritten)
    #[arg(long)]
    pub out: PathBuf,
    /// Name of the kernel: C prefix (NAME_infer, NAME.h) or Rust crate name; sanitised to a
    /// lower_snake identifier
    #[arg(long, default_value = "model")]
    pub name: String,
    /// Target for the footprint in the header comment [default: the run's, else stm32f401re]
    #[arg(long)]
    pub target: Option<String>,
}

/// Files of a run's winner, relative to the run directory.
pub const RUN_SPEC: &str = "best/spec.json";
pub const RUN_WEIGHTS: &str = "best/weights.safetensors";
pub const RUN_COST: &str = "best/cost.json";
/// The run's configuration (target and budgets), relative to the run directory.
pub const RUN_CONFIG: &str = "config.json";
/// Target of the footprint when neither --target nor the run names one.
pub const DEFAULT_TARGET: &str = "stm32f401re";

pub fn run(a: ExportArgs) -> Result<()> {
    let (spec_path, weights_path, cost_path, source) = match (&a.run, &a.net, &a.weights) {
        (Some(run), _, _) => {
            ensure!(
                run.is_dir(),
                "run directory {} does not exist",
                run.display()
            );
            let spec = run.join(RUN_SPEC);
            ensure!(
                spec.is_file(),
                "{} has no {RUN_SPEC}: has the search finished a candidate yet?",
                run.display()
            );
            (
                spec,
                run.join(RUN_WEIGHTS),
                Some(run.join(RUN_COST)),
                run.display().to_string(),
            )
        }
        (None, Some(net), Some(w)) => (
            net.clone(),
            w.clone(),
            None,
            format!("{} + {}", net.display(), w.display()),
        ),
        _ => bail!("give either --run DIR, or --net SPEC.json with --weights W.safetensors"),
    };
    let text = std::fs::read_to_string(&spec_path)
        .with_context(|| format!("cannot read the network spec {}", spec_path.display()))?;
    let spec = NetSpec::from_json(&text)
        .with_context(|| format!("invalid network spec {}", spec_path.display()))?;
    ensure!(
        weights_path.is_file(),
        "weights file {} does not exist",
        weights_path.display()
    );
    let weights = Weights::load(&weights_path)?;
    weights.check(&spec).with_context(|| {
        format!(
            "weights {} do not match the spec {}",
            weights_path.display(),
            spec_path.display()
        )
    })?;

    // The footprint: recomputed from the plan for the target and budgets the run was made for
    // (its config.json) unless --target names one, and cross-checked against the run's cost.json.
    let recorded: Option<serde_json::Value> = match &cost_path {
        Some(p) if p.is_file() => Some(crate::util::read_json(p)?),
        _ => None,
    };
    let run_target = a
        .run
        .as_ref()
        .map(|r| r.join(RUN_CONFIG))
        .filter(|p| p.is_file())
        .and_then(|p| crate::util::read_json::<serde_json::Value>(&p).ok())
        .and_then(|cfg| {
            let t: crate::target::Target =
                serde_json::from_value(cfg.get("target")?.clone()).ok()?;
            let limits = cfg
                .get("limits")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_else(|| t.limits());
            Some((t, limits))
        });
    let (target, limits) = match (&a.target, run_target) {
        (Some(name), _) => {
            let t = crate::target::resolve(name)?;
            let l = t.limits();
            (t, l)
        }
        (None, Some(tl)) => tl,
        (None, None) => {
            let t = crate::target::resolve(DEFAULT_TARGET)?;
            let l = t.limits();
            (t, l)
        }
    };
    let plan = plan::lower(&spec)?;
    let footprint = crate::cost::cost(&plan, &target, &limits);
    if let Some(arena) = recorded
        .as_ref()
        .and_then(|v| v.get("arena_bytes"))
        .and_then(|v| v.as_u64())
    {
        if arena != footprint.arena_bytes {
            eprintln!(
                "warning: {} records an arena of {arena} bytes, the plan gives {}: the run was costed by another version of nas",
                cost_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                footprint.arena_bytes
            );
        }
    }

    let name = sanitize_identifier(&a.name).context("invalid --name")?;
    if name != a.name {
        eprintln!("note: --name {:?} sanitised to `{name}`", a.name);
    }
    let note = Provenance {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        source,
        target: Some(target.name.clone()),
        footprint: Some(footprint.clone()),
    };
    let files = match a.lang {
        Lang::C => generate_c(&spec, &weights, &name, &note)?,
        Lang::Rust => generate_rust(&spec, &weights, &name, &note)?,
    };
    write_files(&files, &a.out)?;
    println!("{}", spec.summary());
    for f in &files {
        println!(
            "wrote {} ({} lines)",
            a.out.join(&f.path).display(),
            f.contents.lines().count()
        );
    }
    println!(
        "arena {} bytes (cost model: {}), {} deployed parameters, {} MACs per inference",
        plan.arena_bytes, footprint.arena_bytes, footprint.deployed_params, footprint.executed_macs
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Block, Head, Padding, SearchSpace};

    #[test]
    fn identifiers_are_sanitised() {
        assert_eq!(sanitize_identifier("model").unwrap(), "model");
        assert_eq!(
            sanitize_identifier("foo-bar; system(\"rm -rf /\")").unwrap(),
            "foo_bar_system_rm_rf"
        );
        assert_eq!(sanitize_identifier("My Net v2").unwrap(), "my_net_v2");
        assert_eq!(sanitize_identifier("__x__").unwrap(), "x");
        assert_eq!(sanitize_identifier("1net").unwrap(), "nn_1net");
        assert_eq!(sanitize_identifier("int").unwrap(), "int_nn");
        assert_eq!(sanitize_identifier("core").unwrap(), "core_nn");
        assert_eq!(sanitize_identifier("Self").unwrap(), "self_nn");
        let long = sanitize_identifier(&"abc_".repeat(20)).unwrap();
        assert!(
            long.len() <= MAX_IDENTIFIER_LEN && !long.ends_with('_'),
            "{long}"
        );
        assert!(sanitize_identifier("").is_err());
        assert!(sanitize_identifier("--- ;;").is_err());
        assert!(sanitize_identifier("été").unwrap() == "t");
    }

    #[test]
    fn comments_cannot_be_closed_early() {
        let s = comment_safe("a */ b /* c **/ d → ×\n");
        assert!(
            !s.contains("*/") && !s.contains("/*") && !s.contains('\n'),
            "{s}"
        );
    }

    #[test]
    fn float_literals_round_trip() {
        for x in [
            0.0f32,
            -0.0,
            1.0,
            1.0 / 255.0,
            1e-7,
            -3.4e38,
            1.17e-38,
            0.1,
            123456.78,
        ] {
            let s = float_literal(x, Lang::Rust);
            assert_eq!(s.parse::<f32>().unwrap().to_bits(), x.to_bits(), "{s}");
            assert!(float_literal(x, Lang::C).ends_with('f'));
        }
    }

    /// Straightforward f64 forward pass in burn's layout, from the unfolded tensors.
    fn naive(spec: &NetSpec, w: &Weights, input: &[u8]) -> Vec<f64> {
        let mut x: Vec<Vec<f64>> = vec![input.iter().map(|&b| b as f64 / 255.0).collect()];
        for (i, b) in spec.blocks.iter().enumerate() {
            let len = x[0].len();
            let out_len = crate::arch::conv_out_len(len, b.kernel, b.stride, b.padding).unwrap();
            let (pl, _) = crate::arch::conv_padding(len, b.kernel, b.stride, b.padding);
            let cw = w.get(&format!("conv{i}.weight"));
            let cb = w.get(&format!("conv{i}.bias"));
            let ci = x.len();
            let mut y = vec![vec![0.0f64; out_len]; b.filters];
            for (f, yf) in y.iter_mut().enumerate() {
                for (o, yo) in yf.iter_mut().enumerate() {
                    let mut acc = cb[f] as f64;
                    for c in 0..ci {
                        for j in 0..b.kernel {
                            let p = (o * b.stride + j) as isize - pl as isize;
                            if p >= 0 && (p as usize) < len {
                                acc += x[c][p as usize] * cw[(f * ci + c) * b.kernel + j] as f64;
                            }
                        }
                    }
                    if b.batch_norm {
                        let g = |n: &str| w.get(&format!("bn{i}.{n}"))[f] as f64;
                        acc = (acc - g("mean")) / (g("var") + BN_EPSILON as f64).sqrt()
                            * g("gamma")
                            + g("beta");
                    }
                    *yo = acc.max(0.0);
                }
                if let Some(p) = b.pool {
                    *yf = yf
                        .chunks_exact(p.size)
                        .map(|c| match p.kind {
                            PoolKind::Max => c.iter().cloned().fold(f64::MIN, f64::max),
                            PoolKind::Avg => c.iter().sum::<f64>() / p.size as f64,
                        })
                        .collect();
                }
            }
            x = y;
        }
        let g: Vec<f64> = x
            .iter()
            .map(|c| c.iter().sum::<f64>() / c.len() as f64)
            .collect();
        let dw = w.get("dense.weight");
        let db = w.get("dense.bias");
        (0..spec.classes)
            .map(|k| {
                db[k] as f64
                    + (0..g.len())
                        .map(|c| g[c] * dw[c * spec.classes + k] as f64)
                        .sum::<f64>()
            })
            .collect()
    }

    fn mixed_spec() -> NetSpec {
        let b = |filters, kernel, stride, padding, pool: Option<(PoolKind, usize)>| {
            let b = Block::new(filters, kernel, stride, padding);
            pool.map_or(b.clone(), |(kind, size)| b.with_pool(kind, size))
        };
        let mut spec = NetSpec {
            input_len: 300,
            input_channels: 1,
            classes: 5,
            blocks: vec![
                b(6, 5, 2, Padding::Same, None),
                b(8, 4, 1, Padding::Valid, Some((PoolKind::Max, 2))),
                b(7, 3, 3, Padding::Same, Some((PoolKind::Avg, 3))),
                b(5, 2, 1, Padding::Valid, None),
            ],
            head: Head::GapDense,
        };
        spec.correct(&SearchSpace::default());
        spec
    }

    #[test]
    fn reference_matches_a_naive_forward_pass() {
        for (spec, seed) in [(NetSpec::smart_start(784, 12), 1), (mixed_spec(), 2)] {
            spec.validate().unwrap();
            let w = Weights::random(&spec, seed);
            let low = lower_weights(&spec, &w).unwrap();
            for s in 0..4u64 {
                let input: Vec<u8> = (0..spec.input_len)
                    .map(|i| ((i as u64 * 2654435761 + s * 97) >> 7) as u8)
                    .collect();
                let want = naive(&spec, &w, &input);
                let got = reference_logits(&low, &input);
                let scaled: Vec<f32> = input.iter().map(|&b| b as f32 / 255.0).collect();
                let got_f32 = reference_logits_f32(&low, &scaled);
                for k in 0..spec.classes {
                    assert!(
                        (got[k] as f64 - want[k]).abs() < 1e-5,
                        "{k}: {} vs {}",
                        got[k],
                        want[k]
                    );
                    assert!((got_f32[k] as f64 - want[k]).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn header_spec_json_parses_back() {
        let spec = mixed_spec();
        let text = spec_json_lines(&spec).join("\n");
        assert_eq!(NetSpec::from_json(&text).unwrap(), spec);
    }

    #[test]
    fn generated_c_declares_the_planned_arena() {
        let spec = NetSpec::smart_start(784, 12);
        let w = Weights::random(&spec, 3);
        let files = generate_c(&spec, &w, "model", &Provenance::new("test")).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["model.h", "model.c", "model_weights.h"]);
        let plan = plan::lower(&spec).unwrap();
        assert!(files[0]
            .contents
            .contains(&format!("#define MODEL_ARENA_BYTES {}", plan.arena_bytes)));
        assert!(files[1]
            .contents
            .contains(&format!("float model_arena[{}];", plan.arena_bytes / 4)));
        assert!(files[2]
            .contents
            .contains("static const float model_conv1_w[12312]"));
        // Arena offsets of the plan appear in the layer calls.
        assert!(files[1].contents.contains("model_arena + 5292"));
        let rs = generate_rust(&spec, &w, "model", &Provenance::new("test")).unwrap();
        assert!(rs[1].contents.contains(&format!(
            "pub const ARENA_BYTES: usize = {};",
            plan.arena_bytes
        )));
    }

    #[test]
    fn mismatched_weights_are_rejected() {
        let spec = NetSpec::smart_start(784, 12);
        let w = Weights::random(&mixed_spec(), 3);
        let e = format!(
            "{:#}",
            generate_c(&spec, &w, "model", &Provenance::new("t")).unwrap_err()
        );
        assert!(e.contains("do not belong"), "{e}");
    }

    #[test]
    fn write_files_stays_in_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let bad = GeneratedFile {
            path: "../x.c".into(),
            contents: String::new(),
        };
        assert!(write_files(&[bad], dir.path()).is_err());
        let abs = GeneratedFile {
            path: "/tmp/x.c".into(),
            contents: String::new(),
        };
        assert!(write_files(&[abs], dir.path()).is_err());
        let ok = GeneratedFile {
            path: "src/lib.rs".into(),
            contents: "x".into(),
        };
        write_files(&[ok], dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("src/lib.rs")).unwrap(),
            "x"
        );
    }
}
