//! `nas bench`: training and inference throughput of the two reference networks, and the
//! wall time of one proxy evaluation, optionally measured alternately with the Keras/TensorFlow
//! yardstick (`../shared/bench/keras_baseline.py`).
//!
//! The reference networks are those of `keras_baseline.py`, built as [`NetSpec`]s as they are
//! (no [`NetSpec::correct`], which would rewrite their dropout rates):
//! - A (≈6 M MACs): conv 128/k7/s4 → 140/k4/s4 +BN → 112/k3/s2 +BN → 76/k5/s1 +BN, dropouts
//!   0.1/0.23/0.37/0.5, 'same' padding;
//! - B (the smart start): conv 27/k3/s4 → 114/k4/s4 +BN +avg-pool 3, dropouts 0.1/0.2.
//!
//! Both are trained with batch 256 and Adam 1e-3 from Keras-style initial weights. Training
//! throughput is one epoch over the train split after `--warmup` steps (run on a throw-away copy
//! of the model, as Keras runs its warm-up steps before the timed fit), counting only the
//! training steps (forward, backward, update), not the evaluation after the epoch. Inference
//! throughput is one pass over the train split in inference mode after one warm-up pass over
//! the test split, as `keras_baseline.py --infer` measures it. Test accuracy and weighted F1
//! are those of the model after the timed epochs.
//!
//! With `--keras PYTHON` every measurement of ours is followed by the same measurement in Keras
//! (A ours, A Keras, B ours, B Keras, … × `--repeats`), and medians and ratios (ours / Keras)
//! are reported: the machine is shared and noisy, so only alternated ratios are meaningful.

use crate::data::{self, Dataset, LoadOptions};
use crate::net::{Block, Head, NetSpec, Padding, Pool, PoolKind};
use crate::train::model;
use crate::train::{self, TrainConfig};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// What `nas bench` measures and how.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// IDX dataset folder with train-* and t10k-* files.
    pub data: PathBuf,
    /// Reference network(s) to measure: A, B or both.
    pub arch: String,
    /// Timed training epochs per measurement.
    pub epochs: usize,
    /// Warm-up training steps before the timed epoch(s).
    pub warmup: usize,
    /// Measurements per network (alternated with Keras when `--keras` is given); medians are
    /// reported.
    pub repeats: usize,
    /// Python interpreter with TensorFlow (e.g. /tmp/kb/bin/python): also run the Keras
    /// baseline, alternately with ours, and report ratios.
    pub keras: Option<PathBuf>,
    /// The Keras baseline script.
    pub keras_script: PathBuf,
    /// Epochs of the proxy evaluation (0 skips it).
    pub proxy_epochs: usize,
    /// Cut each timed epoch to this many steps (quick checks only: Keras still runs whole
    /// epochs, so ratios are then only indicative).
    pub steps: Option<usize>,
    /// Skip the inference measurement.
    pub no_infer: bool,
    /// Seed of the initial weights, shuffling and dropout.
    pub seed: u64,
    /// Data-parallel shards per training batch ([`TrainConfig::shards`]).
    pub shards: usize,
}

/// The batch size of both reference measurements (the seed's and `keras_baseline.py`'s).
pub const BATCH: usize = 256;

/// Reference network A of `keras_baseline.py` (≈6 M MACs on 784-byte inputs).
pub fn reference_a(input_len: usize, classes: usize) -> NetSpec {
    let blocks = [
        (128, 7, 4, false, 0.1),
        (140, 4, 4, true, 0.23),
        (112, 3, 2, true, 0.37),
        (76, 5, 1, true, 0.5),
    ]
    .into_iter()
    .map(|(filters, kernel, stride, batch_norm, dropout)| Block {
        filters,
        kernel,
        stride,
        padding: Padding::Same,
        batch_norm,
        pool: None,
        dropout,
    })
    .collect();
    NetSpec {
        input_len,
        input_channels: 1,
        input: Default::default(),
        classes,
        blocks,
        head: Head::GapDense,
    }
}

/// Reference network B: the seed's smart start with `keras_baseline.py`'s dropouts (0.1, 0.2).
pub fn reference_b(input_len: usize, classes: usize) -> NetSpec {
    let block = |filters, kernel, batch_norm, pool, dropout| Block {
        filters,
        kernel,
        stride: 4,
        padding: Padding::Same,
        batch_norm,
        pool,
        dropout,
    };
    NetSpec {
        input_len,
        input_channels: 1,
        input: Default::default(),
        classes,
        blocks: vec![
            block(27, 3, false, None, 0.1),
            block(
                114,
                4,
                true,
                Some(Pool {
                    kind: PoolKind::Avg,
                    size: 3,
                }),
                0.2,
            ),
        ],
        head: Head::GapDense,
    }
}

/// The proxy evaluation the benchmark times: the search's proxy training
/// ([`TrainConfig::proxy`]: batch 256, Adam 1e-3, plateau/early-stop rules) cut to `epochs`
/// epochs, of the smart start on the train split less a stratified 10 % validation split,
/// including building the model, the per-epoch validation and the final weights.
pub fn proxy_config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        ..TrainConfig::proxy()
    }
}

/// One measurement of ours.
#[derive(Debug, Clone, Serialize)]
pub struct OursRun {
    pub arch: String,
    pub train_sps: f64,
    pub infer_sps: Option<f64>,
    pub test_acc: f64,
    pub test_wf1: f64,
    pub warmup_s: f64,
    pub train_s: f64,
}

/// One `RESULT` line of `keras_baseline.py`.
#[derive(Debug, Clone, Serialize)]
pub struct KerasRun {
    pub arch: String,
    pub train_sps: f64,
    pub infer_sps: Option<f64>,
    pub test_acc: f64,
    pub test_wf1: f64,
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchSummary {
    pub arch: String,
    pub macs: u64,
    pub params: u64,
    pub runs: usize,
    pub ours_train_sps: f64,
    pub ours_infer_sps: Option<f64>,
    pub ours_test_acc: f64,
    pub ours_test_wf1: f64,
    pub keras_train_sps: Option<f64>,
    pub keras_infer_sps: Option<f64>,
    pub keras_test_acc: Option<f64>,
    pub keras_test_wf1: Option<f64>,
    /// Median of the per-pair ratios ours / Keras (each pair measured back to back).
    pub train_ratio: Option<f64>,
    pub infer_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyRun {
    pub spec: String,
    pub epochs: usize,
    pub train_samples: usize,
    pub val_samples: usize,
    pub wall_s: f64,
    pub val_acc: f64,
    pub val_wf1: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub data: String,
    pub batch: usize,
    pub epochs: usize,
    pub warmup: usize,
    pub repeats: usize,
    pub threads: usize,
    pub shards: usize,
    pub archs: Vec<ArchSummary>,
    pub ours: Vec<OursRun>,
    pub keras: Vec<KerasRun>,
    pub proxy: Option<ProxyRun>,
}

/// Measure; `say` hears a line per measurement as it is made (an error from it, a closed
/// stdout, stops the measurements).
pub fn run(a: &BenchConfig, say: &mut dyn FnMut(String) -> Result<()>) -> Result<BenchReport> {
    let archs: Vec<&str> = match a.arch.to_ascii_uppercase().as_str() {
        "A" => vec!["A"],
        "B" => vec!["B"],
        _ => vec!["A", "B"],
    };
    if a.epochs == 0 || a.repeats == 0 {
        bail!("--epochs and --repeats must be at least 1");
    }
    let splits = data::load_dir(&a.data, &LoadOptions::default())
        .with_context(|| format!("loading the benchmark data from {}", a.data.display()))?;
    let (tr, te) = (&splits.train, &splits.test);
    let keras_script = match &a.keras {
        Some(_) => {
            let s = a.keras_script.canonicalize().with_context(|| {
                format!("the Keras baseline script {}", a.keras_script.display())
            })?;
            Some(s)
        }
        None => None,
    };
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    say(format!(
        "nas bench: {} (train {} / test {} samples of {} bytes, {} classes), batch {BATCH}, \
         {} epoch(s) after {} warm-up steps, {} repeat(s), {threads} thread(s), {} shard(s) \
         per batch",
        a.data.display(),
        tr.n(),
        te.n(),
        tr.len,
        tr.classes,
        a.epochs,
        a.warmup,
        a.repeats,
        a.shards,
    ))?;

    let (ours, keras) = measure_alternately(a, &archs, tr, te, keras_script.as_deref(), say)?;
    let proxy = if a.proxy_epochs > 0 {
        let p = measure_proxy(tr, a.proxy_epochs, a.seed)?;
        say(format!(
            "proxy evaluation ({}, {} epochs on {} train / {} validation samples): {:.1} s wall, \
             val acc {:.4} wF1 {:.4}",
            p.spec, p.epochs, p.train_samples, p.val_samples, p.wall_s, p.val_acc, p.val_wf1
        ))?;
        Some(p)
    } else {
        None
    };

    let summaries: Vec<ArchSummary> = archs
        .iter()
        .map(|&arch| summarize(arch, tr.len, tr.classes, &ours, &keras))
        .collect();
    let report = BenchReport {
        data: a.data.display().to_string(),
        batch: BATCH,
        epochs: a.epochs,
        warmup: a.warmup,
        repeats: a.repeats,
        threads,
        shards: a.shards,
        archs: summaries,
        ours,
        keras,
        proxy,
    };
    Ok(report)
}

/// `--repeats` rounds over the networks: ours, then (with a Keras script) the same
/// measurement in Keras right after it, each announced through `say`.
fn measure_alternately(
    a: &BenchConfig,
    archs: &[&str],
    tr: &Dataset,
    te: &Dataset,
    keras_script: Option<&Path>,
    say: &mut dyn FnMut(String) -> Result<()>,
) -> Result<(Vec<OursRun>, Vec<KerasRun>)> {
    let mut ours = Vec::new();
    let mut keras = Vec::new();
    for rep in 0..a.repeats {
        for &arch in archs {
            let spec = reference(arch, tr.len, tr.classes);
            let r = measure_ours(arch, &spec, tr, te, a)?;
            say(format!(
                "[{}/{}] ours  {arch}: train {:>8.1} samples/s  infer {:>8} samples/s  \
                 test acc {:.4} wF1 {:.4}  (epoch {:.1} s)",
                rep + 1,
                a.repeats,
                r.train_sps,
                r.infer_sps.map_or("-".into(), |v| format!("{v:.1}")),
                r.test_acc,
                r.test_wf1,
                r.train_s,
            ))?;
            ours.push(r);
            if let (Some(py), Some(script)) = (&a.keras, keras_script) {
                let k = measure_keras(py, script, arch, a)?;
                say(format!(
                    "[{}/{}] keras {arch}: train {:>8.1} samples/s  infer {:>8} samples/s  \
                     test acc {:.4} wF1 {:.4}",
                    rep + 1,
                    a.repeats,
                    k.train_sps,
                    k.infer_sps.map_or("-".into(), |v| format!("{v:.1}")),
                    k.test_acc,
                    k.test_wf1,
                ))?;
                keras.push(k);
            }
        }
    }
    Ok((ours, keras))
}

fn reference(arch: &str, len: usize, classes: usize) -> NetSpec {
    match arch {
        "A" => reference_a(len, classes),
        _ => reference_b(len, classes),
    }
}

fn measure_ours(
    arch: &str,
    spec: &NetSpec,
    tr: &Dataset,
    te: &Dataset,
    a: &BenchConfig,
) -> Result<OursRun> {
    let init = train::initial_weights(spec, a.seed);
    let base = TrainConfig {
        batch_size: BATCH,
        learning_rate: 1e-3,
        // No plateau or early-stop decisions inside the timed run.
        early_stop_patience: usize::MAX,
        lr_patience: usize::MAX,
        shards: a.shards,
        ..TrainConfig::proxy()
    };
    // Warm-up steps on a throw-away copy of the model (thread pool, allocator, caches).
    let warmup_s = if a.warmup > 0 {
        let tiny_val = te.stratified_head(1);
        let cfg = TrainConfig {
            epochs: 1,
            max_steps_per_epoch: Some(a.warmup),
            ..base.clone()
        };
        let t = Instant::now();
        train::train(spec, &init, tr, &tiny_val, &cfg, a.seed, &mut |_, _| {})?;
        t.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let cfg = TrainConfig {
        epochs: a.epochs,
        max_steps_per_epoch: a.steps,
        ..base
    };
    // The test split serves as the "validation" set only to report the final model's test
    // metrics (one epoch: nothing is selected by it).
    let out = train::train(spec, &init, tr, te, &cfg, a.seed, &mut |_, _| {})?;
    let steps = tr.n().div_ceil(BATCH).min(a.steps.unwrap_or(usize::MAX));
    let samples = (steps * BATCH).min(tr.n());
    let train_s = samples as f64 * a.epochs as f64 / out.train_samples_per_sec;
    let weights = &out.weights;
    let infer_sps = if a.no_infer {
        None
    } else {
        let dev = model::default_device();
        let net = model::Net::from_weights(spec, weights, &dev)?;
        // Warm-up pass over the test split, then the timed pass over the train split.
        let _ = model::predict_logits(&net, &te.samples, te.n(), te.len, &dev);
        let t = Instant::now();
        let logits = model::predict_logits(&net, &tr.samples, tr.n(), tr.len, &dev);
        let dt = t.elapsed().as_secs_f64();
        std::hint::black_box(&logits);
        Some(tr.n() as f64 / dt)
    };
    // One epoch: the final model. More: the epoch with the lowest test loss (a benchmark
    // only, never a selection the search makes).
    let test = &out.val;
    Ok(OursRun {
        arch: arch.into(),
        train_sps: out.train_samples_per_sec,
        infer_sps,
        test_acc: test.accuracy,
        test_wf1: test.weighted_f1,
        warmup_s,
        train_s,
    })
}

fn measure_keras(python: &Path, script: &Path, arch: &str, a: &BenchConfig) -> Result<KerasRun> {
    let data = a
        .data
        .canonicalize()
        .with_context(|| format!("{}", a.data.display()))?;
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(arch)
        .arg("--data")
        .arg(&data)
        .arg("--epochs")
        .arg(a.epochs.to_string())
        .arg("--warmup")
        .arg(a.warmup.to_string())
        .arg("--seed")
        .arg(a.seed.to_string());
    if !a.no_infer {
        cmd.arg("--infer");
    }
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.starts_with("RESULT ")) else {
        bail!(
            "the Keras baseline printed no RESULT line (exit {}):\n{}\n{}",
            out.status,
            stdout,
            crate::util::tail_bytes(&String::from_utf8_lossy(&out.stderr), 2000)
        );
    };
    let fields: BTreeMap<String, String> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let num = |k: &str| -> Result<f64> {
        fields
            .get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("no numeric {k} in the Keras RESULT line: {line}"))
    };
    let infer = num("infer_sps").ok().filter(|v| v.is_finite());
    Ok(KerasRun {
        arch: arch.into(),
        train_sps: num("train_sps_median")?,
        infer_sps: infer,
        test_acc: num("test_acc")?,
        test_wf1: num("test_wf1")?,
        fields,
    })
}

fn measure_proxy(tr: &Dataset, epochs: usize, seed: u64) -> Result<ProxyRun> {
    let spec = NetSpec::smart_start(tr.len, tr.classes);
    let (keep, held) = data::stratified_split(&tr.labels, tr.classes, 0.1, seed)?;
    let (fit, val) = (tr.subset(&keep), tr.subset(&held));
    let cfg = proxy_config(epochs);
    let t = Instant::now();
    let init = train::initial_weights(&spec, seed);
    let out = train::train(&spec, &init, &fit, &val, &cfg, seed, &mut |_, _| {})?;
    let wall_s = t.elapsed().as_secs_f64();
    Ok(ProxyRun {
        spec: "smart start".into(),
        epochs: out.epochs_run,
        train_samples: fit.n(),
        val_samples: val.n(),
        wall_s,
        val_acc: out.val.accuracy,
        val_wf1: out.val.weighted_f1,
    })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn summarize(
    arch: &str,
    len: usize,
    classes: usize,
    ours: &[OursRun],
    keras: &[KerasRun],
) -> ArchSummary {
    let spec = reference(arch, len, classes);
    let (macs, params) = count(&spec);
    let o: Vec<&OursRun> = ours.iter().filter(|r| r.arch == arch).collect();
    let k: Vec<&KerasRun> = keras.iter().filter(|r| r.arch == arch).collect();
    let med = |f: &dyn Fn(&OursRun) -> Option<f64>| median(o.iter().filter_map(|r| f(r)).collect());
    let kmed =
        |f: &dyn Fn(&KerasRun) -> Option<f64>| median(k.iter().filter_map(|r| f(r)).collect());
    let ratios = |f: &dyn Fn(&OursRun) -> Option<f64>, g: &dyn Fn(&KerasRun) -> Option<f64>| {
        median(
            o.iter()
                .zip(&k)
                .filter_map(|(x, y)| Some(f(x)? / g(y)?))
                .collect(),
        )
    };
    ArchSummary {
        arch: arch.into(),
        macs,
        params,
        runs: o.len(),
        ours_train_sps: med(&|r| Some(r.train_sps)).unwrap_or(f64::NAN),
        ours_infer_sps: med(&|r| r.infer_sps),
        ours_test_acc: med(&|r| Some(r.test_acc)).unwrap_or(f64::NAN),
        ours_test_wf1: med(&|r| Some(r.test_wf1)).unwrap_or(f64::NAN),
        keras_train_sps: kmed(&|r| Some(r.train_sps)),
        keras_infer_sps: kmed(&|r| r.infer_sps),
        keras_test_acc: kmed(&|r| Some(r.test_acc)),
        keras_test_wf1: kmed(&|r| Some(r.test_wf1)),
        train_ratio: ratios(&|r| Some(r.train_sps), &|r| Some(r.train_sps)),
        infer_ratio: ratios(&|r| r.infer_sps, &|r| r.infer_sps),
    }
}

/// Multiply-accumulates and parameters of a spec (conv, BN and dense; for the table only).
/// MACs and Keras parameters of a reference network, from the plan the cost model uses.
fn count(spec: &NetSpec) -> (u64, u64) {
    crate::net::plan::lower(spec).map_or((0, 0), |p| (p.macs(), p.keras_params()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_networks_match_the_keras_baseline() {
        let a = reference_a(784, 12);
        a.validate().unwrap();
        let sh = a.shapes().unwrap();
        let lens: Vec<usize> = sh.iter().map(|s| s.out_len).collect();
        assert_eq!(lens, [196, 49, 25, 25]);
        let (macs, _) = count(&a);
        assert!((5_500_000..6_500_000).contains(&macs), "{macs}");
        let b = reference_b(784, 12);
        b.validate().unwrap();
        assert_eq!(b.shapes().unwrap()[1].out_len, 16);
        let dropouts: Vec<f32> = b.blocks.iter().map(|b| b.dropout).collect();
        assert_eq!(dropouts, [0.1, 0.2]);
        // B is the smart start except for the dropouts, which the correction rules rewrite.
        let mut s = NetSpec::smart_start(784, 12);
        for blk in &mut s.blocks {
            blk.dropout = 0.0;
        }
        let mut b0 = b.clone();
        for blk in &mut b0.blocks {
            blk.dropout = 0.0;
        }
        assert_eq!(s, b0);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
