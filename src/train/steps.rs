//! The mini-batch loop of one training: the samples shuffled each epoch, each batch split
//! into data-parallel shards ([`TrainConfig::shards`]) whose passes run on the cores at once,
//! their gradients summed, one Adam step per batch.

use super::model::{BatchStats, Net};
use super::{Progress, TrainConfig};
use crate::data::Dataset;
use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

/// The mini-batch loop's state from epoch to epoch: the optimizer and loss, the generator that
/// shuffles the samples and draws the dropout masks, the sample order.
pub(super) struct Steps<'a> {
    train: &'a Dataset,
    dev: Device,
    optim: ModuleOptimizer,
    loss_fn: CrossEntropyLoss,
    rng: rand_chacha::ChaCha8Rng,
    order: Vec<usize>,
    x_buf: Vec<f32>,
    len: usize,
    batch_size: usize,
    shards: usize,
    per_epoch: usize,
    total: usize,
    /// Samples trained on so far, for the throughput.
    pub(super) trained_samples: usize,
}

impl<'a> Steps<'a> {
    pub(super) fn new(
        train: &'a Dataset,
        len: usize,
        cfg: &TrainConfig,
        seed: u64,
        dev: &Device,
    ) -> Self {
        let batch_size = cfg.batch_size.max(1);
        let per_epoch = {
            let full = train.n().div_ceil(batch_size);
            cfg.max_steps_per_epoch.map_or(full, |m| m.min(full)).max(1)
        };
        Steps {
            train,
            dev: dev.clone(),
            optim: AdamConfig::new().with_epsilon(1e-7).init(),
            loss_fn: CrossEntropyLossConfig::new().init(dev),
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_da7a),
            order: (0..train.n()).collect(),
            x_buf: Vec::with_capacity(batch_size * len),
            len,
            batch_size,
            shards: cfg.shards,
            per_epoch,
            total: per_epoch * cfg.epochs,
            trained_samples: 0,
        }
    }

    /// One epoch at learning rate `lr`: the samples shuffled, one Adam step per mini-batch.
    /// Returns the net after it and the mean training loss.
    pub(super) fn epoch(
        &mut self,
        mut net: Net,
        epoch: usize,
        lr: f64,
        observe: &mut dyn FnMut(Progress),
    ) -> (Net, f64) {
        self.order.shuffle(&mut self.rng);
        let bs = self.batch_size;
        let mut loss_sum = 0.0;
        for step in 0..self.per_epoch {
            let batch = step * bs..((step + 1) * bs).min(self.order.len());
            let samples = batch.len();
            let (x, y) = self.batch(batch);
            let (loss, grads) = self.step(&net, x, y);
            loss_sum += loss;
            net = self.optim.step(lr, net, grads);
            self.trained_samples += samples;
            observe(Progress::Step(
                epoch * self.per_epoch + step + 1,
                self.total,
            ));
        }
        (net, loss_sum / self.per_epoch as f64)
    }

    /// The mean loss of one mini-batch and its gradients, from `shards` data-parallel shards
    /// (see [`TrainConfig::shards`]); BatchNorm's running statistics move by the batch's.
    ///
    /// Each shard runs on a fork of the net (the same parameters as new graph leaves, so the
    /// shards' autodiff graphs stay apart and run without sharing a lock) with its own dropout
    /// generator, seeded from the step's; its loss is weighted by its share of the batch, so
    /// the summed gradients are those of the batch's mean loss. Shard results are combined in
    /// shard order whatever thread ran them.
    fn step(&mut self, net: &Net, x: Tensor<3>, y: Tensor<1, Int>) -> (f64, GradientsParams) {
        let samples = y.dims()[0];
        let shards = self.shards.clamp(1, samples.max(1));
        if shards == 1 {
            // The whole batch in one pass on the net itself, dropout drawn from the step's
            // generator: training as it was before shards.
            let (loss, grads, stats) = pass(net, &self.loss_fn, x, y, &mut self.rng, 1.0);
            net.update_running_stats(&[stats]);
            return (loss, grads);
        }
        let parts: Vec<(Tensor<3>, Tensor<1, Int>, u64)> = (0..shards)
            .map(|i| {
                let rows = samples * i / shards..samples * (i + 1) / shards;
                let seed = rand::RngCore::next_u64(&mut self.rng);
                (
                    x.clone().slice([rows.clone()]),
                    y.clone().slice([rows]),
                    seed,
                )
            })
            .collect();
        let (dev, loss_fn) = (&self.dev, &self.loss_fn);
        let results: Vec<_> = parts
            .into_par_iter()
            .map(|(x, y, seed)| {
                let replica = net.clone().fork(dev);
                let share = y.dims()[0] as f32 / samples as f32;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                pass(&replica, loss_fn, x, y, &mut rng, share)
            })
            .collect();
        let mut loss = 0.0;
        let mut grads = Vec::with_capacity(shards);
        let mut stats = Vec::with_capacity(shards);
        for (l, g, s) in results {
            loss += l;
            grads.push(g);
            stats.push(s);
        }
        net.update_running_stats(&stats);
        (loss, sum_gradients(net, grads))
    }

    /// The inputs `[n, 1, len]` and labels of the samples at `order[batch]`.
    fn batch(&mut self, batch: std::ops::Range<usize>) -> (Tensor<3>, Tensor<1, Int>) {
        let idx = &self.order[batch];
        self.x_buf.clear();
        for &i in idx {
            self.x_buf.extend(
                self.train
                    .sample(i)
                    .iter()
                    .map(|&b| crate::data::input_value(b)),
            );
        }
        let y: Vec<i64> = idx.iter().map(|&i| self.train.labels[i] as i64).collect();
        let x = Tensor::<3>::from_data(
            TensorData::new(self.x_buf.clone(), vec![idx.len(), 1, self.len]),
            &self.dev,
        );
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, vec![idx.len()]), &self.dev);
        (x, y)
    }
}

/// One forward and backward pass of `net` over `x`: the loss weighted by `share` (the pass's
/// part of its batch), its gradients and the batch statistics of its BatchNorms.
fn pass(
    net: &Net,
    loss_fn: &CrossEntropyLoss,
    x: Tensor<3>,
    y: Tensor<1, Int>,
    rng: &mut dyn rand::RngCore,
    share: f32,
) -> (f64, GradientsParams, Vec<Option<BatchStats>>) {
    let (logits, stats) = net.forward_collect(x, Some(rng));
    let loss = loss_fn.forward(logits, y).mul_scalar(share);
    let value = loss.clone().into_scalar::<f32>() as f64;
    (
        value,
        GradientsParams::from_grads(loss.backward(), net),
        stats,
    )
}

/// The sum of several gradient sets of `net`'s parameters, in the sets' order.
fn sum_gradients(net: &Net, sets: Vec<GradientsParams>) -> GradientsParams {
    struct Sum {
        sets: Vec<GradientsParams>,
        out: GradientsParams,
    }
    impl burn::module::ModuleVisitor for Sum {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let id = param.id;
            let total = self
                .sets
                .iter_mut()
                .filter_map(|g| g.remove::<D>(id))
                .reduce(|a, b| a + b);
            if let Some(total) = total {
                self.out.register(id, total);
            }
        }
    }
    let mut sum = Sum {
        sets,
        out: GradientsParams::new(),
    };
    net.visit(&mut sum);
    sum.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::NetSpec;
    use crate::train::{initial_weights, model, tests::iscx};

    /// Without BatchNorm or dropout a step's shards are a partition of the batch's sum: the
    /// same loss and the same gradients as one pass over the whole batch.
    #[test]
    fn sharded_steps_give_the_batch_gradients() {
        let s = iscx();
        let data = s.train.stratified_head(2);
        let mut spec = NetSpec::smart_start(784, 12);
        for b in &mut spec.blocks {
            b.batch_norm = false;
            b.dropout = 0.0;
        }
        let dev = model::default_device().autodiff();
        let w = initial_weights(&spec, 3);
        let run = |shards| {
            let cfg = TrainConfig {
                shards,
                ..TrainConfig::proxy()
            };
            let net = Net::from_weights(&spec, &w, &dev).unwrap();
            let mut steps = Steps::new(&data, 784, &cfg, 1, &dev);
            let (x, y) = steps.batch(0..data.n());
            let (loss, grads) = steps.step(&net, x, y);
            let conv: Vec<Tensor<3>> = net
                .blocks
                .iter()
                .map(|b| grads.get::<3>(b.conv.weight.id).unwrap())
                .collect();
            (loss, conv, grads.get::<2>(net.dense.weight.id).unwrap())
        };
        let (loss, conv, dense) = run(1);
        for shards in [2, 5] {
            let (l, c, d) = run(shards);
            assert!(
                (l - loss).abs() < 1e-5,
                "{shards} shards: loss {l} vs {loss}"
            );
            let diff = |a: Vec<f32>, b: Vec<f32>| {
                a.iter()
                    .zip(&b)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f32::max)
            };
            let v = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
            for (a, b) in conv.iter().zip(c) {
                let e = diff(v(a.clone()), v(b));
                assert!(e < 1e-6, "{shards} shards: conv gradient differs by {e}");
            }
            let e = diff(
                dense.clone().into_data().try_to_vec().unwrap(),
                d.into_data().try_to_vec().unwrap(),
            );
            assert!(e < 1e-6, "{shards} shards: dense gradient differs by {e}");
        }
    }
}
