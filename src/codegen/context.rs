//! Template data: every size, offset, loop bound, identifier and literal the templates print,
//! computed here so that the templates hold no decisions.

use super::*;
use crate::lower::{pool_params, LayerConsts, Lowered};

/// A kernel's language: what `nas export` writes, what `nas verify` builds into firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// C99: NAME.h, NAME.c and NAME_weights.h (compiled with arm-none-eabi-gcc in firmware)
    C,
    /// A no_std Rust crate: Cargo.toml, src/lib.rs, src/weights.rs (a staticlib behind C entry
    /// points in firmware)
    Rust,
}

impl Lang {
    pub fn label(self) -> &'static str {
        match self {
            Lang::C => "C",
            Lang::Rust => "Rust",
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ArrayCtx {
    pub(crate) ident: String,
    pub(crate) comment: String,
    pub(crate) len: usize,
    pub(crate) lines: Vec<String>,
}

#[derive(Serialize)]
pub(crate) struct ConvCtx {
    pub(crate) ident: String,
    pub(crate) comment: String,
    pub(crate) in_len: usize,
    pub(crate) in_ch: usize,
    pub(crate) out_ch: usize,
    pub(crate) kernel: usize,
    pub(crate) stride: usize,
    pub(crate) pad_left: usize,
    pub(crate) out_len: usize,
    pub(crate) pool: usize,
    /// `1`/`0` in C, `true`/`false` in Rust.
    pub(crate) pool_max: String,
    pub(crate) pool_scale: String,
}

#[derive(Serialize, Default)]
pub(crate) struct StepCtx {
    pub(crate) op: &'static str,
    pub(crate) comment: String,
    // C: argument expressions.
    pub(crate) src_u8: String,
    pub(crate) src_f32: String,
    pub(crate) dst: String,
    pub(crate) scale: String,
    // Rust: arena ranges in elements.
    pub(crate) from_input: bool,
    pub(crate) src_start: usize,
    pub(crate) src_end: usize,
    pub(crate) dst_start: usize,
    pub(crate) dst_end: usize,
    // Constants.
    pub(crate) cfg: String,
    pub(crate) w: String,
    pub(crate) b: String,
    pub(crate) len: usize,
    pub(crate) ch: usize,
    pub(crate) inv_len: String,
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    /// The input embedding's padding rows, before and after the embedded bytes.
    pub(crate) pad_left: usize,
    pub(crate) pad_right: usize,
}

#[derive(Serialize)]
pub(crate) struct Ctx {
    pub(crate) name: String,
    pub(crate) upper: String,
    pub(crate) guard: String,
    pub(crate) tool_version: String,
    pub(crate) header: Vec<String>,
    pub(crate) header_short: Vec<String>,
    pub(crate) input_len: usize,
    pub(crate) classes: usize,
    pub(crate) arena_bytes: usize,
    pub(crate) arena_len: usize,
    pub(crate) u8_scale: String,
    pub(crate) arrays: Vec<ArrayCtx>,
    pub(crate) convs: Vec<ConvCtx>,
    pub(crate) steps: Vec<StepCtx>,
    /// Whether the kernel is int8 (its Rust crate then has the `dsp` feature).
    pub(crate) int8: bool,
    /// Whether the network embeds its input bytes (it then reads bytes only: no entry point
    /// for scaled float input, no 1/255 scale).
    pub(crate) embedded: bool,
    /// Whether a step looks up embedding rows (`embed`) / folds them into the first conv
    /// (`lut_conv`): the template then defines that function.
    pub(crate) rows: bool,
    pub(crate) lut: bool,
    /// Floats of one window of raw bytes in the C kernel's buffer for the first conv (0: no
    /// conv reads them); the buffer holds two with an FPU.
    pub(crate) byte_row: usize,
    /// The first conv's kernel when the float C kernel sweeps it filter by filter on a core
    /// with an FPU (`net::latency::sweep_windows`; 0: no conv is swept).
    pub(crate) sweep_k: usize,
}

pub(crate) fn layer_desc(l: &plan::Layer) -> String {
    match &l.op {
        Op::Embed {
            len,
            dim,
            pad_left,
            pad_right,
        } => format!(
            "{}: input embedding, table [256][{dim}]: [{len}] bytes -> [{}][{dim}] \
             ({pad_left} + {len} + {pad_right}: the first conv's padding as embedded zeros)",
            l.name,
            pad_left + len + pad_right
        ),
        Op::LutConv(c) => {
            let pool = match c.pool {
                None => String::new(),
                Some((PoolKind::Max, s)) => format!(" -> max pool {s}"),
                Some((PoolKind::Avg, s)) => format!(" -> avg pool {s}"),
            };
            format!(
                "{}: input embedding 256x{} folded into conv x{} k{} s{} pad_left {}{}, a lookup \
                 table [{}][{}][256] -> relu{pool}: [{}] bytes -> [{}][{}]",
                l.name,
                c.in_channels,
                c.out_channels,
                c.kernel,
                c.stride,
                c.pad_left,
                if c.batch_norm { " (+bn folded)" } else { "" },
                c.out_channels,
                c.kernel,
                c.in_len,
                c.out_len,
                c.out_channels
            )
        }
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

pub(crate) fn buffer_desc(b: &Buffer) -> String {
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
    let mut top = serde_json::json!({
        "input_len": spec.input_len,
        "input_channels": spec.input_channels,
        "classes": spec.classes,
        "head": spec.head,
    });
    if !spec.input.is_scale() {
        top["input"] = serde_json::to_value(spec.input).expect("JSON of plain values");
    }
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
pub(crate) fn header_lines(
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
    let mut layers =
        vec!["layers (activations channels-last, offsets in floats of the arena):".to_string()];
    for l in &plan.layers {
        layers.push(format!(
            "  {}  [{} -> {}]",
            layer_desc(l),
            buffer_desc(&l.input),
            buffer_desc(&l.output)
        ));
    }
    let mut footprint = Vec::new();
    match &note.footprint {
        Some(c) => {
            let on = note.target.as_deref().map(|t| format!(" on {t}"));
            footprint.push(format!("footprint{}:", on.unwrap_or_default()));
            footprint.push(format!(
                "  params {} (Keras count; {} deployed with BN folded), MACs {} ({} executed)",
                c.params, c.deployed_params, c.macs, c.executed_macs
            ));
            footprint.push(format!(
                "  arena {} bytes, RAM estimate {} bytes (arena + stack)",
                c.arena_bytes, c.ram_bytes
            ));
            footprint.push(format!(
                "  flash estimate {} bytes (weights {} + code {})",
                c.flash_bytes, c.weights_bytes, c.code_bytes
            ));
            let fits = if c.fits { "yes" } else { "NO" };
            footprint.push(format!("  fits the budget: {fits}"));
        }
        None => footprint.push(format!("arena {} bytes", plan.arena_bytes)),
    }
    let numerics = vec![
        "numerics: float32; the u8 entry point multiplies each first-layer sum by 1/255".into(),
        "(no float copy of the input); results match nas's host reference bit for bit".into(),
        match lang {
            "c" => "when compiled without FMA contraction (-ffp-contract=off).".into(),
            _ => "(Rust never contracts a multiply and an add into an FMA).".into(),
        },
    ];
    let header = Header {
        title: format!(
            "{name}: 1D-CNN inference kernel generated by nas {} (`nas export --lang {lang}`).",
            note.tool_version
        ),
        input: format!(
            "input: {} bytes (raw, or floats scaled to [0, 1]); output: {} logits",
            plan.input_len * plan.input_channels,
            plan.classes
        ),
        layers,
        footprint,
        numerics,
    };
    header.lines(spec, note, full)
}

/// The parts of a generated file's header comment that the float and the int8 kernels fill
/// in; [`Header::lines`] puts them in the one order both use.
pub(crate) struct Header {
    pub(crate) title: String,
    pub(crate) input: String,
    /// The layer table (only in the full header).
    pub(crate) layers: Vec<String>,
    pub(crate) footprint: Vec<String>,
    /// How the kernel computes (only in the full header).
    pub(crate) numerics: Vec<String>,
}

impl Header {
    /// Title, provenance, network, input; the layers when `full`; the footprint; when `full`
    /// the numerics and the spec as JSON. Every line made safe for a comment.
    pub(crate) fn lines(self, spec: &NetSpec, note: &Provenance, full: bool) -> Vec<String> {
        let mut h = vec![
            self.title,
            "Do not edit: regenerate it from the spec and weights instead.".into(),
            String::new(),
            format!("source: {}", note.source),
            format!("network: {}", spec.summary()),
            self.input,
        ];
        if full {
            h.push(String::new());
            h.extend(self.layers);
        }
        h.push(String::new());
        h.extend(self.footprint);
        if full {
            h.push(String::new());
            h.extend(self.numerics);
            h.push(String::new());
            h.push("spec (JSON):".into());
            h.extend(spec_json_lines(spec).into_iter().map(|l| format!("  {l}")));
        }
        h.into_iter().map(|l| comment_safe(&l)).collect()
    }
}

pub(crate) fn context(
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
    let ids = Idents { name, lang };
    let mut arrays = Vec::new();
    let mut convs = Vec::new();
    let mut steps = Vec::new();
    for (l, k) in plan.layers.iter().zip(&lowered.layers) {
        if !k.weights.is_empty() {
            arrays.extend(layer_arrays(l, k, &ids));
        }
        let mut s = StepCtx {
            comment: comment_safe(&format!(
                "{}  [{} -> {}]",
                layer_desc(l),
                buffer_desc(&l.input),
                buffer_desc(&l.output)
            )),
            w: ids.array(&l.name, "w"),
            b: ids.array(&l.name, "b"),
            ..StepCtx::default()
        };
        step_buffers(&mut s, l, &ids)?;
        if let Some(c) = step_op(&mut s, l, &ids)? {
            convs.push(c);
        }
        steps.push(s);
    }
    let rows = steps.iter().any(|s| s.op == "embed");
    let lut = steps.iter().any(|s| s.op == "lut_conv");
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
        u8_scale: float_literal(crate::data::INPUT_SCALE, lang),
        byte_row: crate::net::cost::first_conv_row(plan),
        sweep_k: crate::net::latency::swept_conv(plan).map_or(0, |c| c.kernel),
        arrays,
        convs,
        steps,
        int8: false,
        embedded: spec.input.embedding_dim().is_some(),
        rows,
        lut,
    })
}

/// How the generated code names a kernel's constants and arena slices in its language.
struct Idents<'a> {
    name: &'a str,
    lang: Lang,
}

impl Idents<'_> {
    /// A layer's weight (`w`) or bias (`b`) table.
    fn array(&self, layer: &str, what: &str) -> String {
        let name = self.name;
        match self.lang {
            Lang::C => format!("{name}_{layer}_{what}"),
            Lang::Rust => format!(
                "{}_{}",
                layer.to_ascii_uppercase(),
                what.to_ascii_uppercase()
            ),
        }
    }

    /// A conv layer's configuration constant.
    fn cfg(&self, layer: &str) -> String {
        let name = self.name;
        match self.lang {
            Lang::C => format!("{name}_{layer}_cfg"),
            Lang::Rust => layer.to_ascii_uppercase(),
        }
    }

    /// The arena at a byte offset, as a C pointer expression.
    fn arena(&self, offset: usize) -> String {
        format!("{}_arena + {}", self.name, offset / ELEM_BYTES)
    }
}

/// A layer's weight and bias tables (the embedding has no bias: its table alone).
fn layer_arrays(l: &plan::Layer, k: &LayerConsts, ids: &Idents) -> Vec<ArrayCtx> {
    let what = match l.op {
        Op::Embed { .. } => "table, a row per byte value",
        Op::LutConv(_) => "lookup table [filter][tap][byte]",
        _ => "weights",
    };
    let mut v = vec![ArrayCtx {
        ident: ids.array(&l.name, "w"),
        comment: comment_safe(&format!("{}: {what}", layer_desc(l))),
        len: k.weights.len(),
        lines: table_lines(&k.weights, ids.lang),
    }];
    if !k.bias.is_empty() {
        v.push(ArrayCtx {
            ident: ids.array(&l.name, "b"),
            comment: comment_safe(&format!("{}: bias", l.name)),
            len: k.bias.len(),
            lines: table_lines(&k.bias, ids.lang),
        });
    }
    v
}

/// Where a step reads and writes: the caller's input, an arena slice or the logits.
fn step_buffers(s: &mut StepCtx, l: &plan::Layer, ids: &Idents) -> Result<()> {
    match l.input {
        Buffer::Input { .. } => {
            s.from_input = true;
            s.src_u8 = "in_u8".into();
            s.src_f32 = "in_f32".into();
            s.scale = "scale".into();
        }
        Buffer::Arena { offset, elements } => {
            s.src_u8 = "NULL".into();
            s.src_f32 = ids.arena(offset);
            s.scale = float_literal(1.0, ids.lang);
            s.src_start = offset / ELEM_BYTES;
            s.src_end = s.src_start + elements;
        }
        Buffer::Logits { .. } => bail!("internal: layer {} reads the logits", l.name),
    }
    match l.output {
        Buffer::Arena { offset, elements } => {
            s.dst = ids.arena(offset);
            s.dst_start = offset / ELEM_BYTES;
            s.dst_end = s.dst_start + elements;
        }
        Buffer::Logits { .. } => s.dst = "logits".into(),
        Buffer::Input { .. } => bail!("internal: layer {} writes the input", l.name),
    }
    Ok(())
}

/// What a step computes; for a conv, also its configuration constant.
fn step_op(s: &mut StepCtx, l: &plan::Layer, ids: &Idents) -> Result<Option<ConvCtx>> {
    match &l.op {
        Op::Embed {
            len,
            dim,
            pad_left,
            pad_right,
        } => {
            ensure!(
                s.from_input && matches!(l.output, Buffer::Arena { .. }),
                "internal: the embedding must read the input and write the arena"
            );
            s.op = "embed";
            s.len = *len;
            s.ch = *dim;
            s.pad_left = *pad_left;
            s.pad_right = *pad_right;
        }
        Op::Conv(c) => {
            let conv = conv_ctx(l, c, ids)?;
            s.op = "conv";
            s.cfg = ids.cfg(&l.name);
            return Ok(Some(conv));
        }
        Op::LutConv(c) => {
            ensure!(
                s.from_input,
                "internal: the lookup-table conv must read the input bytes"
            );
            let conv = conv_ctx(l, c, ids)?;
            s.op = "lut_conv";
            s.cfg = ids.cfg(&l.name);
            return Ok(Some(conv));
        }
        Op::GlobalAvgPool { len, channels } => {
            ensure!(!s.from_input, "internal: global pooling reads the input");
            s.op = "gap";
            s.len = *len;
            s.ch = *channels;
            s.inv_len = float_literal(1.0f32 / *len as f32, ids.lang);
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
    Ok(None)
}

/// A conv layer's configuration: shapes, padding and the fused pooling.
fn conv_ctx(l: &plan::Layer, c: &ConvOp, ids: &Idents) -> Result<ConvCtx> {
    let (pool, pool_max, pool_scale) = pool_params(c);
    ensure!(
        matches!(l.output, Buffer::Arena { .. }),
        "internal: conv {} must write to the arena",
        l.name
    );
    Ok(ConvCtx {
        ident: ids.cfg(&l.name),
        comment: comment_safe(&layer_desc(l)),
        in_len: c.in_len,
        in_ch: c.in_channels,
        out_ch: c.out_channels,
        kernel: c.kernel,
        stride: c.stride,
        pad_left: c.pad_left,
        out_len: c.out_len,
        pool,
        pool_max: match ids.lang {
            Lang::C => u8::from(pool_max).to_string(),
            Lang::Rust => pool_max.to_string(),
        },
        pool_scale: float_literal(pool_scale, ids.lang),
    })
}
