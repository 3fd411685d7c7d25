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

/// Train `spec` with the full routine on `train_set`, holding out `val_idx` for early stopping.
#[allow(clippy::too_many_arguments)]
pub fn train_final(
    spec: &NetSpec,
    init: &Weights,
    train_set: &Dataset,
    val_idx: &[usize],
    cfg: &TrainConfig,
    metric: Metric,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(FinalRecord, Weights)> {
    let mut in_val = vec![false; train_set.n()];
    for &i in val_idx {
        in_val[i] = true;
    }
    let tr_idx: Vec<usize> = (0..train_set.n()).filter(|&i| !in_val[i]).collect();
    let (tr, val) = (train_set.subset(&tr_idx), train_set.subset(val_idx));
    let out = train::train(spec, init, &tr, &val, cfg, seed, progress)?;
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
    };
    Ok((rec, out.weights))
}

impl Session<'_> {
    /// Final training of the finalists; the best by final validation score, or `None` when the
    /// time budget stopped the run first. With `final_top == 0` the best proxy candidate is
    /// delivered as it is.
    pub(crate) fn deliver(&mut self) -> Result<Option<Delivered>> {
        let run = self.run;
        let cfg = &run.config;
        let records = run.records()?;
        let picked = finalists(&records, cfg.final_top);
        let mut best: Option<Delivered> = None;
        for (k, rec) in picked.into_iter().enumerate() {
            let (fin, w) = match run.load_final(&rec.id) {
                Some(done) => done,
                None => {
                    if self.out_of_time() {
                        return Ok(None);
                    }
                    self.final_train(k, rec)?
                }
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

    fn final_train(&mut self, k: usize, rec: &Record) -> Result<(FinalRecord, Weights)> {
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
        self.steps.reset();
        self.steps
            .set_message(format!("final training {} {}", rec.id, rec.summary));
        let bar = &self.steps;
        let (mut fin, w) = train_final(
            &rec.spec,
            &init,
            &self.train_set,
            &self.folds[0],
            &cfg.final_train,
            cfg.metric,
            seed,
            &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
        )?;
        fin.candidate = Some(rec.id.clone());
        fin.proxy_val = Some(rec.val.clone());
        fin.warm_start = cfg.final_warm_start;
        run.save_final(&rec.id, &fin, &w)?;
        run.event(serde_json::json!({"event": "final", "record": &fin}))?;
        self.overall.suspend(|| {
            run.log(&format!(
                "final {}  {}  {} epochs (best {})  val {}  ({:.1} s)",
                rec.id,
                rec.summary,
                fin.epochs_run,
                fin.best_epoch + 1,
                fin.brief(),
                fin.train_seconds
            ))
        })?;
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
