//! The input embedding end to end (issue 18): a spec whose input is a learned 256-row table
//! trains on real ISCX samples, its float and int8 kernels in C and in Rust compute exactly the
//! host references under QEMU, and the arena and constants the cost model states are the
//! ELF's. Needs the Arm toolchain, QEMU and the profiles' Rust targets (see `tests/verify.rs`),
//! and the real datasets in `../shared/data`.

use nas::data::{load_dir, LoadOptions};
use nas::firmware::{self, KernelReport, Lang, Options, RustKernel, Samples};
use nas::net::{Block, Dtype, InputStage, NetSpec, Padding, PoolKind};
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
    NetSpec::smart_start(784, 12).with_input(InputStage::Embedding { dim: 8 })
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
    .with_input(InputStage::Embedding { dim: 3 })
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
