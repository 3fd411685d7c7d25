//! Search: the seed's evolutionary algorithm over [`NetSpec`]s under a target's budgets,
//! recorded in a resumable run directory.
//!
//! A generation derives `children` children from the parent, each by `mutations` random
//! mutations (add a block, remove one — never the first —, or change one) followed by the shape
//! corrections. A child must fit every budget by the cost model; mutation retries are bounded and
//! running out of them is an error naming the binding budget. Children are trained (proxy: one
//! stratified fold held out for validation; full: k folds) and the best by validation score
//! becomes the next parent; with elitism the parent competes, in a random walk it does not. The
//! test split is used once, for the winner, never for selection.
//!
//! Resumability: everything random is derived from the run's seed and the candidate's position
//! (generation, index), so a resumed run regenerates the same candidates; a candidate whose
//! `record.json` exists is loaded instead of retrained. Every file is written atomically.
//!
//! Time budget: the evolution stops starting candidates once the time left is the estimated
//! final training of the best candidates so far; they are then trained and delivered, so a
//! budgeted run ends with a tested model. Both leave the caller's own reserve free
//! ([`SessionOptions::reserve_after`]: `nas search` writes the report in it). Resuming continues
//! the evolution where it stopped.
//!
//! Run directory layout:
//! ```text
//! config.json                  the configuration the run was started with
//! log.txt                      human log
//! events.jsonl                 one JSON event per line (candidate results, generations, end)
//! candidates/gGGG-cCC/         spec.json, cost.json, record.json, weights.safetensors
//! best/                        the best model so far: spec.json, weights.safetensors,
//!                              record.json, cost.json (and test.json at the end)
//! summary.json                 written when the search completes
//! data.json                    the fingerprint of the data the run was created on
//! .lock                        held by the process writing the run (see `lock`)
//! ```
//!
//! [`layout::Layout`] owns these names.

mod claim;
mod evolve;
pub mod layout;
mod lock;
mod observer;
pub mod pareto;
pub mod rundir;

pub use crate::data::{load_data, DataSource};
pub use evolve::{
    feasible_child, feasible_child_counted, inherit, initial_parent, measure, mutate, ElfCheck,
    Rejections,
};
use layout::Layout;
pub use observer::{Observer, Silent};
pub use rundir::{candidate_id, open_run, Record, Run, RunSummary};

use crate::data::{self, Dataset, Splits};
use crate::metrics::Metrics;
use crate::net::cost::{self, Cost};
use crate::net::plan;
use crate::net::{Block, InputStage, NetSpec, Padding, Pool, PoolKind, SearchSpace};
use crate::target::{Limits, Target};
use crate::train::{self, TrainConfig};
use crate::util::{read_json, write_atomic, write_json};
use crate::weights::Weights;
use anyhow::{bail, ensure, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod candidate;
mod config;
mod deliver;
mod executor;
mod task;

use candidate::*;
pub use config::*;
use deliver::final_seconds_estimate;
pub use deliver::{
    epoch_line, finalists, train_final, train_spec, Delivered, FinalRecord, TrainSummary,
};
use executor::{run_local, run_slurm};
pub use executor::{task_from_list, Executor, SlurmOptions};
use task::{failed_record, run_task};
pub use task::{work, Task, FAIL_ENV};

/// How one session of a run proceeds (not part of the run's identity: a resumed run may use
/// other settings).
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub resumed: bool,
    /// Wall time for the session, final training included: the evolution stops early enough
    /// to leave the finalists' estimated final training.
    pub time_budget: Option<Duration>,
    pub executor: Executor,
    /// Time the caller needs after the search, within the time budget, given the candidates
    /// the run then holds (`nas search` writes the report): the evolution and the final
    /// training leave it free.
    pub reserve_after: Option<fn(usize) -> Duration>,
}
pub use pareto::Objective;

/// Run (or continue) the search of an open run directory.
pub fn search(run: &Run, opts: &SessionOptions) -> Result<RunSummary> {
    ensure!(
        run.locked(),
        "{} is not opened for writing (Run::create or Run::resume)",
        run.dir.display()
    );
    let cfg = &run.config;
    let splits = load_data(&cfg.data, cfg.seed)?;
    run.check_data(&splits)?;
    announce(run, &splits, opts.resumed)?;
    let (classes, input_len) = (splits.train.classes, splits.train.len);
    let folds = data::stratified_kfold(&splits.train.labels, classes, cfg.folds, cfg.seed)?;
    let total = (1 + cfg.generations * cfg.children) as u64;
    run.observer().start(total);
    let mut s = SearchSession {
        run,
        train_set: splits.train.clone(),
        folds,
        started: Instant::now(),
        time_budget: opts.time_budget,
        trained: 0,
        best: None,
        seen: HashMap::new(),
        executor: opts.executor.clone(),
        evolution_cut: false,
        reserve_after: opts.reserve_after,
    };

    let result = session(&mut s, &splits, input_len, classes);
    // However the session ends (a closed stdout included), its progress display is cleared.
    run.observer().finish();
    result
}

/// The session after its setup: the evolution, the final training, the delivery.
fn session(
    s: &mut SearchSession,
    splits: &Splits,
    input_len: usize,
    classes: usize,
) -> Result<RunSummary> {
    if !evolve(s, input_len, classes)? {
        if s.best.is_none() {
            return nothing_finished(s);
        }
        cut_short(s)?;
        s.evolution_cut = true;
    }
    let delivered = if s.run.config.final_top > 0 {
        s.deliver()?
    } else {
        None
    };
    s.run.observer().finish();
    finish(s, splits, delivered)
}

/// The log lines that open a session: the data and the budgets.
fn announce(run: &Run, splits: &Splits, resumed: bool) -> Result<()> {
    let cfg = &run.config;
    if splits.synthetic {
        run.log(
            "NOTE: no --data given: searching on a SYNTHETIC dataset (deterministic byte patterns \
             shaped like sessions) to show the tool working. Pass --data DIR for real data.",
        )?;
    }
    run.log(&format!(
        "{} run {} on {}: {} train / {} test samples of {} bytes, {} classes; budgets: {}, {}, \
         max tensor ≤ {}, flash ≤ {} B, RAM ≤ {} B",
        if resumed { "resuming" } else { "starting" },
        run.dir.display(),
        cfg.target.name,
        splits.train.n(),
        splits.test.n(),
        splits.train.len,
        splits.train.classes,
        cap("params", cfg.limits.max_params),
        cap("flops", cfg.limits.max_flops),
        cfg.limits.max_tensor,
        cfg.limits.max_flash_bytes,
        cfg.limits.max_ram_bytes
    ))?;
    if let Some(r) = &splits.relabelled {
        run.log(&r.describe(splits.train.n()))?;
    }
    if let DataSource::Dir { path, .. } = &cfg.data {
        if let Some(names) = data::classes::read_class_names(path)? {
            let list: Vec<String> = names
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{i} {n}"))
                .collect();
            run.log(&format!("classes: {}", list.join(", ")))?;
        }
    }
    Ok(())
}

/// Whether `events.jsonl` already holds the `rejected` event of child `index` of generation
/// `generation` (written before the run was interrupted).
fn rejection_logged(run: &Run, generation: usize, index: usize) -> bool {
    let Ok(text) = std::fs::read_to_string(run.files().events()) else {
        return false;
    };
    text.lines()
        .filter(|l| l.contains("\"rejected\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| v["event"] == "rejected" && v["generation"] == generation && v["index"] == index)
}

/// The evolution: the initial parent, then the generations. `false` when the time budget
/// stopped it.
fn evolve(s: &mut SearchSession, input_len: usize, classes: usize) -> Result<bool> {
    let cfg = &s.run.config;
    let (spec0, cost0) = initial_parent(input_len, classes, cfg)?;
    let Some(first) = s.generation(0, &[(spec0, cost0)], None)? else {
        return Ok(false);
    };
    let mut parent = first.into_iter().next().expect("one candidate");
    if parent.0.failed.is_some() {
        bail!(
            "the initial candidate {} could not be trained: {}",
            parent.0.id,
            parent.0.failed.as_deref().unwrap_or("?")
        );
    }
    for g in 1..=cfg.generations {
        let mut rng = rng_for(cfg.seed, g, 2);
        let mut specs = Vec::with_capacity(cfg.children);
        for i in 0..cfg.children {
            let (child, c, rejected) = feasible_child_counted(&parent.0.spec, &mut rng, cfg)?;
            // A resumed run regenerates the same children: log each rejection once, so that
            // a resumed run's events equal an uninterrupted run's.
            if rejected.count > 0 && !rejection_logged(s.run, g, i) {
                s.run
                    .event(serde_json::json!({"event": "rejected", "generation": g,
                    "index": i, "count": rejected.count, "by_budget": rejected.by_budget}))?;
            }
            specs.push((child, c));
        }
        let Some(children) = s.generation(g, &specs, Some(&parent))? else {
            return Ok(false);
        };
        let Some(best_child) = children
            .iter()
            .filter(|c| c.0.failed.is_none())
            .max_by(|a, b| a.0.score.total_cmp(&b.0.score))
            .cloned()
        else {
            s.run.log(&format!(
                "generation {g}: every child failed; the parent {} stays",
                parent.0.id
            ))?;
            continue;
        };
        let next = if let Some(p) = pareto::next_parent(s.run, g, &children)? {
            p
        } else if cfg.random_walk || best_child.0.score > parent.0.score {
            best_child
        } else {
            parent.clone()
        };
        s.run.log(&format!(
            "generation {g}: parent {} → {} (score {:.4}); best so far {} ({:.4})",
            parent.0.id,
            next.0.id,
            next.0.score,
            s.best.as_ref().map_or("-", |b| b.0.id.as_str()),
            s.best.as_ref().map_or(0.0, |b| b.0.score)
        ))?;
        s.run.event_once(
            serde_json::json!({"event": "generation", "generation": g, "parent": next.0.id}),
        )?;
        parent = next;
    }
    Ok(true)
}

/// The time budget ended the evolution early: say so; the best candidates so far are delivered.
fn cut_short(s: &SearchSession) -> Result<()> {
    s.run.log(&format!(
        "time budget: the evolution stops after {:.0} s ({} candidates trained this session), \
         leaving the rest for final training. Continue the evolution later with: \
         nas search --resume {} --time-budget T",
        s.started.elapsed().as_secs_f64(),
        s.trained,
        s.run.dir.display()
    ))?;
    s.run.event(
        serde_json::json!({"event": "stopped", "reason": "time budget",
        "phase": "evolution"}),
    )
}

/// The time budget ended the session before any candidate finished: nothing to deliver. The
/// run is saved for `--resume`.
fn nothing_finished(s: &SearchSession) -> Result<RunSummary> {
    s.run.observer().finish();
    s.run.log(&format!(
        "time budget reached after {:.0} s; the run is saved. Continue with: nas search --resume {}",
        s.started.elapsed().as_secs_f64(),
        s.run.dir.display()
    ))?;
    s.run
        .event(serde_json::json!({"event": "stopped", "reason": "time budget"}))?;
    bail!("the time budget ended the run before any candidate finished")
}

/// A seed proxy budget in the start line: `name ≤ v`, or that it has none
/// (`--budgets hardware`).
fn cap(name: &str, v: Option<u64>) -> String {
    v.map_or(format!("{name}: no budget"), |v| format!("{name} ≤ {v}"))
}

fn finish(s: &SearchSession, splits: &Splits, delivered: Option<Delivered>) -> Result<RunSummary> {
    let run = s.run;
    let (rec, w, fin) = winner(s, delivered)?;
    let c = cost_of(
        &rec.spec,
        &run.config.target,
        &run.config.limits,
        run.config.dtype,
    )?;
    // The test split, once, for the delivered model only: as deployed first.
    let (test, test_float32) = test_as_deployed(&rec.spec, &w, splits, run.config.dtype)?;
    write_json(&run.files().best().test(), &test)?;
    let records = run.records()?;
    let final_seconds = fin.as_ref().map_or(0.0, |f| f.train_seconds);
    let summary = RunSummary {
        run: run.dir.clone(),
        target: run.config.target.name.clone(),
        winner: rec.clone(),
        delivered: fin.clone(),
        cost: c.clone(),
        dtype: run.config.dtype,
        test: Some(test.clone()),
        test_float32,
        candidates: records.len(),
        trained_this_session: s.trained,
        seconds_this_session: s.started.elapsed().as_secs_f64(),
        seconds_training_total: records.iter().map(|r| r.train_seconds).sum::<f64>()
            + final_seconds,
        complete: true,
        evolution_cut: s.evolution_cut,
        pareto: pareto::load(&run.dir)?.members,
    };
    write_json(&run.files().summary_json(), &summary)?;
    run.event_once(serde_json::json!({"event": "finished", "winner": rec.id}))?;
    Ok(summary)
}

/// The delivered model's test metrics as deployed, and in an int8 run its float32 metrics
/// beside them. int8: the network quantized as `nas export --run` and `nas eval --run` quantize
/// it (calibrated on the run's training split, min/max), run by the int8 host reference, which
/// the kernels equal bit for bit.
fn test_as_deployed(
    spec: &NetSpec,
    w: &Weights,
    splits: &Splits,
    dtype: crate::net::Dtype,
) -> Result<(Metrics, Option<Metrics>)> {
    let float = train::evaluate(spec, w, &splits.test)?;
    Ok(match dtype {
        crate::net::Dtype::F32 => (float, None),
        crate::net::Dtype::Int8 => {
            let q = crate::quant::ptq(
                spec,
                w,
                &splits.train,
                crate::quant::calibrate::DEFAULT_CALIBRATION_SAMPLES,
                crate::quant::CalibrationMethod::MinMax,
            )?;
            (crate::quant::evaluate_int8(&q, &splits.test), Some(float))
        }
    })
}

/// The run's model: the delivered finalist (saved under `best/` here), else the best
/// candidate of the search; with its final training's record when it had one.
fn winner(
    s: &SearchSession,
    delivered: Option<Delivered>,
) -> Result<(Record, Weights, Option<FinalRecord>)> {
    let run = s.run;
    Ok(match delivered {
        Some(d) => {
            let c = cost_of(
                &d.candidate.spec,
                &run.config.target,
                &run.config.limits,
                run.config.dtype,
            )?;
            run.save_delivered(&d, &c)?;
            (d.candidate, d.weights, Some(d.record))
        }
        None => {
            let (rec, w) = s.best.clone().context("no candidate was evaluated")?;
            (rec, w, None)
        }
    })
}
