//! TFLite in, against TensorFlow itself: the fixtures of `scripts/make_tflite_fixtures.py` are
//! Keras Conv1D networks trained on real ISCX samples and converted by TensorFlow's
//! TFLiteConverter (full-integer post-training quantization, and one float model), each with
//! what the TFLite interpreter's reference kernels (`BUILTIN_REF`) computed on 32 real ISCX
//! test samples. The int8 host reference and the QEMU-run firmware must give those int8
//! outputs bit for bit.

mod common;

use nas::firmware::{self, Lang, Options, Samples};
use nas::lower::{lower_weights, reference_logits};
use nas::quant::reference_int8;
use nas::tflite::{import_bytes, import_file, ImportOptions};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tflite")
        .join(name)
}

/// A fixture's recorded samples and the interpreter's outputs.
struct Expected {
    samples: Vec<Vec<u8>>,
    labels: Vec<u8>,
    int8: Option<Vec<Vec<i8>>>,
    logits: Option<Vec<Vec<f32>>>,
    input_q: Option<(f32, i32)>,
    logits_q: Option<(f32, i32)>,
}

fn expected(name: &str) -> Expected {
    let text = std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = |key: &str| -> Option<Vec<Vec<f64>>> {
        v.get(key).map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|row| {
                    row.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect()
                })
                .collect()
        })
    };
    let pair = |key: &str| -> Option<(f32, i32)> {
        let p = v.get(key)?.as_array()?;
        Some((p[0].as_f64()? as f32, p[1].as_i64()? as i32))
    };
    Expected {
        samples: rows("samples")
            .unwrap()
            .into_iter()
            .map(|r| r.into_iter().map(|x| x as u8).collect())
            .collect(),
        labels: v["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect(),
        int8: rows("int8_logits").map(|r| {
            r.into_iter()
                .map(|row| row.into_iter().map(|x| x as i8).collect())
                .collect()
        }),
        logits: rows("logits").map(|r| {
            r.into_iter()
                .map(|row| row.into_iter().map(|x| x as f32).collect())
                .collect()
        }),
        input_q: pair("input_quantization"),
        logits_q: pair("logits_quantization"),
    }
}

const INT8: &[&str] = &["conv_bn_int8", "conv_plain_int8"];

fn import(name: &str) -> nas::tflite::Imported {
    import_file(
        &fixture(&format!("{name}.tflite")),
        &ImportOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e:#}"))
}

#[test]
fn int8_fixtures_import_to_tflite_outputs_bit_for_bit() {
    for name in INT8 {
        let im = import(name);
        let e = expected(name);
        let q = im.int8.as_ref().expect("an int8 model imports as int8");
        // The file's own parameters, not re-derived ones.
        let (s, zp) = e.input_q.unwrap();
        assert_eq!(
            (q.layers[0].input.scale, q.layers[0].input.zero_point),
            (s, zp)
        );
        let (s, zp) = e.logits_q.unwrap();
        let out = q.output_params();
        assert_eq!(
            (out.scale, out.zero_point),
            (s, zp),
            "{name}: logits parameters"
        );
        assert_eq!(im.spec.classes, 12);
        assert!(
            im.notes.iter().any(|n| n.contains("SOFTMAX")) == name.starts_with("conv_bn"),
            "{name}: notes {:?}",
            im.notes
        );
        let want = e.int8.unwrap();
        assert_eq!(want.len(), 32);
        for (i, (x, w)) in e.samples.iter().zip(&want).enumerate() {
            let got = reference_int8(q, x);
            assert_eq!(
                &got.q, w,
                "{name}: sample {i} differs from the TFLite interpreter"
            );
        }
        // The float view (dequantized weights) mostly agrees with the int8 network.
        let low = lower_weights(&im.spec, &im.weights).unwrap();
        let agree = e
            .samples
            .iter()
            .zip(&want)
            .filter(|(x, w)| {
                nas::metrics::argmax(&reference_logits(&low, x)) == nas::metrics::argmax(w)
            })
            .count();
        assert!(agree >= 28, "{name}: float view agrees on {agree}/32");
    }
}

#[test]
fn float_fixture_imports_within_1e5_of_tflite() {
    let im = import("conv_bn_f32");
    assert!(im.int8.is_none());
    let e = expected("conv_bn_f32");
    let low = lower_weights(&im.spec, &im.weights).unwrap();
    let mut worst = 0.0f32;
    for (x, want) in e.samples.iter().zip(e.logits.as_ref().unwrap()) {
        let got = reference_logits(&low, x);
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(want) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("float fixture: largest logit difference to TFLite {worst:e}");
    assert!(worst <= 1e-5, "largest logit difference {worst}");
    // Its architecture: what Keras was given, BatchNorm folded into the convs.
    assert_eq!(
        im.spec.summary(),
        import("conv_bn_int8").spec.summary(),
        "float and int8 conversions of one model are one architecture"
    );
}

/// The int8 fixtures' firmware under QEMU, on every shipped core with an emulator (M4 with
/// DSP, M7, M0+), C and Rust: bit for bit the host reference (and so TFLite), the arena the
/// cost model's, flash within 1 % of the estimate on the M4 and M7.
#[test]
fn int8_firmware_matches_tflite_in_qemu() {
    common::require_arm_tools();
    for name in INT8 {
        let im = import(name);
        let e = expected(name);
        let q = Arc::new(im.int8.clone().unwrap());
        for (target, lang) in [
            ("stm32f401re", Lang::C),
            ("stm32f746ng", Lang::C),
            ("stm32g071rb", Lang::C),
            ("stm32f401re", Lang::Rust),
        ] {
            let t = nas::target::resolve(target).unwrap();
            let mut opts = Options::new(Samples {
                source: format!("{name}.json (32 ISCX test samples)"),
                inputs: e.samples.clone(),
                labels: Some(e.labels.clone()),
            });
            opts.lang = lang;
            opts.quant = Some(q.clone());
            let r = firmware::verify(&im.spec, &im.weights, &t, &t.limits(), &opts)
                .unwrap_or_else(|err| panic!("{name} on {target} {lang:?}: {err:#}"));
            let em = r.emulation.as_ref().expect("emulated");
            eprintln!(
                "{name} {target} {lang:?}: {}/{} bit-exact, {} instructions, flash {} (estimate {}, {:+.2} %), arena {}",
                em.bit_exact,
                em.samples,
                em.instructions_per_inference,
                r.measured.flash_bytes,
                r.estimate.flash_bytes,
                r.measured.flash_error_pct,
                r.breakdown.arena_bytes
            );
            assert_eq!(em.samples, 32);
            assert_eq!(
                em.bit_exact, 32,
                "{name} {target} {lang:?}: {:?}",
                em.mismatches
            );
            assert_eq!(r.breakdown.arena_bytes, r.estimate.arena_bytes);
            // The code-size model of the M0+ build is the loosest (see tests/int8.rs); the
            // Rust kernel's code is not modelled.
            let flash_pct = match (lang, target) {
                (Lang::Rust, _) => f64::INFINITY,
                (_, "stm32g071rb") => 4.0,
                _ => 1.0,
            };
            assert!(
                r.measured.flash_error_pct.abs() <= flash_pct,
                "{name} {target}: flash {} vs estimate {} ({:+.2} %)",
                r.measured.flash_bytes,
                r.estimate.flash_bytes,
                r.measured.flash_error_pct
            );
        }
    }
}

#[test]
fn bad_files_are_errors_not_panics() {
    let good = std::fs::read(fixture("conv_plain_int8.tflite")).unwrap();
    let err = |bytes: &[u8]| -> String {
        match import_bytes(bytes, &ImportOptions::default()) {
            Ok(_) => panic!("imported a bad file"),
            Err(e) => format!("{e:#}"),
        }
    };
    // Not a TFLite file at all.
    assert!(err(b"").contains("not a TFLite model"));
    assert!(err(b"hello world, not a model").contains("TFL3"));
    // Truncated at many points: every one a clear error.
    for cut in [8, 16, 100, good.len() / 3, good.len() / 2, good.len() - 1] {
        let e = err(&good[..cut]);
        assert!(
            e.contains("corrupt or truncated") || e.contains("not a TFLite"),
            "cut at {cut}: {e}"
        );
    }
    // (Random byte edits: tests/parsers.rs and the tflite_import fuzz target.)
    // An operator the kernels do not have: named with its index and opcode.
    let e = format!(
        "{:#}",
        import_file(
            &fixture("unsupported_tanh_int8.tflite"),
            &ImportOptions::default()
        )
        .unwrap_err()
    );
    assert!(e.contains("operator 2 (TANH) is not supported"), "{e}");
    assert!(
        e.contains("CONV_2D"),
        "the error lists what is supported: {e}"
    );
    // An input that does not map bytes to b − 128: a raw-byte input scale on a model
    // calibrated on byte / 255.
    let e = format!(
        "{:#}",
        import_bytes(
            &good,
            &ImportOptions {
                input_scale: Some(1.0)
            }
        )
        .unwrap_err()
    );
    assert!(e.contains("takes byte 1 × 1 to 127"), "{e}");
}

/// The command line: `nas import` of a .tflite, then `eval` and `cost` with --tflite.
#[test]
fn cli_import_eval_cost() {
    let nas = env!("CARGO_BIN_EXE_nas");
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("conv_bn_int8.tflite");
    let out = common::ok(
        Command::new(nas)
            .args(["import", model.to_str().unwrap(), "--out"])
            .arg(dir.path().join("imp"))
            .output()
            .unwrap(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("int8, its own quantization kept"), "{text}");
    assert!(text.contains("next: nas verify --tflite"), "{text}");
    for f in [
        "spec.json",
        "weights.safetensors",
        "model.tflite",
        "import.json",
    ] {
        assert!(dir.path().join("imp").join(f).is_file(), "{f}");
    }
    // The fixture's 32 samples as a dataset: eval's int8 accuracy is the interpreter's.
    let e = expected("conv_bn_int8");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let imgs: Vec<&[u8]> = e.samples.iter().map(|s| s.as_slice()).collect();
    for split in ["train", "t10k"] {
        nas::data::pcap::write_idx_images(
            &data.join(format!("{split}-images-idx3-ubyte")),
            &imgs,
            784,
        )
        .unwrap();
        nas::data::pcap::write_idx_labels(
            &data.join(format!("{split}-labels-idx1-ubyte")),
            &e.labels,
        )
        .unwrap();
    }
    let out = common::ok(
        Command::new(nas)
            .args(["eval", "--json", "--tflite"])
            .arg(dir.path().join("imp/model.tflite"))
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap(),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dtype"], "int8");
    let correct = e
        .int8
        .as_ref()
        .unwrap()
        .iter()
        .zip(&e.labels)
        .filter(|(w, &l)| nas::metrics::argmax(w) == l as usize)
        .count();
    let acc = v["test"]["accuracy"].as_f64().unwrap();
    assert!(
        (acc - correct as f64 / 32.0).abs() < 1e-9,
        "eval accuracy {acc}, the interpreter's {correct}/32"
    );
    // Calibration options are refused for a model quantized already.
    let out = Command::new(nas)
        .args(["eval", "--tflite"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .args(["--calibration-percentile", "99.9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("carries its own quantization"));
    // cost: int8 by default for an int8 model.
    let out = common::ok(
        Command::new(nas)
            .args(["cost", "--tflite"])
            .arg(&model)
            .output()
            .unwrap(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("deployed as int8"), "{text}");
    // verify: the int8 network of the file, bit-exact in QEMU on the dataset's samples.
    common::require_arm_tools();
    let out = common::ok(
        Command::new(nas)
            .args(["verify", "--json", "--samples", "4", "--tflite"])
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap(),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dtype"], "int8", "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["emulation"]["bit_exact"], 4);
    // export: the int8 C kernel by default, the float view with --dtype f32.
    for (dtype, int8) in [(None, true), (Some("f32"), false)] {
        let kernel = dir.path().join(format!("k-{}", dtype.unwrap_or("default")));
        let mut cmd = Command::new(nas);
        cmd.args(["export", "--lang", "c", "--tflite"])
            .arg(&model)
            .arg("--out")
            .arg(&kernel);
        if let Some(d) = dtype {
            cmd.args(["--dtype", d]);
        }
        common::ok(cmd.output().unwrap());
        let c = std::fs::read_to_string(kernel.join("model.c")).unwrap();
        assert_eq!(c.contains("model_infer_int8"), int8, "{dtype:?}");
    }
    // --input-scale without a model file is refused.
    let out = Command::new(nas)
        .args(["cost", "--net", "x.json", "--input-scale", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
