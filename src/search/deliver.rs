//! Delivery: the model a run hands over is trained properly, not the proxy-trained candidate.
//!
//! The search ranks architectures with short proxy trainings. Once it is done, the best
//! `final_top` distinct architectures are trained again with the full routine (the seed's:
//! up to 60 epochs, batch 64, early stopping with the best epoch's weights restored, learning
//! rate × 0.7 after 5 flat epochs), by default starting from their proxy weights. The
//! validation fold is the proxy's own (fold 0), so the proxy weights never saw it and the proxy
//! and final figures are comparable; the finalist with the best final validation score is
//! delivered in `best/`. Each finalist is saved in `final/<id>/` (`final.json` last), so a
//! resumed run retrains none that finished. `nas train` runs the same routine on any spec.

use super::*;

/// The final training of one architecture, saved as `final.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalRecord {
    /// The search candidate it continues (absent for `nas train`).
    pub candidate: Option<String>,
    pub spec: NetSpec,
    pub summary: String,
    /// The candidate's validation metrics after proxy training (absent for `nas train`).
    pub proxy_val: Option<Metrics>,
    /// Validation metrics after final training, on the same validation samples.
    pub val: Metrics,
    /// `val` by the run's selection metric.
    pub score: f64,
    /// Whether training started from the candidate's proxy weights (else from scratch).
    pub warm_start: bool,
    pub train: TrainConfig,
    pub train_samples: usize,
    pub val_samples: usize,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub train_seconds: f64,
    pub train_samples_per_sec: f64,
    pub history: Vec<train::EpochLog>,
    /// The search's time budget ended this training before early stopping or the epoch limit
    /// did (the best epoch so far was delivered).
    #[serde(default)]
    pub cut_by_time_budget: bool,
}

impl FinalRecord {
    /// One line: the final figures, next to the proxy's when there are any.
    pub fn brief(&self) -> String {
        match &self.proxy_val {
            Some(p) => format!("{}  (proxy: {})", self.val.brief(), p.brief()),
            None => self.val.brief(),
        }
    }
}

/// The best `top` distinct architectures among the finished candidates, best first, ties
/// broken by candidate order.
pub fn finalists(records: &[Record], top: usize) -> Vec<&Record> {
    let mut v: Vec<&Record> = records
        .iter()
        .filter(|r| r.duplicate_of.is_none())
        .collect();
    v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    v.truncate(top);
    v
}

/// Estimated seconds of `rec`'s final training under `cfg`, for a time-budgeted search to
/// leave room for it: the candidate's measured seconds per epoch (per fold) times the final
/// epoch limit (an upper bound: early stopping often ends sooner).
///
/// Final training uses the proxy's own training samples (all but fold 0), so an epoch costs
/// about what a proxy epoch did: the final batch size matters little on the CPU backend
/// (measured on ISCX with `nas train --epochs 2 --batch-size 64|256`, two shards: 3.2-4.1 s vs
/// 3.3 s per epoch for the 5-block winner of a 60-minute search). Where the estimate falls
/// short, final training's own deadline still ends it within the budget.
pub(crate) fn final_seconds_estimate(rec: &Record, cfg: &RunConfig) -> f64 {
    let folds = match cfg.training {
        Training::Proxy => 1,
        Training::Full => cfg.folds,
    };
    let per_epoch = rec.train_seconds / (rec.epochs_run.max(1) * folds) as f64;
    per_epoch * cfg.final_train.epochs as f64
}

/// Train `spec` with the full routine on `train_set`, holding out `val_idx` for early stopping;
/// no epoch starts that would end after `deadline` (see [`train::train_observed`]).
#[allow(clippy::too_many_arguments)]
pub fn train_final(
    spec: &NetSpec,
    init: &Weights,
    train_set: &Dataset,
    val_idx: &[usize],
    cfg: &TrainConfig,
    metric: Metric,
    seed: u64,
    deadline: Option<std::time::Instant>,
    observe: &mut dyn FnMut(train::Progress),
) -> Result<(FinalRecord, Weights)> {
    let (tr, val) = split_off(train_set, val_idx);
    let out = train::train_observed(spec, init, &tr, &val, cfg, seed, deadline, observe)?;
    let rec = FinalRecord {
        candidate: None,
        spec: spec.clone(),
        summary: spec.summary(),
        proxy_val: None,
        score: metric.of(&out.val),
        val: out.val,
        warm_start: false,
        train: cfg.clone(),
        train_samples: tr.n(),
        val_samples: val.n(),
        epochs_run: out.epochs_run,
        best_epoch: out.best_epoch,
        train_seconds: out.seconds,
        train_samples_per_sec: out.train_samples_per_sec,
        history: out.history,
        cut_by_time_budget: out.cut_by_deadline,
    };
    Ok((rec, out.weights))
}

/// The training split without the samples at `val_idx`, and those samples.
fn split_off(train_set: &Dataset, val_idx: &[usize]) -> (Dataset, Dataset) {
    let mut in_val = vec![false; train_set.n()];
    for &i in val_idx {
        in_val[i] = true;
    }
    let tr_idx: Vec<usize> = (0..train_set.n()).filter(|&i| !in_val[i]).collect();
    (train_set.subset(&tr_idx), train_set.subset(val_idx))
}

/// What `nas train --qat-epochs N` measured of the int8 network: post-training quantization
/// of the float model, then after quantization-aware fine-tuning (all int8 figures from the
/// int8 host reference, which the kernels equal bit for bit).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Int8Figures {
    /// The float model (before QAT) on the test split.
    pub float_test: Metrics,
    pub calibration_samples: usize,
    pub ptq_val: Metrics,
    pub ptq_test: Metrics,
    pub qat_epochs: usize,
    pub qat_best_epoch: usize,
    pub qat_val: Metrics,
    pub qat_test: Metrics,
    /// Whether the delivered weights are QAT's (they validated better in int8) or the float
    /// model's.
    pub delivered_qat: bool,
}

impl Int8Figures {
    pub fn text(&self) -> String {
        format!(
            "float32 before QAT:  test {}\nint8 (calibrated on {} training samples):\n  \
             post-training: validation {}\n                 test {}\n  QAT ({} epochs, best {}): \
             validation {}\n                 test {}\n  delivered: {}",
            self.float_test.brief(),
            self.calibration_samples,
            self.ptq_val.brief(),
            self.ptq_test.brief(),
            self.qat_epochs,
            self.qat_best_epoch + 1,
            self.qat_val.brief(),
            self.qat_test.brief(),
            if self.delivered_qat {
                "the QAT weights"
            } else {
                "the float weights (QAT did not validate better in int8)"
            }
        )
    }
}

/// Quantization-aware fine-tuning of the float training's `weights` (same split), with the
/// int8 figures before and after; returns the weights to deliver.
fn qat_stage(
    cfg: &rundir::TrainRunConfig,
    weights: Weights,
    splits: &data::Splits,
    val_idx: &[usize],
    log: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<(Weights, Int8Figures)> {
    use crate::quant::{evaluate_int8, ptq, CalibrationMethod};
    use crate::train::qat::{fine_tune, CALIBRATION_SAMPLES};
    let spec = &cfg.spec;
    let (tr, val) = split_off(&splits.train, val_idx);
    let quantize = |w: &Weights| ptq(spec, w, &tr, CALIBRATION_SAMPLES, CalibrationMethod::MinMax);
    let q = quantize(&weights)?;
    let (ptq_val, ptq_test) = (evaluate_int8(&q, &val), evaluate_int8(&q, &splits.test));
    log(&format!(
        "int8 post-training: validation {}",
        ptq_val.brief()
    ))?;
    let qat_cfg = TrainConfig {
        epochs: cfg.qat_epochs,
        learning_rate: cfg.train.learning_rate * 0.1,
        early_stop_patience: cfg.qat_epochs,
        ..cfg.train.clone()
    };
    log(&format!(
        "quantization-aware fine-tuning: {} epochs at learning rate {:.1e}",
        cfg.qat_epochs, qat_cfg.learning_rate
    ))?;
    let mut log_error = None;
    let out = fine_tune(spec, &weights, &tr, &val, &qat_cfg, cfg.seed, &mut |p| {
        if let train::Progress::Epoch(e) = p {
            if let Err(err) = log(&format!("qat {}", epoch_line(e))) {
                log_error.get_or_insert(err);
            }
        }
    })?;
    if let Some(e) = log_error {
        return Err(e);
    }
    let qat_test = evaluate_int8(&quantize(&out.weights)?, &splits.test);
    let delivered_qat = cfg.metric.of(&out.val) >= cfg.metric.of(&ptq_val);
    let figures = Int8Figures {
        float_test: train::evaluate(spec, &weights, &splits.test)?,
        calibration_samples: CALIBRATION_SAMPLES.min(tr.n()),
        ptq_val,
        ptq_test,
        qat_epochs: cfg.qat_epochs,
        qat_best_epoch: out.best_epoch,
        qat_val: out.val,
        qat_test,
        delivered_qat,
    };
    Ok((if delivered_qat { out.weights } else { weights }, figures))
}

impl SearchSession<'_> {
    /// Final training of the finalists; the best by final validation score (`None` when no
    /// candidate finished). Under a time budget, the evolution left time for this (see
    /// [`final_seconds_estimate`]); a training still running at the budget's end keeps its best
    /// epoch so far, and a finalist after the first is skipped once the budget is spent.
    pub(crate) fn deliver(&mut self) -> Result<Option<Delivered>> {
        let run = self.run;
        let cfg = &run.config;
        let records = run.records()?;
        let picked = finalists(&records, cfg.final_top);
        let mut best: Option<Delivered> = None;
        for (k, rec) in picked.into_iter().enumerate() {
            let (fin, w) = match run.load_final(&rec.id) {
                Some(done) => {
                    run.event_once(serde_json::json!({"event": "final", "record": &done.0}))?;
                    done
                }
                None if k > 0 && self.out_of_time(records.len()) => {
                    run.log(&format!(
                        "time budget spent: finalist {} gets no final training",
                        rec.id
                    ))?;
                    continue;
                }
                None => self.final_train(k, rec, records.len())?,
            };
            if best.as_ref().is_none_or(|b| fin.score > b.record.score) {
                best = Some(Delivered {
                    candidate: rec.clone(),
                    record: fin,
                    weights: w,
                });
            }
        }
        Ok(best)
    }

    /// Final training of finalist `k`, `rec`, in a run of `candidates` candidates.
    fn final_train(
        &mut self,
        k: usize,
        rec: &Record,
        candidates: usize,
    ) -> Result<(FinalRecord, Weights)> {
        let run = self.run;
        let cfg = &run.config;
        let seed = rng_for(cfg.seed, 0, 1000 + k as u64).random::<u64>();
        let init = if cfg.final_warm_start {
            let (_, w) = run
                .load_candidate(&rec.id)
                .with_context(|| format!("candidate {} is missing its weights", rec.id))?;
            w
        } else {
            train::initial_weights(&rec.spec, seed)
        };
        let observer = run.observer();
        observer.task(&format!("final training {} {}", rec.id, rec.summary));
        let (mut fin, w) = train_final(
            &rec.spec,
            &init,
            &self.train_set,
            &self.folds[0],
            &cfg.final_train,
            cfg.metric,
            seed,
            self.deadline(candidates),
            &mut |p| {
                if let train::Progress::Step(done, total) = p {
                    observer.steps(done as u64, total as u64);
                }
            },
        )?;
        fin.candidate = Some(rec.id.clone());
        fin.proxy_val = Some(rec.val.clone());
        fin.warm_start = cfg.final_warm_start;
        run.save_final(&rec.id, &fin, &w)?;
        run.event_once(serde_json::json!({"event": "final", "record": &fin}))?;
        run.log(&format!(
            "final {}  {}  {} epochs (best {}{})  val {}  ({:.1} s)",
            rec.id,
            rec.summary,
            fin.epochs_run,
            fin.best_epoch + 1,
            if fin.cut_by_time_budget {
                "; stopped by the time budget"
            } else {
                ""
            },
            fin.brief(),
            fin.train_seconds
        ))?;
        Ok((fin, w))
    }
}

/// The model a run delivers: a finalist after final training.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub candidate: Record,
    pub record: FinalRecord,
    pub weights: Weights,
}

/// What `nas train` produced, saved as the directory's `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub dir: PathBuf,
    pub record: FinalRecord,
    /// The trained model on the test split (used once).
    pub test: Metrics,
    pub cost: Cost,
    /// With `--qat-epochs`: the int8 figures, post-training and after QAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<Int8Figures>,
}

/// `nas train`: train `cfg.spec` with the full routine (a stratified `val_fraction` of the
/// training split held out for early stopping) from `init`, and write the directory `out`
/// (claimed for it: locked, holding nothing it would overwrite) that `eval`, `export` and
/// `verify` take like a run. `say` hears every log line.
pub fn train_spec(
    out: rundir::OutDir,
    cfg: &rundir::TrainRunConfig,
    init: &Weights,
    say: &mut dyn FnMut(&str),
) -> Result<TrainSummary> {
    cfg.validate()?;
    let spec = &cfg.spec;
    init.check(spec)
        .context("the initial weights do not match the spec")?;
    let splits = load_data(&cfg.data, cfg.seed)?;
    let tr = &splits.train;
    ensure!(
        tr.len == spec.input_len && tr.classes <= spec.classes,
        "the data ({} bytes per sample, {} classes) does not fit the network ({} inputs, {} classes)",
        tr.len,
        tr.classes,
        spec.input_len,
        spec.classes
    );
    let (_, val_idx) = data::stratified_split(&tr.labels, tr.classes, cfg.val_fraction, cfg.seed)?;
    let out = rundir::TrainDir::create(out, cfg)?;
    let mut log = |line: &str| -> Result<()> {
        say(line);
        out.log(line)
    };
    if let Some(r) = &splits.relabelled {
        log(&r.describe(tr.n()))?;
    }
    log(&format!(
        "training {} on {} train samples ({} held out for early stopping), up to {} epochs, batch {}",
        spec.summary(),
        tr.n() - val_idx.len(),
        val_idx.len(),
        cfg.train.epochs,
        cfg.train.batch_size
    ))?;
    let mut log_error = None;
    let (record, weights) = train_final(
        spec,
        init,
        tr,
        &val_idx,
        &cfg.train,
        cfg.metric,
        cfg.seed,
        None,
        &mut |p| {
            if let train::Progress::Epoch(e) = p {
                if let Err(err) = log(&epoch_line(e)) {
                    log_error.get_or_insert(err);
                }
            }
        },
    )?;
    if let Some(e) = log_error {
        return Err(e);
    }
    let (weights, int8) = if cfg.qat_epochs > 0 {
        let mut say = |line: &str| log(line);
        let (w, f) = qat_stage(cfg, weights, &splits, &val_idx, &mut say)?;
        (w, Some(f))
    } else {
        (weights, None)
    };
    let test = train::evaluate(spec, &weights, &splits.test)?;
    let cost = cost_of(spec, &cfg.target, &cfg.limits, cfg.dtype)?;
    let summary = TrainSummary {
        dir: out.dir.clone(),
        record,
        test,
        cost,
        int8,
    };
    out.save(&summary, &weights)?;
    for line in out.summary_text(&summary)?.lines() {
        log(line)?;
    }
    Ok(summary)
}

/// One epoch of a training log.
pub fn epoch_line(e: &train::EpochLog) -> String {
    format!(
        "epoch {:>3}  loss {:.4}  val loss {:.4}  val acc {:.2} %  lr {:.2e}  ({:.1} s)",
        e.epoch + 1,
        e.train_loss,
        e.val_loss,
        100.0 * e.val_accuracy,
        e.learning_rate,
        e.seconds
    )
}
