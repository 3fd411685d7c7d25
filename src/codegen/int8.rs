//! Rendering of the int8 C kernel (`templates/c/int8`): the template context, computed here in
//! full (sizes, offsets, packed constants, window ranges, identifiers).

use super::{render, sanitize_identifier, GeneratedFile, Lang, Provenance};
use crate::net::int8::{
    by_filter, code_features, column_words, filter_outer_chunk, full_range, row4,
    FILTER_OUTER_CHUNK,
};
use crate::net::plan::{self, ConvOp, Layer, Op};
use crate::net::NetSpec;
use crate::quant::kernel::{chan_consts, lookup_table_int8, pack_rows, ChanConsts};
use crate::quant::{QuantLayer, QuantLowered};
use anyhow::{bail, ensure, Result};
use serde::Serialize;

const C_HEADER: &str = include_str!("../../templates/c/int8/model.h.tera");
const C_SOURCE: &str = include_str!("../../templates/c/int8/model.c.tera");
const C_WEIGHTS: &str = include_str!("../../templates/c/int8/weights.h.tera");
const RS_CARGO: &str = include_str!("../../templates/rust/Cargo.toml.tera");
const RS_LIB: &str = include_str!("../../templates/rust/int8/lib.rs.tera");
const RS_WEIGHTS: &str = include_str!("../../templates/rust/int8/weights.rs.tera");

/// Packed weight words per generated line.
const WORDS_PER_LINE: usize = 8;

#[derive(Serialize)]
struct ArrayCtx {
    ident: String,
    comment: String,
    ctype: String,
    rtype: String,
    len: usize,
    lines: Vec<String>,
}

#[derive(Serialize)]
struct ConvCtx {
    ident: String,
    comment: String,
    w: String,
    q: String,
    in_len: usize,
    in_ch: usize,
    out_ch: usize,
    kernel: usize,
    stride: usize,
    pad_left: usize,
    out_len: usize,
    pool: usize,
    row4: usize,
    full_lo: usize,
    full_hi: usize,
    pool_avg: u8,
    avg: bool,
    /// C: runs through the generic conv (not a filter-outer sweep), in this function.
    generic: bool,
    fn_name: String,
}

/// A conv with the filter-outer schedule: its sweep's literals.
#[derive(Serialize)]
struct ByFilterCtx {
    comment: String,
    layer: String,
    cfg: String,
    out_ch: usize,
    out_len: usize,
    full_lo: usize,
    full_hi: usize,
    /// Input bytes between consecutive windows.
    step: usize,
    /// Byte offsets in the input of the first full window and one past the last.
    x_lo: usize,
    x_hi: usize,
    /// Byte offset in the output of the first full window's outputs.
    o_lo: usize,
    /// Full windows widened into columns at a time on DSP cores.
    chunk: usize,
}

#[derive(Serialize, Default)]
struct StepCtx {
    op: &'static str,
    comment: String,
    layer: String,
    src: String,
    dst: String,
    cfg: String,
    w: String,
    b: String,
    len: usize,
    ch: usize,
    inputs: usize,
    outputs: usize,
    row4: usize,
    fn_name: String,
    /// The input embedding's padding rows and the byte they hold (real 0: zero point + 128).
    pad_left: usize,
    pad_right: usize,
    pad_byte: u8,
    /// The lookup-table conv's shape (`len`: input bytes, `ch`: filters).
    kernel: usize,
    stride: usize,
    out_len: usize,
    pool: usize,
    /// `1`/`0` for C, `true`/`false` for Rust.
    pool_avg: u8,
    pool_avg_rs: bool,
    /// A requantizing global average (TFLite's MEAN): its requantization as a channel's
    /// (the bias is `−(128 + zp_in) · len`, turning the bytes' sum into `Σ (x − zp_in)`) and
    /// the output zero point.
    mean_bias: i32,
    mean_m0: i32,
    mean_rnd: i32,
    mean_lsh: u8,
    mean_rsh: u8,
    zp_out: i32,
    // Rust: arena ranges in bytes.
    from_input: bool,
    src_start: usize,
    src_end: usize,
    dst_start: usize,
    dst_end: usize,
}

#[derive(Serialize)]
struct Ctx {
    name: String,
    tool_version: String,
    upper: String,
    guard: String,
    header: Vec<String>,
    header_short: Vec<String>,
    input_len: usize,
    classes: usize,
    arena_bytes: usize,
    out_scale: String,
    out_zp: i32,
    arrays: Vec<ArrayCtx>,
    convs: Vec<ConvCtx>,
    by_filter: Vec<ByFilterCtx>,
    steps: Vec<StepCtx>,
    /// Always true: the Rust crate gets the `dsp` feature.
    int8: bool,
    /// Whether the network embeds its input bytes.
    embedded: bool,
    /// Whether a step looks up embedding rows / runs the lookup-table conv / requantizes a
    /// global average.
    rows: bool,
    lut: bool,
    gap_plain: bool,
    gap_mean: bool,
    /// Words of the kernel's column buffer on DSP cores (0: no conv reads columns).
    cols_words: usize,
    /// Full windows of a filter-outer conv widened at a time (the Rust kernel's constant).
    filter_outer_chunk: usize,
    /// Whether a conv runs the generic way on DSP cores (on columns).
    cols_generic: bool,
    /// Whether a generic conv ends in a group of 2 or 3 filters (a filter pair of it has
    /// its own routine on DSP cores) / of 1 or 3 (a lone filter, likewise).
    cols_pairs_rest: bool,
    cols_single_rest: bool,
}

fn word_lines(words: &[u32], lang: Lang) -> Vec<String> {
    let suffix = if lang == Lang::C { "u" } else { "" };
    words
        .chunks(WORDS_PER_LINE)
        .map(|c| {
            c.iter()
                .map(|w| format!("0x{w:08x}{suffix},"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn chan_lines(ch: &[ChanConsts], lang: Lang) -> Vec<String> {
    ch.iter()
        .map(|c| match lang {
            Lang::C => format!(
                "{{ {}, {}, {}, {}, {}, 0 }},",
                c.bias, c.m0, c.rnd, c.lsh, c.rsh
            ),
            Lang::Rust => format!(
                "Chan {{ bias: {}, m0: {}, rnd: {}, lsh: {}, rsh: {}, unused: 0 }},",
                c.bias, c.m0, c.rnd, c.lsh, c.rsh
            ),
        })
        .collect()
}

/// Header comment lines: provenance, the network, the int8 layer table and the numerics.
fn header_lines(
    spec: &NetSpec,
    q: &QuantLowered,
    name: &str,
    note: &Provenance,
    lang: Lang,
    full: bool,
) -> Vec<String> {
    let plan = &q.plan;
    let header = super::context::Header {
        title: format!(
            "{name}: int8 1D-CNN inference kernel generated by nas {} (`nas export --lang {} --dtype int8`).",
            note.tool_version,
            if lang == Lang::C { "c" } else { "rust" }
        ),
        input: format!(
            "input: {} raw bytes; output: {} logits (int8, dequantized)",
            plan.input_len * plan.input_channels,
            plan.classes
        ),
        layers: layer_table_lines(q),
        footprint: footprint_lines(q, note),
        numerics: NUMERICS.iter().map(|l| l.to_string()).collect(),
    };
    header.lines(spec, note, full)
}

/// What the int8 arithmetic is, for the header.
const NUMERICS: &[&str] = &[
    "numerics: TFLite int8 (bit-exact with CMSIS-NN): int8 weights symmetric per",
    "output channel, int8 activations with zero point -128 stored as x + 128, int32",
    "bias, MultiplyByQuantizedMultiplier requantization, TFLite average rounding.",
    "Integer arithmetic: the results equal nas's host reference exactly.",
];

/// One line per layer: what it computes, where its tensors live, their scales and zero points.
fn layer_table_lines(q: &QuantLowered) -> Vec<String> {
    let mut h = vec!["layers (int8, channels-last; arena offsets in bytes):".to_string()];
    for (i, (l, ql)) in q.plan.layers.iter().zip(&q.layers).enumerate() {
        let at = |o: Option<usize>, n: usize, io: &str| match o {
            Some(o) => format!("arena[{o}..{}]", o + n),
            None => io.to_string(),
        };
        h.push(format!(
            "  {}: {}  [{} -> {}]  in scale {:e} zp {}, out scale {:e} zp {}",
            l.name,
            super::layer_desc(l),
            at(q.arena.input[i], l.input.elements(), "input"),
            at(q.arena.output[i], l.output.elements(), "q"),
            ql.input.scale,
            ql.input.zero_point,
            ql.output.scale,
            ql.output.zero_point
        ));
    }
    h
}

/// The cost model's int8 footprint, or the arena alone when the caller gave none.
fn footprint_lines(q: &QuantLowered, note: &Provenance) -> Vec<String> {
    let Some(c) = &note.footprint else {
        return vec![format!("arena {} bytes", q.arena.bytes)];
    };
    let on = note.target.as_deref().map(|t| format!(" on {t}"));
    vec![
        format!("footprint{} (int8):", on.unwrap_or_default()),
        format!(
            "  params {} ({} deployed), MACs {} ({} executed)",
            c.params, c.deployed_params, c.macs, c.executed_macs
        ),
        format!(
            "  arena {} bytes, RAM estimate {} bytes (arena + stack)",
            c.arena_bytes, c.ram_bytes
        ),
        format!(
            "  flash estimate {} bytes (constants {} + code {})",
            c.flash_bytes, c.weights_bytes, c.code_bytes
        ),
        format!("  fits the budget: {}", if c.fits { "yes" } else { "NO" }),
    ]
}

/// How the generated code names things: arena pointers and per-layer constants.
struct Names<'a> {
    name: &'a str,
    lang: Lang,
}

impl Names<'_> {
    /// A layer's source or destination: an arena offset, else the kernel's input or output.
    fn buf(&self, o: Option<usize>, io: &str) -> String {
        match o {
            Some(o) => format!("{}_arena + {o}", self.name),
            None => io.to_string(),
        }
    }

    /// A per-layer constant: `NAME_layer_what` in C, `LAYER_WHAT` in Rust.
    fn ident(&self, layer: &str, what: &str) -> String {
        match self.lang {
            Lang::C => format!("{}_{layer}_{what}", self.name),
            Lang::Rust => format!("{layer}_{what}").to_ascii_uppercase(),
        }
    }

    /// A conv's configuration constant.
    fn cfg(&self, layer: &str) -> String {
        match self.lang {
            Lang::C => format!("{}_{layer}_cfg", self.name),
            Lang::Rust => layer.to_ascii_uppercase(),
        }
    }
}

/// The embedding table's stored bytes (`q + 128`), per generated line.
const BYTES_PER_LINE: usize = 16;

/// A layer's constant arrays: packed weights and per-channel constants (none for pooling), or
/// the embedding's table as stored bytes.
fn layer_arrays(l: &Layer, ql: &QuantLayer, n: &Names) -> Vec<ArrayCtx> {
    if let Op::Embed { dim, .. } = l.op {
        let stored: Vec<u8> = ql.weights.iter().map(|&q| (q as i32 + 128) as u8).collect();
        let suffix = if n.lang == Lang::C { "u" } else { "" };
        let lines = stored
            .chunks(BYTES_PER_LINE)
            .map(|c| {
                c.iter()
                    .map(|b| format!("{b}{suffix},"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        return vec![ArrayCtx {
            ident: n.ident(&l.name, "w"),
            comment: format!(
                "{}: int8 table [256][{dim}], stored as q + 128 (scale {:e}, zero point {})",
                super::comment_safe(&super::layer_desc(l)),
                ql.output.scale,
                ql.output.zero_point
            ),
            ctype: "uint8_t".into(),
            rtype: "u8".into(),
            len: stored.len(),
            lines,
        }];
    }
    let desc = super::comment_safe(&super::layer_desc(l));
    if let Op::LutConv(c) = &l.op {
        let lut = lookup_table_int8(c, ql);
        let lines = lut
            .chunks(WORDS_PER_LINE)
            .map(|c| {
                c.iter()
                    .map(|v| format!("{v},"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        return vec![
            ArrayCtx {
                ident: n.ident(&l.name, "w"),
                comment: format!(
                    "{desc}: int32 lookup table [filter][tap][byte] of the int8 table (scale {:e}, \
                     zero point {}) times the int8 weights",
                    ql.input.scale, ql.input.zero_point
                ),
                ctype: "int32_t".into(),
                rtype: "i32".into(),
                len: lut.len(),
                lines,
            },
            ArrayCtx {
                ident: n.ident(&l.name, "b"),
                comment: format!("{}: bias and requantization per output channel", l.name),
                ctype: format!("{}_chan_t", n.name),
                rtype: "Chan".into(),
                len: ql.bias.len(),
                lines: chan_lines(&chan_consts(ql, true), n.lang),
            },
        ];
    }
    let (nw, nb) = l.deployed_params();
    let Some(row) = nw.checked_div(nb) else {
        return Vec::new();
    };
    let words = pack_rows(&ql.weights, nb, row);
    vec![
        ArrayCtx {
            ident: n.ident(&l.name, "w"),
            comment: format!("{desc}: int8 weights, packed"),
            ctype: "uint32_t".into(),
            rtype: "u32".into(),
            len: words.len(),
            lines: word_lines(&words, n.lang),
        },
        ArrayCtx {
            ident: n.ident(&l.name, "b"),
            comment: format!("{}: bias and requantization per output channel", l.name),
            ctype: format!("{}_chan_t", n.name),
            rtype: "Chan".into(),
            len: nb,
            lines: chan_lines(&chan_consts(ql, false), n.lang),
        },
    ]
}

/// A conv's configuration, and its filter-outer sweep when the C kernel runs it that way.
fn conv_ctx(l: &Layer, c: &ConvOp, n: &Names) -> Result<ConvParts> {
    let desc = super::comment_safe(&super::layer_desc(l));
    let (lo, hi) = full_range(c);
    let r4 = row4(c.kernel * c.in_channels);
    for v in [c.in_len, c.in_channels, c.out_channels, c.out_len, r4, hi] {
        ensure!(
            v <= u16::MAX as usize,
            "layer {}: a dimension of {v} exceeds the int8 kernel's 16-bit fields",
            l.name
        );
    }
    let cfg = n.cfg(&l.name);
    let avg = matches!(c.pool, Some((crate::net::PoolKind::Avg, _)));
    let filter_outer = by_filter(c);
    let conv = ConvCtx {
        ident: cfg.clone(),
        comment: desc.clone(),
        w: n.ident(&l.name, "w"),
        q: n.ident(&l.name, "b"),
        in_len: c.in_len,
        in_ch: c.in_channels,
        out_ch: c.out_channels,
        kernel: c.kernel,
        stride: c.stride,
        pad_left: c.pad_left,
        out_len: c.out_len,
        pool: c.pool.map_or(1, |p| p.1),
        row4: r4,
        full_lo: lo,
        full_hi: hi,
        pool_avg: u8::from(avg),
        avg,
        generic: !filter_outer,
        fn_name: format!("{}_{}", n.name, l.name),
    };
    let by = filter_outer.then(|| {
        let step = c.stride * c.in_channels;
        let x_lo = if hi > lo {
            (lo * c.stride - c.pad_left) * c.in_channels
        } else {
            0
        };
        ByFilterCtx {
            comment: desc,
            layer: l.name.clone(),
            cfg,
            out_ch: c.out_channels,
            out_len: c.out_len,
            full_lo: lo,
            full_hi: hi,
            step,
            x_lo,
            x_hi: x_lo + (hi - lo) * step,
            o_lo: lo * c.out_channels,
            chunk: filter_outer_chunk(c),
        }
    });
    Ok((conv, by))
}

/// A conv's configuration and, for a filter-outer conv, its sweep.
type ConvParts = (ConvCtx, Option<ByFilterCtx>);

/// Layer `i`'s step in the inference sequence; a conv also yields its configuration.
fn step_ctx(q: &QuantLowered, i: usize, n: &Names) -> Result<(StepCtx, Option<ConvParts>)> {
    let (l, ql) = (&q.plan.layers[i], &q.layers[i]);
    let (input, output) = (q.arena.input[i], q.arena.output[i]);
    let mut s = StepCtx {
        comment: super::comment_safe(&super::layer_desc(l)),
        layer: l.name.clone(),
        src: n.buf(input, "input"),
        dst: n.buf(output, "q"),
        w: n.ident(&l.name, "w"),
        b: n.ident(&l.name, "b"),
        from_input: input.is_none(),
        src_start: input.unwrap_or(0),
        src_end: input.map_or(0, |o| o + l.input.elements()),
        dst_start: output.unwrap_or(0),
        dst_end: output.map_or(0, |o| o + l.output.elements()),
        ..StepCtx::default()
    };
    let mut conv = None;
    match &l.op {
        Op::Embed {
            len,
            dim,
            pad_left,
            pad_right,
        } => {
            ensure!(
                input.is_none() && output.is_some(),
                "internal: the embedding must read the input and write the arena"
            );
            (s.op, s.len, s.ch) = ("embed", *len, *dim);
            (s.pad_left, s.pad_right) = (*pad_left, *pad_right);
            s.pad_byte = (ql.output.zero_point + 128) as u8;
        }
        Op::Conv(c) => {
            ensure!(
                output.is_some(),
                "internal: conv {} must write to the arena",
                l.name
            );
            ensure!(
                ql.output.zero_point == -128 && ql.act_min == -128,
                "internal: conv {} output zero point {} (the kernel stores x + 128)",
                l.name,
                ql.output.zero_point
            );
            let (cc, by) = conv_ctx(l, c, n)?;
            s.cfg = cc.ident.clone();
            if by.is_some() {
                s.op = "conv_by_filter";
            } else {
                s.op = "conv";
                s.fn_name = cc.fn_name.clone();
            }
            conv = Some((cc, by));
        }
        Op::LutConv(c) => {
            ensure!(
                input.is_none() && output.is_some(),
                "internal: the lookup-table conv must read the input and write the arena"
            );
            ensure!(
                ql.output.zero_point == -128 && ql.act_min == -128,
                "internal: conv {} output zero point {} (the kernel stores x + 128)",
                l.name,
                ql.output.zero_point
            );
            let avg = matches!(c.pool, Some((crate::net::PoolKind::Avg, _)));
            (s.op, s.len, s.ch) = ("lut_conv", c.in_len, c.out_channels);
            (s.kernel, s.stride, s.pad_left) = (c.kernel, c.stride, c.pad_left);
            (s.out_len, s.pool) = (c.out_len, c.pool.map_or(1, |p| p.1));
            (s.pool_avg, s.pool_avg_rs) = (u8::from(avg), avg);
            s.fn_name = format!("{}_{}", n.name, l.name);
        }
        Op::GlobalAvgPool { len, channels } => {
            ensure!(input.is_some(), "internal: global pooling reads the input");
            (s.op, s.len, s.ch) = ("gap", *len, *channels);
            if let Some(m) = ql.mean {
                let (lsh, rnd, rsh) = crate::quant::fast_shifts(m.shift);
                let bias = -((128 + ql.input.zero_point) as i64) * *len as i64;
                s.op = "gap_mean";
                s.mean_bias = i32::try_from(bias)?;
                (s.mean_m0, s.mean_rnd) = (m.multiplier, rnd);
                (s.mean_lsh, s.mean_rsh) = (lsh as u8, rsh as u8);
                s.zp_out = ql.output.zero_point;
            }
        }
        Op::Dense { inputs, outputs } => {
            ensure!(
                input.is_some() && output.is_none(),
                "internal: the dense head must read the arena and write the outputs"
            );
            (s.op, s.inputs, s.outputs, s.row4) = ("dense", *inputs, *outputs, row4(*inputs));
        }
    }
    Ok((s, conv))
}

fn context(
    spec: &NetSpec,
    q: &QuantLowered,
    name: &str,
    note: &Provenance,
    lang: Lang,
) -> Result<Ctx> {
    let plan = &q.plan;
    let names = Names { name, lang };
    let (mut arrays, mut convs, mut by, mut steps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, (l, ql)) in plan.layers.iter().zip(&q.layers).enumerate() {
        arrays.extend(layer_arrays(l, ql, &names));
        let (step, conv) = step_ctx(q, i, &names)?;
        if let Some((c, b)) = conv {
            convs.push(c);
            by.extend(b);
        }
        steps.push(step);
    }
    let out = q.output_params();
    if !(out.scale.is_finite() && out.scale > 0.0) {
        bail!("internal: output scale {}", out.scale);
    }
    let upper = name.to_ascii_uppercase();
    let rows = steps.iter().any(|s| s.op == "embed");
    let lut = steps.iter().any(|s| s.op == "lut_conv");
    // Which routines the C kernel's column path needs on a DSP core.
    let dsp_features = code_features(plan, true);
    let gap_plain = steps.iter().any(|s| s.op == "gap");
    let gap_mean = steps.iter().any(|s| s.op == "gap_mean");
    Ok(Ctx {
        name: name.to_string(),
        tool_version: note.tool_version.clone(),
        guard: format!("{upper}_H"),
        upper,
        header: header_lines(spec, q, name, note, lang, true),
        header_short: header_lines(spec, q, name, note, lang, false),
        input_len: plan.input_len * plan.input_channels,
        classes: plan.classes,
        arena_bytes: q.arena.bytes,
        out_scale: match lang {
            Lang::C => format!("{:?}f", out.scale),
            Lang::Rust => format!("{:?}", out.scale),
        },
        out_zp: out.zero_point,
        arrays,
        convs,
        by_filter: by,
        steps,
        int8: true,
        embedded: spec.input.embedding_dim().is_some(),
        rows,
        lut,
        gap_plain,
        gap_mean,
        // The Rust kernel runs every conv on columns with DSP (it has no filter-outer sweep).
        cols_words: column_words(plan, true),
        filter_outer_chunk: FILTER_OUTER_CHUNK,
        cols_generic: dsp_features.columns == 1,
        cols_pairs_rest: dsp_features.rest_pair == 1,
        cols_single_rest: dsp_features.rest_single == 1,
    })
}

/// Render the int8 C kernel: `NAME.h`, `NAME.c`, `NAME_weights.h`. `name` is sanitised.
pub fn generate_c_int8(
    spec: &NetSpec,
    q: &QuantLowered,
    name: &str,
    note: &Provenance,
) -> Result<Vec<GeneratedFile>> {
    let name = sanitize_identifier(name)?;
    ensure!(
        q.plan == plan::lower(spec)?,
        "internal: the quantized network does not belong to this spec"
    );
    let ctx = context(spec, q, &name, note, Lang::C)?;
    render(
        &[
            ("c/int8/model.h", C_HEADER, format!("{name}.h")),
            ("c/int8/model.c", C_SOURCE, format!("{name}.c")),
            ("c/int8/weights.h", C_WEIGHTS, format!("{name}_weights.h")),
        ],
        &ctx,
    )
}

/// Render the int8 `no_std` Rust crate `NAME`: `Cargo.toml`, `src/lib.rs`, `src/weights.rs`.
pub fn generate_rust_int8(
    spec: &NetSpec,
    q: &QuantLowered,
    name: &str,
    note: &Provenance,
) -> Result<Vec<GeneratedFile>> {
    let name = sanitize_identifier(name)?;
    ensure!(
        q.plan == plan::lower(spec)?,
        "internal: the quantized network does not belong to this spec"
    );
    let ctx = context(spec, q, &name, note, Lang::Rust)?;
    render(
        &[
            ("rust/Cargo.toml", RS_CARGO, "Cargo.toml".to_string()),
            ("rust/int8/lib.rs", RS_LIB, "src/lib.rs".to_string()),
            (
                "rust/int8/weights.rs",
                RS_WEIGHTS,
                "src/weights.rs".to_string(),
            ),
        ],
        &ctx,
    )
}
