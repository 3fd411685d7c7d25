//! Training: one candidate network trained with burn on a dataset split.
//!
//! Adam with Keras's defaults (lr 1e-3, ε 1e-7), softmax cross-entropy, shuffled mini-batches
//! under the candidate's seed, early stopping on the validation loss (restoring the best
//! epoch's weights) and reduce-LR-on-plateau. Proxy training (one split) and k-fold training are
//! built on [`train`] by the search.

pub mod model;
pub mod qat;
mod steps;

use crate::data::Dataset;
use crate::metrics::{self, Metrics};
use crate::net::NetSpec;
use crate::weights::Weights;
use anyhow::{bail, Result};
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use model::Net;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use steps::Steps;

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Stop after this many epochs without a better validation loss.
    pub early_stop_patience: usize,
    /// Multiply the learning rate by `lr_factor` after this many epochs without improvement.
    pub lr_patience: usize,
    pub lr_factor: f64,
    pub min_learning_rate: f64,
    /// Stop an epoch after this many steps (tests and quick proxies); `None` = whole epoch.
    #[serde(default)]
    pub max_steps_per_epoch: Option<usize>,
    /// Before each evaluation, recompute BatchNorm's running statistics from this many training
    /// samples under the current weights (0: keep the moving averages, as Keras does). With
    /// Keras's momentum the moving averages lag the weights by hundreds of steps, so a short
    /// proxy training was scored with statistics of much earlier weights: deep candidates (more
    /// BatchNorm layers) looked worse than they are, and small datasets stayed at chance.
    #[serde(default = "default_bn_recalibration")]
    pub bn_recalibration: usize,
    /// Data-parallel shards of each mini-batch ([`DEFAULT_SHARDS`]): the shards' forward and
    /// backward passes run on the cores at once and their gradients are summed, which is the
    /// gradient of the whole batch. BatchNorm normalises each shard by its own statistics
    /// ("ghost batches"); the running statistics still move by the whole batch's. The result
    /// depends on the shard count, never on the number of cores.
    #[serde(default = "default_shards")]
    pub shards: usize,
}

fn default_bn_recalibration() -> usize {
    1024
}

/// Shards per mini-batch by default: two, which measured 1.8× the training throughput of one
/// on two cores (reference network A, `nas bench`: 2,440 vs 1,330 samples/s), because burn's
/// CPU backend runs its element-wise operations on one core and parallelises only the large
/// matrix products; with one core the two shards run one after the other at about the speed
/// of one.
pub const DEFAULT_SHARDS: usize = 2;

fn default_shards() -> usize {
    DEFAULT_SHARDS
}

impl TrainConfig {
    /// The seed's proxy training during search: plateau factor 0.6 / patience 12, early stop 20.
    pub fn proxy() -> TrainConfig {
        TrainConfig {
            epochs: 100,
            batch_size: 256,
            learning_rate: 1e-3,
            early_stop_patience: 20,
            lr_patience: 12,
            lr_factor: 0.6,
            min_learning_rate: 1e-6,
            max_steps_per_epoch: None,
            bn_recalibration: default_bn_recalibration(),
            shards: DEFAULT_SHARDS,
        }
    }

    /// Reject settings the training loop cannot run with (the same checks for arguments and
    /// for a configuration read back from a run directory).
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.epochs > 0, "epochs must be positive");
        anyhow::ensure!(self.batch_size > 0, "batch size must be positive");
        anyhow::ensure!(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "learning rate {} must be a positive number",
            self.learning_rate
        );
        anyhow::ensure!(
            self.lr_factor.is_finite() && self.lr_factor > 0.0 && self.lr_factor <= 1.0,
            "the plateau factor {} must lie in (0, 1]",
            self.lr_factor
        );
        anyhow::ensure!(
            self.min_learning_rate.is_finite() && self.min_learning_rate >= 0.0,
            "minimum learning rate {} must be a non-negative number",
            self.min_learning_rate
        );
        anyhow::ensure!(
            self.max_steps_per_epoch != Some(0),
            "steps per epoch must be positive"
        );
        anyhow::ensure!(self.shards > 0, "shards per batch must be positive");
        Ok(())
    }

    /// What a delivered model is trained with: the seed's full routine (up to 60 epochs,
    /// batch 64, early stopping after 12 flat epochs, learning rate × 0.7 after 5).
    pub fn delivery() -> TrainConfig {
        TrainConfig {
            epochs: 60,
            batch_size: 64,
            ..TrainConfig::full()
        }
    }

    /// The seed's full training: plateau factor 0.7 / patience 5, early stop 12.
    pub fn full() -> TrainConfig {
        TrainConfig {
            early_stop_patience: 12,
            lr_patience: 5,
            lr_factor: 0.7,
            ..TrainConfig::proxy()
        }
    }
}

/// One epoch's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub learning_rate: f64,
    pub seconds: f64,
}

/// What training produced: the best epoch's weights and their validation metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOutcome {
    #[serde(skip)]
    pub weights: Weights,
    pub val: Metrics,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub history: Vec<EpochLog>,
    pub seconds: f64,
    /// Training throughput over all epochs (samples per second, forward + backward + update).
    pub train_samples_per_sec: f64,
    /// Training stopped at its deadline (a search's time budget) before early stopping or the
    /// epoch limit ended it; the best epoch so far is the result.
    #[serde(default)]
    pub cut_by_deadline: bool,
}

/// Keras-style initial weights for a spec: Xavier-uniform kernels, zero biases, BatchNorm
/// γ = 1, β = 0, running mean 0 and variance 1, an input embedding uniform in ±0.05.
pub fn initial_weights(spec: &NetSpec, seed: u64) -> Weights {
    use rand::Rng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut w = Weights::default();
    for (name, shape) in crate::weights::expected_shapes(spec) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if name == crate::weights::Param::Embedding.name() {
            // Keras's `Embedding` initializer: uniform in ±0.05.
            (0..n).map(|_| rng.random_range(-0.05f32..0.05)).collect()
        } else if name.ends_with(".weight") {
            let (fan_in, fan_out) = if name.starts_with("dense") {
                (shape[0], shape[1])
            } else {
                (shape[1] * shape[2], shape[0] * shape[2])
            };
            let a = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
            (0..n).map(|_| rng.random_range(-a..a)).collect()
        } else if name.ends_with(".gamma") || name.ends_with(".var") {
            vec![1.0; n]
        } else {
            vec![0.0; n]
        };
        w.insert(name, shape, data);
    }
    w
}

/// The model's weights with every BatchNorm's running statistics replaced by the statistics of
/// its input over the `calibration` samples, under the current weights: one forward pass in
/// training mode (dropout off) with momentum 1.
fn recalibrated_weights(
    net: &Net,
    train: &Dataset,
    calibration: &[usize],
    len: usize,
    dev: &burn::tensor::Device,
) -> Weights {
    let mut probe = net.clone();
    for b in &mut probe.blocks {
        if let Some(bn) = &mut b.bn {
            bn.momentum = 1.0;
        }
    }
    let mut x = Vec::with_capacity(calibration.len() * len);
    for &i in calibration {
        x.extend(train.sample(i).iter().map(|&b| crate::data::input_value(b)));
    }
    let x = Tensor::<3>::from_data(TensorData::new(x, vec![calibration.len(), 1, len]), dev);
    drop(probe.forward(x, None));
    probe.valid().to_weights()
}

/// Evaluate weights on a dataset in inference mode.
pub fn evaluate(spec: &NetSpec, weights: &Weights, data: &Dataset) -> Result<Metrics> {
    let logits = model::infer_logits(spec, weights, &data.samples, data.n())?;
    Ok(metrics::from_logits(&logits, &data.labels, spec.classes))
}

/// The checks a training set and a validation set must pass for `spec`.
fn check_data(spec: &NetSpec, train: &Dataset, val: &Dataset) -> Result<()> {
    if train.len != spec.input_len || val.len != spec.input_len {
        bail!(
            "the network expects samples of length {}, the data has {} (train) / {} (validation)",
            spec.input_len,
            train.len,
            val.len
        );
    }
    if train.n() == 0 || val.n() == 0 {
        bail!("training needs non-empty training and validation sets");
    }
    if let Some(&bad) = train
        .labels
        .iter()
        .chain(&val.labels)
        .find(|&&l| l as usize >= spec.classes)
    {
        bail!(
            "label {bad} is out of range for a network with {} classes",
            spec.classes
        );
    }
    Ok(())
}

/// Early stopping and reduce-LR-on-plateau, driven by each epoch's validation loss.
struct Schedule<'a> {
    cfg: &'a TrainConfig,
    lr: f64,
    best_loss: f64,
    since_best: usize,
    since_lr: usize,
}

impl<'a> Schedule<'a> {
    fn new(cfg: &'a TrainConfig) -> Self {
        Schedule {
            cfg,
            lr: cfg.learning_rate,
            best_loss: f64::INFINITY,
            since_best: 0,
            since_lr: 0,
        }
    }

    /// Book an epoch's validation loss: (the best so far, stop now).
    fn after_epoch(&mut self, val_loss: f64) -> (bool, bool) {
        if val_loss < self.best_loss {
            self.best_loss = val_loss;
            self.since_best = 0;
            self.since_lr = 0;
            return (true, false);
        }
        self.since_best += 1;
        self.since_lr += 1;
        if self.since_lr >= self.cfg.lr_patience {
            self.lr = (self.lr * self.cfg.lr_factor).max(self.cfg.min_learning_rate);
            self.since_lr = 0;
        }
        (false, self.since_best >= self.cfg.early_stop_patience)
    }
}

/// What a caller hears while training runs.
pub enum Progress<'a> {
    /// After every step: (steps done, steps planned).
    Step(usize, usize),
    /// After every epoch's validation.
    Epoch(&'a EpochLog),
}

/// Train `spec` from `init` on `train`, selecting the epoch by the loss on `val`.
/// `progress` is called after every step with (steps done, steps planned) for progress bars.
pub fn train(
    spec: &NetSpec,
    init: &Weights,
    train: &Dataset,
    val: &Dataset,
    cfg: &TrainConfig,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TrainOutcome> {
    train_observed(spec, init, train, val, cfg, seed, None, &mut |p| {
        if let Progress::Step(done, total) = p {
            progress(done, total)
        }
    })
}

/// [`train`], telling `observe` about every step and every epoch, and starting no epoch that
/// would end after `deadline` by the last one's duration (the best epoch so far is then the
/// result).
#[allow(clippy::too_many_arguments)]
pub fn train_observed(
    spec: &NetSpec,
    init: &Weights,
    train: &Dataset,
    val: &Dataset,
    cfg: &TrainConfig,
    seed: u64,
    deadline: Option<Instant>,
    observe: &mut dyn FnMut(Progress),
) -> Result<TrainOutcome> {
    cfg.validate()?;
    check_data(spec, train, val)?;
    let plain = model::default_device();
    let dev = plain.clone().autodiff();
    dev.seed(seed);
    let net = Net::from_weights(spec, init, &dev)?;
    let len = spec.input_len;
    let calibration = calibration_samples(train.n(), cfg.bn_recalibration, seed);
    fit(net, train, len, cfg, seed, deadline, observe, &mut |net| {
        let weights = if cfg.bn_recalibration > 0 {
            recalibrated_weights(net, train, &calibration, len, &dev)
        } else {
            net.valid().to_weights()
        };
        let metrics = evaluate(spec, &weights, val)?;
        Ok((weights, metrics))
    })
}

/// The training loop: epochs of mini-batch steps on `net`, each followed by `validate` (the
/// weights to keep and their validation metrics), the learning rate lowered on plateaus,
/// stopped early (or at the deadline), and the weights of the epoch with the best validation
/// loss returned.
#[allow(clippy::too_many_arguments)]
fn fit(
    mut net: Net,
    train: &Dataset,
    len: usize,
    cfg: &TrainConfig,
    seed: u64,
    deadline: Option<Instant>,
    observe: &mut dyn FnMut(Progress),
    validate: &mut dyn FnMut(&Net) -> Result<(Weights, Metrics)>,
) -> Result<TrainOutcome> {
    let start = Instant::now();
    let dev = net.dense.weight.val().device();
    let mut steps = Steps::new(train, len, cfg, seed, &dev);
    let mut schedule = Schedule::new(cfg);
    let mut best: Option<(usize, Weights, Metrics)> = None;
    let mut history = Vec::new();
    let mut step_secs = 0.0f64;
    let mut cut_by_deadline = false;

    for epoch in 0..cfg.epochs {
        // No epoch that would end past the deadline, judging by the last one.
        let last = history.last().map_or(0.0, |e: &EpochLog| e.seconds);
        if epoch > 0
            && deadline.is_some_and(|d| Instant::now() + Duration::from_secs_f64(last) >= d)
        {
            cut_by_deadline = true;
            break;
        }
        let epoch_start = Instant::now();
        let train_loss;
        (net, train_loss) = steps.epoch(net, epoch, schedule.lr, observe);
        step_secs += epoch_start.elapsed().as_secs_f64();
        let (weights, val_metrics) = validate(&net)?;
        let val_loss = val_metrics.loss.unwrap_or(f64::INFINITY);
        history.push(EpochLog {
            epoch,
            train_loss,
            val_loss,
            val_accuracy: val_metrics.accuracy,
            learning_rate: schedule.lr,
            seconds: epoch_start.elapsed().as_secs_f64(),
        });
        observe(Progress::Epoch(history.last().expect("pushed above")));
        if !val_loss.is_finite() {
            bail!("training diverged: the validation loss is {val_loss} after epoch {epoch}");
        }
        let (improved, stop) = schedule.after_epoch(val_loss);
        if improved {
            best = Some((epoch, weights, val_metrics));
        }
        if stop {
            break;
        }
    }
    let (best_epoch, weights, val) = best.expect("at least one epoch ran");
    let seconds = start.elapsed().as_secs_f64();
    Ok(TrainOutcome {
        weights,
        val,
        best_epoch,
        epochs_run: history.len(),
        history,
        seconds,
        train_samples_per_sec: steps.trained_samples as f64 / step_secs.max(1e-9),
        cut_by_deadline,
    })
}

/// The training samples BatchNorm's statistics are recalibrated on: `count` of the `n`, drawn
/// under the seed.
fn calibration_samples(n: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
        seed ^ 0xba7c_4e0a,
    ));
    idx.truncate(count);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load_dir, LoadOptions};

    /// `spec` trained from Keras-style initial weights (seed 1) under seed 7, unobserved.
    fn quick_train(
        spec: &NetSpec,
        train_set: &Dataset,
        val: &Dataset,
        cfg: &TrainConfig,
    ) -> TrainOutcome {
        let init = initial_weights(spec, 1);
        train(spec, &init, train_set, val, cfg, 7, &mut |_, _| {}).unwrap()
    }

    pub(crate) fn iscx() -> crate::data::Splits {
        let dir = crate::data::shared_data_dir().join("iscx-vpn2016-12class-sessionl7");
        load_dir(&dir, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("the real datasets are needed at {}: {e}", dir.display()))
    }

    /// A few steps on a small real subset: the loss falls, the best epoch's weights come back
    /// complete, and their validation metrics are what `evaluate` computes for them.
    #[test]
    fn trains_on_a_small_real_subset() {
        let s = iscx();
        let train_set = s.train.stratified_head(40);
        let val = s.test.stratified_head(10);
        let spec = NetSpec::smart_start(784, 12);
        let cfg = TrainConfig {
            epochs: 4,
            batch_size: 64,
            max_steps_per_epoch: Some(8),
            ..TrainConfig::proxy()
        };
        let mut calls = 0;
        let out = train(
            &spec,
            &initial_weights(&spec, 1),
            &train_set,
            &val,
            &cfg,
            7,
            &mut |_, _| calls += 1,
        )
        .unwrap();
        assert_eq!(calls, 4 * 8);
        out.weights.check(&spec).unwrap();
        assert!(
            out.history.last().unwrap().train_loss < out.history[0].train_loss,
            "{:?}",
            out.history
        );
        let again = evaluate(&spec, &out.weights, &val).unwrap();
        assert_eq!(again.accuracy, out.val.accuracy);
        assert!(
            out.val.accuracy > 1.0 / 12.0,
            "no better than chance: {}",
            out.val.brief()
        );
    }

    /// A deadline already passed lets the first epoch run and no other; the outcome says it
    /// was cut. Without one the same training runs all its epochs.
    #[test]
    fn a_passed_deadline_stops_after_the_first_epoch() {
        let s = iscx();
        let train_set = s.train.stratified_head(20);
        let val = s.test.stratified_head(5);
        let spec = NetSpec::smart_start(784, 12);
        let cfg = TrainConfig {
            epochs: 3,
            batch_size: 32,
            max_steps_per_epoch: Some(2),
            ..TrainConfig::proxy()
        };
        let init = initial_weights(&spec, 1);
        let mut epochs = 0;
        let run = |deadline, epochs: &mut usize| {
            train_observed(
                &spec,
                &init,
                &train_set,
                &val,
                &cfg,
                7,
                deadline,
                &mut |p| {
                    if let Progress::Epoch(_) = p {
                        *epochs += 1;
                    }
                },
            )
            .unwrap()
        };
        let cut = run(Some(Instant::now()), &mut epochs);
        assert!(cut.cut_by_deadline);
        assert_eq!((cut.epochs_run, epochs), (1, 1));
        cut.weights.check(&spec).unwrap();
        let full = run(None, &mut epochs);
        assert!(!full.cut_by_deadline);
        assert_eq!(full.epochs_run, 3);
    }

    /// Sharded training (BatchNorm, dropout) gives the same weights on one core as on two.
    #[test]
    fn sharded_training_does_not_depend_on_the_cores() {
        let s = iscx();
        let train_set = s.train.stratified_head(20);
        let val = s.test.stratified_head(5);
        let spec = NetSpec::smart_start(784, 12);
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 48,
            max_steps_per_epoch: Some(3),
            shards: 2,
            ..TrainConfig::proxy()
        };
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| quick_train(&spec, &train_set, &val, &cfg))
        };
        let (one, two) = (on(1), on(2));
        assert_eq!(one.weights, two.weights);
        assert_eq!(one.history[1].train_loss, two.history[1].train_loss);
    }

    /// After a short training the moving averages still describe the initial weights; the
    /// recalibrated statistics describe the trained ones, and validate far better.
    #[test]
    fn batch_norm_recalibration_tracks_the_weights() {
        let s = iscx();
        let train_set = s.train.stratified_head(40);
        let val = s.test.stratified_head(10);
        let spec = NetSpec::smart_start(784, 12);
        let run = |bn_recalibration| {
            let cfg = TrainConfig {
                epochs: 3,
                batch_size: 64,
                max_steps_per_epoch: Some(6),
                bn_recalibration,
                ..TrainConfig::proxy()
            };
            quick_train(&spec, &train_set, &val, &cfg)
        };
        let (ema, recal) = (run(0), run(480));
        // 18 steps at momentum 0.01 leave the running variance at ≈ 0.83 · 1 + 0.17 · batch.
        let var = |o: &TrainOutcome| o.weights.tensors["bn1.var"].data.iter().sum::<f32>() / 114.0;
        assert!(var(&ema) > 0.8, "{}", var(&ema));
        assert!(
            var(&recal) < 0.5 * var(&ema),
            "{} vs {}",
            var(&recal),
            var(&ema)
        );
        let loss = |o: &TrainOutcome| o.val.loss.unwrap();
        assert!(
            loss(&recal) < loss(&ema),
            "{} vs {}",
            loss(&recal),
            loss(&ema)
        );
    }

    #[test]
    fn rejects_mismatched_data() {
        let s = iscx();
        let spec = NetSpec::smart_start(100, 12);
        let small = s.train.stratified_head(2);
        let e = train(
            &spec,
            &initial_weights(&spec, 1),
            &small,
            &small,
            &TrainConfig::proxy(),
            1,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("length 100"), "{e}");
    }
}
