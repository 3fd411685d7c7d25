//! The input embedding end to end (issue 18): a spec whose input is a learned 256-row table
//! trains on real ISCX samples, its float and int8 kernels in C and in Rust compute exactly the
//! host references under QEMU, and the arena and constants the cost model states are the
//! ELF's. Needs the Arm toolchain, QEMU and the profiles' Rust targets (see `tests/verify.rs`),
//! and the real datasets in `../shared/data`.

use nas::data::{load_dir, LoadOptions};
use nas::firmware::{self, KernelReport, Lang, Options, RustKernel, Samples};
use nas::net::{Block, Dtype, EmbeddingForm, InputStage, NetSpec, Padding, PoolKind};
use nas::quant::{ptq, CalibrationMethod};
use nas::train::{initial_weights, train, TrainConfig};
use nas::weights::Weights;
use std::sync::{Arc, OnceLock};

mod common;

fn iscx() -> &'static nas::data::Splits {
    static S: OnceLock<nas::data::Splits> = OnceLock::new();
    S.get_or_init(|| {
        let dir = nas::data::shared_data_dir().join("iscx-vpn2016-12class-sessionl7");
        load_dir(&dir, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("the real datasets are needed at {}: {e}", dir.display()))
    })
}

/// The seed's smart start reading its bytes through an 8-wide embedding.
fn embedded_smart_start() -> NetSpec {
    NetSpec::smart_start(784, 12).with_input(InputStage::embedding(8))
}

/// An embedding whose first conv has `same` padding on both sides (k5 s1: 2 + 2 rows), a
/// width that is not a multiple of 4, max pooling and a partial filter group: the padding rows
/// are the embedded zero (in int8 the table's zero point, which is not −128).
fn padded() -> NetSpec {
    NetSpec::from_blocks(
        784,
        12,
        vec![
            Block::new(6, 5, 1, Padding::Same),
            Block::new(18, 4, 4, Padding::Same).with_pool(PoolKind::Max, 2),
            Block::new(20, 3, 2, Padding::Same).with_pool(PoolKind::Avg, 3),
        ],
    )
    .with_input(InputStage::embedding(3))
}

/// `n` real ISCX test samples from across the file, with their labels.
fn samples(n: usize) -> Samples {
    let t = &iscx().test;
    let idx: Vec<usize> = (0..n).map(|i| i * (t.n() / n) + 3).collect();
    Samples {
        source: format!("{n} ISCX t10k samples"),
        inputs: idx.iter().map(|&i| t.sample(i).to_vec()).collect(),
        labels: Some(idx.iter().map(|&i| t.labels[i]).collect()),
    }
}

/// Build, measure and run one kernel; check it is bit-exact with the host reference on real
/// samples and that the arena and the constants are the cost model's.
fn verify(spec: &NetSpec, target: &str, lang: Lang, dtype: Dtype, seed: u64) -> KernelReport {
    common::require_arm_tools();
    let target = nas::target::resolve(target).unwrap();
    let w = Weights::random(spec, seed);
    let mut opts = Options::new(samples(6));
    opts.lang = lang;
    if dtype == Dtype::Int8 {
        let calib = iscx().train.stratified_head(8);
        let q = ptq(spec, &w, &calib, 96, CalibrationMethod::MinMax).unwrap();
        opts.quant = Some(Arc::new(q));
    }
    if lang == Lang::Rust {
        let kernel = RustKernel {
            name: "k0",
            spec,
            weights: &w,
            quant: opts.quant.as_deref(),
        };
        opts.rust_lib = Some(Arc::new(
            firmware::build_rust_lib(&target, &[kernel], None).unwrap(),
        ));
    }
    let r = firmware::verify(spec, &w, &target, &target.limits(), &opts).unwrap();
    let what = format!(
        "{} {dtype:?} {} on {}",
        lang.label(),
        spec.summary(),
        target.name
    );
    let em = r
        .emulation
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: not emulated: {:?}", r.emulation_skipped));
    eprintln!(
        "{what}: flash {} (estimate {}, {:+.2} %), arena {}, constants {} (estimate {}), \
         {} instructions per inference (estimate {:?})",
        r.measured.flash_bytes,
        r.estimate.flash_bytes,
        r.measured.flash_error_pct,
        r.breakdown.arena_bytes,
        r.breakdown.weights_bytes,
        r.estimate.weights_bytes,
        em.instructions_per_inference,
        r.estimate.instructions,
    );
    assert_eq!(em.samples, 6);
    assert_eq!(em.bit_exact, 6, "{what}: {:?}", em.mismatches);
    assert!(em.predict_agrees, "{what}: predict disagrees");
    assert_eq!(
        r.breakdown.arena_bytes, r.estimate.arena_bytes,
        "{what}: the arena symbol is the cost model's arena"
    );
    assert_eq!(
        r.breakdown.weights_bytes, r.estimate.weights_bytes,
        "{what}: constants"
    );
    assert!(r.ok, "{what}: {:?}", r.violations);
    r
}

#[test]
fn specs_without_an_input_stage_read_and_write_back_unchanged() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/specs");
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let spec = NetSpec::from_json(&text).unwrap();
        let plan = nas::net::plan::lower(&spec).unwrap();
        if text.contains("\"input\"") {
            assert_ne!(spec.input, InputStage::Scale, "{}", p.display());
            assert_eq!(plan.layers[0].name, "embed");
            continue;
        }
        assert_eq!(spec.input, InputStage::Scale, "{}", p.display());
        assert!(!spec.to_json().contains("\"input\""), "{}", p.display());
        assert!(plan.layers[0].name.starts_with("conv"));
    }
    let e = embedded_smart_start();
    let json = e.to_json();
    assert!(json.contains("\"kind\": \"embedding\""), "{json}");
    assert_eq!(NetSpec::from_json(&json).unwrap(), e);
    for (bad, why) in [
        (json.replace("\"dim\": 8", "\"dim\": 0"), "dim 0"),
        (json.replace("\"dim\": 8", "\"dim\": 100000"), "dim 100000"),
        (
            json.replace("\"dim\": 8", "\"dim\": 8, \"rows\": 3"),
            "rows",
        ),
        (json.replace("embedding", "onehot"), "onehot"),
        (
            json.replace("\"dim\": 8", "\"dim\": 8, \"form\": \"table\""),
            "variant table",
        ),
        (
            json.replace("\"input_channels\": 1", "\"input_channels\": 2"),
            "input_channels",
        ),
    ] {
        let err = NetSpec::from_json(&bad).unwrap_err().to_string();
        assert!(err.contains(why.split(' ').next().unwrap()), "{why}: {err}");
    }
}

#[test]
fn the_embedding_costs_its_table_and_its_activation() {
    let t = nas::target::resolve("stm32f401re").unwrap();
    let (plain, emb) = (NetSpec::smart_start(784, 12), embedded_smart_start());
    let cost = |s: &NetSpec, d| {
        nas::net::cost::cost_as(&nas::net::plan::lower(s).unwrap(), &t, &t.limits(), d)
    };
    let (a, b) = (cost(&plain, Dtype::F32), cost(&emb, Dtype::F32));
    // The table (256 × 8) and conv0's 8 input channels instead of 1.
    assert_eq!(b.params - a.params, 256 * 8 + 27 * 3 * 7);
    assert_eq!(b.layers[0].name, "embed");
    assert_eq!(b.layers[0].out_shape, (784, 8));
    assert_eq!(b.layers[0].flash_bytes, 256 * 8 * 4);
    // Live together: the embedded input [784][8] and conv0's output [196][27].
    assert_eq!(b.arena_bytes, (784 * 8 + 196 * 27) * 4);
    let q = cost(&emb, Dtype::Int8);
    assert_eq!(q.layers[0].flash_bytes, 256 * 8);
    assert_eq!(q.arena_bytes, 784 * 8 + 196 * 27);
    assert!(b.instructions.unwrap() > a.instructions.unwrap());
}

/// A few steps on a small real subset: the loss falls, the table is trained (it moved), and
/// the burn model, the float host reference and the int8 host reference agree on the argmax
/// of most samples.
#[test]
fn an_embedding_spec_trains_on_real_samples() {
    let s = iscx();
    let train_set = s.train.stratified_head(40);
    let val = s.test.stratified_head(10);
    let spec = embedded_smart_start();
    let cfg = TrainConfig {
        epochs: 4,
        batch_size: 64,
        max_steps_per_epoch: Some(8),
        ..TrainConfig::proxy()
    };
    let init = initial_weights(&spec, 1);
    let out = train(&spec, &init, &train_set, &val, &cfg, 7, &mut |_, _| {}).unwrap();
    out.weights.check(&spec).unwrap();
    let h = &out.history;
    assert!(h.last().unwrap().train_loss < h[0].train_loss, "{h:?}");
    let (t0, t1) = (
        &init.tensors["embedding.weight"].data,
        &out.weights.tensors["embedding.weight"].data,
    );
    assert!(
        t0.iter().zip(t1).any(|(a, b)| a != b),
        "the table did not train"
    );
    assert!(out.val.accuracy > 1.0 / 12.0, "{}", out.val.brief());

    let low = nas::lower::lower_weights(&spec, &out.weights).unwrap();
    let burn = nas::train::model::infer_logits(&spec, &out.weights, &val.samples, val.n()).unwrap();
    for i in 0..val.n() {
        let r = nas::lower::reference_logits(&low, val.sample(i));
        for (a, b) in r.iter().zip(&burn[i * 12..(i + 1) * 12]) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "sample {i}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn float_kernels_are_bit_exact_in_qemu() {
    let r = verify(
        &embedded_smart_start(),
        "stm32f401re",
        Lang::C,
        Dtype::F32,
        1,
    );
    assert!(r.measured.flash_error_pct.abs() <= 2.0, "{}", r.table());
    verify(&padded(), "stm32f401re", Lang::C, Dtype::F32, 2);
    verify(&padded(), "stm32f401re", Lang::Rust, Dtype::F32, 3);
    verify(&padded(), "stm32g071rb", Lang::C, Dtype::F32, 4);
}

#[test]
fn int8_kernels_are_bit_exact_in_qemu() {
    let r = verify(
        &embedded_smart_start(),
        "stm32f401re",
        Lang::C,
        Dtype::Int8,
        1,
    );
    assert!(r.measured.flash_error_pct.abs() <= 2.0, "{}", r.table());
    verify(&padded(), "stm32f401re", Lang::C, Dtype::Int8, 2);
    verify(&padded(), "stm32f401re", Lang::Rust, Dtype::Int8, 3);
    verify(&padded(), "stm32g071rb", Lang::C, Dtype::Int8, 4);
}

/// `spec` with its embedding folded into the first conv (the lookup-table form).
fn lut(spec: NetSpec) -> NetSpec {
    let input = spec.input.with_form(EmbeddingForm::Lut);
    spec.with_input(input)
}

#[test]
fn the_lookup_table_form_computes_the_rows_form() {
    let calib = iscx().train.stratified_head(8);
    let test = samples(32);
    for (spec, seed) in [(embedded_smart_start(), 5), (padded(), 6)] {
        let folded = lut(spec.clone());
        assert!(folded.summary().contains(" lut"), "{}", folded.summary());
        let back = NetSpec::from_json(&folded.to_json()).unwrap();
        assert_eq!(back, folded);
        let w = Weights::random(&spec, seed);
        // Float: the same network, summed in another order.
        let (rows, table) = (
            nas::lower::lower_weights(&spec, &w).unwrap(),
            nas::lower::lower_weights(&folded, &w).unwrap(),
        );
        assert_eq!(table.plan.layers[0].name, "conv0");
        assert!(matches!(
            table.plan.layers[0].op,
            nas::net::plan::Op::LutConv(_)
        ));
        for x in &test.inputs {
            let (a, b) = (
                nas::lower::reference_logits(&rows, x),
                nas::lower::reference_logits(&table, x),
            );
            for (u, v) in a.iter().zip(&b) {
                assert!((u - v).abs() <= 1e-5 * (1.0 + u.abs()), "{u} vs {v}");
            }
        }
        // int8: the same integers, bit for bit.
        let qr = ptq(&spec, &w, &calib, 96, CalibrationMethod::MinMax).unwrap();
        let qt = ptq(&folded, &w, &calib, 96, CalibrationMethod::MinMax).unwrap();
        for x in &test.inputs {
            assert_eq!(
                nas::quant::reference_int8(&qr, x),
                nas::quant::reference_int8(&qt, x),
                "{}",
                folded.summary()
            );
        }
        // And its QDQ ONNX graph is the rows form's, byte for byte (the graph gathers the
        // int8 table and runs the conv).
        assert_eq!(
            nas::onnx::export_int8(&spec, &qt, "").unwrap(),
            nas::onnx::export_int8(&spec, &qr, "").unwrap()
        );
    }
}

#[test]
fn the_lookup_table_costs_its_entries_and_no_embedded_activation() {
    let t = nas::target::resolve("stm32f401re").unwrap();
    let cost = |s: &NetSpec, d| {
        nas::net::cost::cost_as(&nas::net::plan::lower(s).unwrap(), &t, &t.limits(), d)
    };
    let (rows, folded) = (embedded_smart_start(), lut(embedded_smart_start()));
    let (a, b) = (cost(&rows, Dtype::F32), cost(&folded, Dtype::F32));
    // The same network: Keras parameters and MACs do not depend on the form.
    assert_eq!(a.params, b.params);
    assert_eq!(a.macs, b.macs);
    assert_eq!(b.layers[0].name, "conv0");
    assert!(b.layers[0].desc.contains("folded"), "{}", b.layers[0].desc);
    // conv0 (k3): 27 filters × 3 taps × 256 bytes, and its 27 biases.
    assert_eq!(b.layers[0].flash_bytes, (27 * 3 * 256 + 27) * 4);
    assert_eq!(b.layers[0].executed_macs, 0);
    // No [784][8] activation: conv0's output and conv1's are what is alive together.
    assert_eq!(b.arena_bytes, (196 * 27 + 16 * 114) * 4);
    assert!(b.instructions.unwrap() < a.instructions.unwrap());
    let q = cost(&folded, Dtype::Int8);
    assert_eq!(q.layers[0].flash_bytes, 27 * 3 * 256 * 4 + 27 * 16);
    assert_eq!(q.arena_bytes, 196 * 27 + 16 * 114);
}

#[test]
fn lookup_table_kernels_are_bit_exact_in_qemu() {
    for dtype in [Dtype::F32, Dtype::Int8] {
        let r = verify(
            &lut(embedded_smart_start()),
            "stm32f401re",
            Lang::C,
            dtype,
            1,
        );
        assert!(r.measured.flash_error_pct.abs() <= 2.0, "{}", r.table());
        verify(&lut(padded()), "stm32f401re", Lang::C, dtype, 2);
        verify(&lut(padded()), "stm32f401re", Lang::Rust, dtype, 3);
        verify(&lut(padded()), "stm32g071rb", Lang::C, dtype, 4);
    }
}

/// The search deploys each candidate in the form that serves it: the faster one when both meet
/// the budgets, the one that fits when only one does, and `nas cost` says what the other would
/// change.
#[test]
fn the_form_follows_the_budgets() {
    use nas::net::cost::{compare_forms, with_best_form};
    let t = nas::target::resolve("stm32f401re").unwrap();
    let spec = embedded_smart_start();
    for dtype in [Dtype::F32, Dtype::Int8] {
        let limits = t.limits();
        let cmp = compare_forms(&spec, &t, &limits, dtype).unwrap().unwrap();
        assert!(cmp.rows.fits && cmp.lut.fits);
        assert!(cmp.lut.instructions < cmp.rows.instructions);
        assert!(cmp.lut.ram_bytes < cmp.rows.ram_bytes);
        assert!(cmp.lut.flash_bytes > cmp.rows.flash_bytes);
        let line = cmp.describe();
        assert!(
            line.contains("lookup table") && line.contains("meets every budget"),
            "{line}"
        );
        // Both fit: the faster.
        let (s, c) = with_best_form(&spec, &t, &limits, dtype).unwrap();
        assert_eq!(s.input.embedding_form(), Some(EmbeddingForm::Lut));
        assert_eq!(c, cmp.lut);
        // Flash for the rows form only: rows.
        let mut tight = limits;
        tight.max_flash_bytes = cmp.rows.flash_bytes + 1000;
        let (s, c) = with_best_form(&spec, &t, &tight, dtype).unwrap();
        assert_eq!(s.input.embedding_form(), Some(EmbeddingForm::Rows));
        assert!(c.fits);
        let line = compare_forms(&spec, &t, &tight, dtype)
            .unwrap()
            .unwrap()
            .describe();
        assert!(line.contains("breaks flash_bytes"), "{line}");
        // RAM for the lookup table only: the lookup table.
        let mut tight = limits;
        tight.max_ram_bytes = cmp.lut.ram_bytes;
        let (s, c) = with_best_form(&spec, &t, &tight, dtype).unwrap();
        assert_eq!(s.input.embedding_form(), Some(EmbeddingForm::Lut));
        assert!(c.fits);
    }
    // byte/255 has no form.
    let plain = NetSpec::smart_start(784, 12);
    let (s, _) = with_best_form(&plain, &t, &t.limits(), Dtype::F32).unwrap();
    assert_eq!(s, plain);
    assert!(compare_forms(&plain, &t, &t.limits(), Dtype::F32)
        .unwrap()
        .is_none());
}
