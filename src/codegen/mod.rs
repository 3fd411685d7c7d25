//! Code generation: [`Plan`] + weights → C and `no_std` Rust inference kernels through tera
//! templates.
//!
//! The kernels run a [`Lowered`] network ([`crate::lower::lower_weights`]: BatchNorm folded,
//! kernel layouts); the int8 kernels a [`crate::quant::QuantLowered`] one ([`int8`]).
//!
//! Arithmetic contract, shared by the C kernel, the Rust kernel and
//! [`crate::lower::reference_logits`] so that
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

use crate::lower::lower_weights;
use crate::net::cost::Cost;
use crate::net::plan::{self, Buffer, ConvOp, Op, ELEM_BYTES};
use crate::net::{NetSpec, PoolKind};
use crate::weights::Weights;
use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use std::path::{Component, Path};

mod context;
mod ident;
pub mod int8;

pub use context::*;
pub use ident::*;

const C_HEADER: &str = include_str!("../../templates/c/model.h.tera");
const C_SOURCE: &str = include_str!("../../templates/c/model.c.tera");
const C_WEIGHTS: &str = include_str!("../../templates/c/weights.h.tera");
const RS_CARGO: &str = include_str!("../../templates/rust/Cargo.toml.tera");
const RS_LIB: &str = include_str!("../../templates/rust/lib.rs.tera");
const RS_WEIGHTS: &str = include_str!("../../templates/rust/weights.rs.tera");

/// Longest identifier [`sanitize_identifier`] returns (C99 guarantees 31 significant characters
/// for external names; `NAME_infer_f32` must stay within them).
pub const MAX_IDENTIFIER_LEN: usize = 20;

/// Values per line in generated weight tables.
const VALUES_PER_LINE: usize = 8;

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

    /// The same, with the footprint computed for `target`.
    pub fn with_footprint(self, target: &crate::target::Target, footprint: Cost) -> Provenance {
        Provenance {
            target: Some(target.name.clone()),
            footprint: Some(footprint),
            ..self
        }
    }
}

/// Render built-in templates `(name, text, output path)` with one context: the float and the
/// int8 kernels share it.
pub(crate) fn render<C: Serialize>(
    templates: &[(&str, &str, String)],
    ctx: &C,
) -> Result<Vec<GeneratedFile>> {
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::{reference_logits, reference_logits_f32};
    use crate::net::{Block, Head, Padding, SearchSpace};
    use crate::weights::{BnParam, Param, BN_EPSILON};

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
            let out_len = crate::net::conv_out_len(len, b.kernel, b.stride, b.padding).unwrap();
            let (pl, _) = crate::net::conv_padding(len, b.kernel, b.stride, b.padding);
            let cw = w.get(Param::ConvWeight(i)).unwrap();
            let cb = w.get(Param::ConvBias(i)).unwrap();
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
                        let g = |p| w.get(Param::Bn(i, p)).unwrap()[f] as f64;
                        acc = (acc - g(BnParam::Mean))
                            / (g(BnParam::Var) + BN_EPSILON as f64).sqrt()
                            * g(BnParam::Gamma)
                            + g(BnParam::Beta);
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
        let dw = w.get(Param::DenseWeight).unwrap();
        let db = w.get(Param::DenseBias).unwrap();
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
            input: Default::default(),
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
