//! One candidate: training it by the run's mode (proxy fold or k folds), recording it, reusing
//! an earlier result for a recreated architecture, tracking the best so far.

use super::*;

// ---------------------------------------------------------------------------------------------
// The search
// ---------------------------------------------------------------------------------------------

/// What training one candidate produced.
pub(crate) struct Trained {
    pub(crate) weights: Weights,
    /// Validation metrics, averaged over folds for full training.
    pub(crate) val: Metrics,
    pub(crate) epochs_run: usize,
    pub(crate) best_epoch: usize,
    pub(crate) seconds: f64,
    pub(crate) samples_per_sec: f64,
    pub(crate) history: Vec<train::EpochLog>,
}

/// Train one candidate according to the run's training mode.
pub(crate) fn train_candidate(
    spec: &NetSpec,
    init: &Weights,
    train_set: &Dataset,
    folds: &[Vec<usize>],
    cfg: &RunConfig,
    seed: u64,
    observer: &dyn Observer,
) -> Result<Trained> {
    let fold_count = match cfg.training {
        Training::Proxy => 1,
        Training::Full => folds.len(),
    };
    let mut results = Vec::new();
    for f in 0..fold_count {
        let (tr, val) = fold_sets(train_set, folds, f);
        let mut out = train::train(
            spec,
            init,
            &tr,
            &val,
            &cfg.train,
            seed.wrapping_add(f as u64),
            &mut |done, total| {
                observer.steps((f * total + done) as u64, (total * fold_count) as u64);
            },
        )?;
        if cfg.dtype == crate::net::Dtype::Int8 {
            out.val = int8_score(spec, &out.weights, &tr, &val)?;
        }
        results.push(out);
    }
    let n = results.len() as f64;
    // Mean validation metrics over folds; the weights of the best fold are kept.
    let val = mean_over_folds(&results);
    let best = results
        .iter()
        .max_by(|a, b| cfg.metric.of(&a.val).total_cmp(&cfg.metric.of(&b.val)))
        .expect("at least one fold");
    let seconds = results.iter().map(|r| r.seconds).sum();
    let sps = results.iter().map(|r| r.train_samples_per_sec).sum::<f64>() / n;
    Ok(Trained {
        weights: best.weights.clone(),
        val,
        epochs_run: best.epochs_run,
        best_epoch: best.best_epoch,
        seconds,
        samples_per_sec: sps,
        history: best.history.clone(),
    })
}

/// Fold `f`'s training set (every other fold) and validation set (fold `f`).
fn fold_sets(train_set: &Dataset, folds: &[Vec<usize>], f: usize) -> (Dataset, Dataset) {
    let tr_idx: Vec<usize> = folds
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != f)
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    (train_set.subset(&tr_idx), train_set.subset(&folds[f]))
}

/// Score what would be deployed in int8: the network quantized, calibrated on the fold's
/// training samples, evaluated on its validation samples.
fn int8_score(spec: &NetSpec, weights: &Weights, tr: &Dataset, val: &Dataset) -> Result<Metrics> {
    let q = crate::quant::ptq(
        spec,
        weights,
        tr,
        crate::quant::calibrate::DEFAULT_CALIBRATION_SAMPLES,
        crate::quant::CalibrationMethod::MinMax,
    )?;
    Ok(crate::quant::evaluate_int8(&q, val))
}

/// The folds' validation metrics: means of the rates and loss, sums of the samples and the
/// confusion matrices (one fold's own metrics when there is one).
fn mean_over_folds(results: &[train::TrainOutcome]) -> Metrics {
    let n = results.len() as f64;
    let mut val = results[0].val.clone();
    if results.len() > 1 {
        val.accuracy = results.iter().map(|r| r.val.accuracy).sum::<f64>() / n;
        val.weighted_precision = results
            .iter()
            .map(|r| r.val.weighted_precision)
            .sum::<f64>()
            / n;
        val.weighted_recall = results.iter().map(|r| r.val.weighted_recall).sum::<f64>() / n;
        val.weighted_f1 = results.iter().map(|r| r.val.weighted_f1).sum::<f64>() / n;
        val.macro_f1 = results.iter().map(|r| r.val.macro_f1).sum::<f64>() / n;
        val.loss = Some(results.iter().filter_map(|r| r.val.loss).sum::<f64>() / n);
        val.samples = results.iter().map(|r| r.val.samples).sum();
        for r in &results[1..] {
            for (row, other) in val.confusion.iter_mut().zip(&r.val.confusion) {
                for (a, b) in row.iter_mut().zip(other) {
                    *a += b;
                }
            }
        }
    }
    val
}

pub(crate) struct SearchSession<'a> {
    pub(crate) run: &'a Run,
    pub(crate) train_set: Dataset,
    pub(crate) folds: Vec<Vec<usize>>,
    pub(crate) started: Instant,
    pub(crate) time_budget: Option<Duration>,
    pub(crate) trained: usize,
    pub(crate) best: Option<(Record, Weights)>,
    /// Architectures evaluated so far (spec JSON → candidate id), so that a mutation that
    /// recreates an earlier network reuses its result instead of training it again.
    pub(crate) seen: HashMap<String, String>,
    pub(crate) executor: Executor,
    /// The time budget stopped the evolution in this session.
    pub(crate) evolution_cut: bool,
    /// What the caller needs of the budget after the search, by candidates recorded.
    pub(crate) reserve_after: Option<fn(usize) -> Duration>,
}

/// What becomes of one child of a generation.
enum Slot {
    /// Finished in an earlier session.
    Done(Box<(Record, Weights)>),
    /// The same architecture as this earlier candidate: its result is reused.
    Reuse(String),
    /// To be trained.
    Train(Task, Weights),
}

impl SearchSession<'_> {
    /// Evaluate (or load) the candidates of generation `g`, in index order; `None` when the
    /// time budget stopped the run first.
    pub(crate) fn generation(
        &mut self,
        g: usize,
        children: &[(NetSpec, Cost)],
        parent: Option<&(Record, Weights)>,
    ) -> Result<Option<Vec<(Record, Weights)>>> {
        let mut slots = Vec::with_capacity(children.len());
        for (i, (spec, _)) in children.iter().enumerate() {
            slots.push(self.plan(g, i, spec, parent)?);
        }
        let outcomes = self.train_slots(&slots)?;
        let mut results = Vec::with_capacity(children.len());
        let mut complete = true;
        for (i, ((slot, outcome), (_, c))) in
            slots.into_iter().zip(outcomes).zip(children).enumerate()
        {
            let done = match slot {
                Slot::Done(done) => {
                    let (rec, w) = *done;
                    self.run.observer().candidate_done();
                    self.run
                        .event_once(serde_json::json!({"event": "candidate", "record": &rec}))?;
                    (rec, w)
                }
                Slot::Reuse(earlier) => self.reuse(&earlier, g, i, parent, c)?,
                Slot::Train(task, init) => match outcome {
                    None => {
                        complete = false;
                        break;
                    }
                    Some(Ok(Some(done))) => self.trained_one(done)?,
                    Some(Ok(None)) => {
                        let done = self.run.load_candidate(&task.id).with_context(|| {
                            format!("the worker of {} wrote no readable record", task.id)
                        })?;
                        self.trained_one(done)?
                    }
                    Some(Err(reason)) => self.failed_one(&task, init, reason, c)?,
                },
            };
            self.consider_best(&done.0, &done.1, c)?;
            results.push(done);
        }
        Ok(complete.then_some(results))
    }

    /// Decide what to do with child `i` of generation `g`; a child to train gets its task
    /// files written.
    fn plan(
        &mut self,
        g: usize,
        i: usize,
        spec: &NetSpec,
        parent: Option<&(Record, Weights)>,
    ) -> Result<Slot> {
        let id = candidate_id(g, i);
        let cfg = &self.run.config;
        if let Some((rec, w)) = self.run.load_candidate(&id) {
            if rec.spec != *spec {
                bail!(
                    "{}: candidate {id} on disk differs from the one this configuration generates; \
                     the run directory was written by a different configuration or version",
                    self.run.dir.display()
                );
            }
            self.seen.entry(spec.to_json()).or_insert(id);
            return Ok(Slot::Done(Box::new((rec, w))));
        }
        if let Some(earlier) = self.seen.get(&spec.to_json()) {
            return Ok(Slot::Reuse(earlier.clone()));
        }
        self.seen.insert(spec.to_json(), id.clone());
        let measured = if cfg.verify {
            Some(measure(spec, cfg)?)
        } else {
            None
        };
        let seed = rng_for(cfg.seed, g, 3 + i as u64).random::<u64>();
        let mut init = train::initial_weights(spec, seed);
        let inherited_blocks = match parent {
            Some((prec, pw)) if cfg.inherit => inherit(spec, &prec.spec, pw, &mut init),
            _ => 0,
        };
        let task = Task {
            id,
            generation: g,
            index: i,
            parent: parent.map(|p| p.0.id.clone()),
            spec: spec.clone(),
            seed,
            inherited_blocks,
            measured,
        };
        let d = self.run.files().candidate(&task.id);
        init.save(&d.init())?;
        write_json(&d.task(), &task)?;
        Ok(Slot::Train(task, init))
    }

    /// Train the slots that need it with the session's executor. Inline training returns the
    /// results; workers leave them on disk (`Ok(None)`).
    #[allow(clippy::type_complexity)]
    fn train_slots(
        &mut self,
        slots: &[Slot],
    ) -> Result<Vec<Option<std::result::Result<Option<(Record, Weights)>, String>>>> {
        let mut out: Vec<Option<std::result::Result<Option<(Record, Weights)>, String>>> =
            (0..slots.len()).map(|_| None).collect();
        let todo: Vec<(usize, &Task, &Weights)> = slots
            .iter()
            .enumerate()
            .filter_map(|(k, s)| match s {
                Slot::Train(t, w) => Some((k, t, w)),
                _ => None,
            })
            .collect();
        if todo.is_empty() {
            return Ok(out);
        }
        let executor = self.executor.clone();
        let evolution_deadline = self.evolution_deadline()?;
        let stop = move || evolution_deadline.is_some_and(|d| Instant::now() >= d);
        if executor == Executor::Inline {
            for (k, task, init) in todo {
                if stop() {
                    break;
                }
                self.run
                    .observer()
                    .task(&format!("{} {}", task.id, task.spec.summary()));
                let done = run_task(self.run, &self.train_set, &self.folds, task, init)?;
                out[k] = Some(Ok(Some(done)));
            }
            return Ok(out);
        }
        let tasks: Vec<&Task> = todo.iter().map(|(_, t, _)| *t).collect();
        let observer = self.run.observer();
        observer.task(&format!(
            "{} candidates in {}",
            tasks.len(),
            match &executor {
                Executor::Local { jobs } => format!("{jobs} local workers"),
                _ => "a Slurm job array".to_string(),
            }
        ));
        let (mut finished, all) = (0u64, tasks.len() as u64);
        observer.steps(finished, all);
        let mut tick = || {
            finished += 1;
            observer.steps(finished, all);
        };
        let outcomes = match &executor {
            Executor::Local { jobs } => run_local(self.run, *jobs, &tasks, &stop, &mut tick)?,
            Executor::Slurm(o) => run_slurm(self.run, o, &tasks, &stop, &mut tick)?,
            Executor::Inline => unreachable!("handled above"),
        };
        for ((k, _, _), o) in todo.iter().zip(outcomes) {
            out[*k] = o.map(|r| r.map(|()| None));
        }
        Ok(out)
    }

    /// Book a freshly trained candidate: event, log line, count.
    fn trained_one(&mut self, (rec, w): (Record, Weights)) -> Result<(Record, Weights)> {
        self.run
            .event_once(serde_json::json!({"event": "candidate", "record": &rec}))?;
        self.run.observer().candidate_done();
        self.trained += 1;
        self.run.log(&format!(
            "{}  {}  params {}  flops {}  ram {} B  flash {} B{}  val {}  ({:.1} s)",
            rec.id,
            rec.summary,
            rec.params,
            rec.flops,
            rec.ram_bytes,
            rec.flash_bytes,
            rec.measured.map_or(String::new(), |m| format!(
                " (ELF: ram {} B, flash {} B)",
                m.ram_bytes, m.flash_bytes
            )),
            rec.val.brief(),
            rec.train_seconds
        ))?;
        Ok((rec, w))
    }

    /// Record a candidate whose training failed twice: kept in the run with its reason.
    fn failed_one(
        &mut self,
        task: &Task,
        init: Weights,
        reason: String,
        c: &Cost,
    ) -> Result<(Record, Weights)> {
        let rec = failed_record(self.run, task, reason)?;
        self.run.save_candidate(&rec, &init, c)?;
        self.run
            .event_once(serde_json::json!({"event": "candidate", "record": &rec}))?;
        self.run.observer().candidate_done();
        self.run.log(&format!(
            "{}  {}  FAILED: {}",
            rec.id,
            rec.summary,
            rec.failed.as_deref().unwrap_or("?")
        ))?;
        Ok((rec, init))
    }

    /// Record child `index` of generation `g` as the same architecture as the earlier candidate
    /// `earlier`: its trained weights and validation result are taken over, nothing is trained.
    fn reuse(
        &mut self,
        earlier: &str,
        g: usize,
        index: usize,
        parent: Option<&(Record, Weights)>,
        c: &Cost,
    ) -> Result<(Record, Weights)> {
        let (orig, w) = self.run.load_candidate(earlier).with_context(|| {
            format!(
                "candidate {earlier} is missing from {}",
                self.run.dir.display()
            )
        })?;
        let rec = Record {
            id: candidate_id(g, index),
            generation: g,
            index,
            parent: parent.map(|p| p.0.id.clone()),
            duplicate_of: Some(orig.duplicate_of.clone().unwrap_or(orig.id.clone())),
            train_seconds: 0.0,
            inherited_blocks: 0,
            ..orig
        };
        self.run.save_candidate(&rec, &w, c)?;
        self.run
            .event_once(serde_json::json!({"event": "candidate", "record": &rec}))?;
        self.run.observer().candidate_done();
        self.run.log(&format!(
            "{}  {}  same architecture as {}: its result is reused, nothing trained",
            rec.id,
            rec.summary,
            rec.duplicate_of.as_deref().unwrap_or("?")
        ))?;
        Ok((rec, w))
    }

    /// When the search's share of the time budget ends, if there is one: the budget less
    /// what the caller needs afterwards for a run of `candidates` candidates (the report).
    pub(crate) fn deadline(&self, candidates: usize) -> Option<Instant> {
        let after = self.reserve_after.map_or(Duration::ZERO, |f| f(candidates));
        self.time_budget.map(|budget| {
            (self.started + budget)
                .checked_sub(after)
                .unwrap_or(self.started)
                .max(self.started)
        })
    }

    /// The search's share of the time budget is spent.
    pub(crate) fn out_of_time(&self, candidates: usize) -> bool {
        self.deadline(candidates)
            .is_some_and(|d| Instant::now() >= d)
    }

    /// When the evolution must stop starting trainings: the end of the search's share of the
    /// time budget less the estimated final training of the current finalists.
    pub(crate) fn evolution_deadline(&self) -> Result<Option<Instant>> {
        if self.time_budget.is_none() {
            return Ok(None);
        }
        let records = self.run.records()?;
        // The generation about to run adds its children to what the report will draw.
        let Some(end) = self.deadline(records.len() + self.run.config.children) else {
            return Ok(None);
        };
        let cfg = &self.run.config;
        let reserve: f64 = finalists(&records, cfg.final_top)
            .into_iter()
            .map(|r| final_seconds_estimate(r, cfg))
            .sum();
        let reserve = Duration::from_secs_f64(reserve.max(0.0));
        Ok(Some(end.checked_sub(reserve).unwrap_or(self.started)))
    }

    pub(crate) fn consider_best(&mut self, rec: &Record, w: &Weights, c: &Cost) -> Result<()> {
        if rec.failed.is_some() {
            return Ok(());
        }
        pareto::update(self.run, rec, c)?;
        let better = self.best.as_ref().is_none_or(|(b, _)| rec.score > b.score);
        if better {
            self.run.save_best(rec, w, c)?;
            self.best = Some((rec.clone(), w.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The caller's reserve comes out of the time budget: a reserve as long as the budget
    /// leaves the search no time to start a training, so nothing is trained and the run says
    /// the budget ended it; the reserve grows with the candidates it is given.
    #[test]
    fn the_callers_reserve_comes_out_of_the_time_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = crate::cli::search::default_config();
        cfg.generations = 100_000_000;
        use crate::search::rundir::{DirKind, OutDir};
        let out = OutDir::claim(&tmp.path().join("run"), DirKind::Search, false).unwrap();
        let run = Run::create(out, cfg).unwrap();
        let opts = SessionOptions {
            time_budget: Some(Duration::from_secs(3600)),
            reserve_after: Some(|n| Duration::from_secs(3600 + n as u64)),
            ..SessionOptions::default()
        };
        let e = format!("{:#}", search(&run, &opts).unwrap_err());
        assert!(e.contains("time budget ended the run"), "{e}");
        assert!(run.records().unwrap().is_empty(), "a candidate was trained");
        // The deadline itself: the budget's end without a reserve, less the reserve for the
        // candidates given, never before the start.
        let session = |reserve_after| SearchSession {
            run: &run,
            train_set: crate::data::synthetic(8, 16, 2, 1),
            folds: Vec::new(),
            started: Instant::now(),
            time_budget: Some(Duration::from_secs(60)),
            trained: 0,
            best: None,
            seen: HashMap::new(),
            executor: Executor::Inline,
            evolution_cut: false,
            reserve_after,
        };
        let free = session(None);
        assert!(!free.out_of_time(1_000_000));
        assert_eq!(
            free.deadline(0),
            Some(free.started + Duration::from_secs(60))
        );
        let reserved = session(Some(|n| Duration::from_millis(10 * n as u64)));
        assert_eq!(
            reserved.deadline(1000),
            Some(reserved.started + Duration::from_secs(50))
        );
        assert_eq!(reserved.deadline(10_000), Some(reserved.started));
        assert!(reserved.out_of_time(10_000));
    }

    /// A configuration (an edited `config.json`) whose candidates cannot be counted is refused
    /// up front; 10⁸ generations are a valid, if long, run.
    #[test]
    fn generations_times_children_must_fit() {
        let mut cfg = crate::cli::search::default_config();
        cfg.generations = 100_000_000;
        cfg.validate().unwrap();
        cfg.generations = usize::MAX / 2;
        let e = format!("{:#}", cfg.validate().unwrap_err());
        assert!(e.contains("more candidates than can be counted"), "{e}");
    }
}
