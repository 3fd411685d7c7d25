//! The report's data, read from a run directory. Everything plotted comes from here, and
//! `nas report --format json` prints exactly this.

use crate::metrics::Metrics;
use crate::net::cost::Cost;
use crate::net::NetSpec;
use crate::search::layout::Layout;
use crate::search::{self, ElfCheck, Record, RunSummary};
use crate::target::Limits;
use crate::util::read_json;
use crate::weights::Weights;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file `nas verify --run DIR` saves in the run directory.
pub use crate::search::layout::VERIFY as VERIFY_FILE;

/// Everything the report shows about one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run: PathBuf,
    pub tool_version: String,
    pub target: TargetInfo,
    pub limits: Limits,
    /// The validation figure that selected parents and the winner.
    pub metric: String,
    /// Where the data came from, in words.
    pub data: String,
    pub synthetic_data: bool,
    /// Class names from the dataset's `classes.json`, when it has one.
    pub class_names: Option<Vec<String>>,
    pub generations: usize,
    pub children: usize,
    pub random_walk: bool,
    /// Every finished candidate, in the order the search made them (generation, index).
    pub candidates: Vec<Candidate>,
    /// Candidates whose training failed (their worker failed twice): `(id, reason)`. They have
    /// no score and are not plotted.
    pub failed: Vec<(String, String)>,
    /// The parent of each generation, from generation 1 on (the initial parent is `g000-c00`).
    pub parents: Vec<ParentStep>,
    /// Children the budgets rejected before training, per generation (from `events.jsonl`;
    /// runs written before rejections were logged have none).
    pub rejected: Vec<GenerationRejections>,
    /// Candidates on the Pareto front of score against each resource (ids, cheapest first).
    pub pareto: ParetoFronts,
    /// The run's own front over all objectives at once (`pareto.json`), ids.
    pub run_pareto: Vec<String>,
    /// How the latency axis is computed.
    pub latency: LatencyModel,
    pub winner: Option<Winner>,
    /// The run's summary, when the search completed.
    pub complete: bool,
    pub seconds_training_total: f64,
    /// `nas verify`'s measurement of the winner, when saved in the run and of the winner.
    pub verify: Option<SavedVerify>,
    /// Why the run's `verify.json` is not shown as the winner's (it measured another
    /// candidate, an earlier winner, or on another target).
    pub verify_note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub name: String,
    pub description: String,
    pub core: String,
    pub clock_hz: u64,
    pub chip_flash_bytes: u64,
    pub chip_ram_bytes: u64,
    /// Flash of the generated kernel's code per layer (the target's code-size model).
    pub code_per_layer_bytes: u64,
    pub code_base_bytes: u64,
}

/// One finished candidate.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub id: String,
    pub generation: usize,
    pub index: usize,
    pub parent: Option<String>,
    pub summary: String,
    /// The selection metric on validation.
    pub score: f64,
    pub val_accuracy: f64,
    pub val_weighted_f1: f64,
    pub params: u64,
    pub flops: u64,
    /// MACs the generated kernel executes (from the candidate's `cost.json`).
    pub executed_macs: Option<u64>,
    pub ram_bytes: u64,
    pub flash_bytes: u64,
    /// Estimated latency on the target, see [`LatencyModel`].
    pub latency_ms: Option<f64>,
    pub measured: Option<ElfCheck>,
    /// Set when the architecture was evaluated before: its result was reused.
    pub duplicate_of: Option<String>,
    pub epochs_run: usize,
    pub train_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParentStep {
    pub generation: usize,
    pub parent: String,
    pub score: f64,
}

/// One generation's [`search::Rejections`], summed over its children.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenerationRejections {
    pub generation: usize,
    #[serde(flatten)]
    pub rejected: search::Rejections,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ParetoFronts {
    pub flash: Vec<String>,
    pub ram: Vec<String>,
    pub latency: Vec<String>,
}

/// Latency is not measured per candidate; it is estimated from the executed MACs with the
/// instructions per MAC that `nas verify` measured for the winner on the emulated core, at the
/// target's clock and one instruction per cycle. Without a verify report the axis is the
/// executed MACs themselves.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyModel {
    /// The candidates' `cost.json` carry the target's latency estimate.
    pub modelled: bool,
    pub instructions_per_mac: Option<f64>,
    pub clock_hz: u64,
    pub description: String,
}

/// The winner: its record, cost, test metrics and training history.
#[derive(Debug, Clone, Serialize)]
pub struct Winner {
    /// The search candidate (its proxy training).
    pub record: Record,
    /// The delivered model's final training, when the run gave it one (`best/final.json`).
    pub final_training: Option<search::FinalRecord>,
    pub cost: Cost,
    /// Metrics on the test split as deployed (int8 in an int8 run; used once, at the end of a
    /// complete run).
    pub test: Option<Metrics>,
    /// In an int8 run, the float32 network's test metrics, for comparison.
    pub test_float32: Option<Metrics>,
    pub layers: Vec<LayerRow>,
    /// The arena's buffers over the executed layer sequence.
    pub arena: Vec<ArenaUse>,
    pub arena_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    pub name: String,
    pub desc: String,
    pub executed_macs: u64,
    pub params: u64,
    /// The layer's constants in flash, in the deployed dtype ([`LayerCost::flash_bytes`]:
    /// float32 weights, or the int8 layout); the layers add up to the cost's `weights_bytes`.
    ///
    /// [`LayerCost::flash_bytes`]: crate::net::cost::LayerCost::flash_bytes
    pub flash_bytes: u64,
}

/// The arena regions layer `layer` reads and writes (`None`: the caller's input or logits).
#[derive(Debug, Clone, Serialize)]
pub struct ArenaUse {
    pub layer: String,
    pub input: Option<(u64, u64)>,
    pub output: Option<(u64, u64)>,
}

/// `verify.json` in a run: what `nas verify --run DIR` found for each kernel it built
/// (written by [`save_verify`]; the report reads the fields below and ignores the rest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedVerify {
    /// The model measured (absent in files of older versions, which did not say).
    #[serde(default)]
    pub model: Option<VerifiedModel>,
    pub kernels: Vec<SavedKernel>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Which model a `verify.json` measured: the report shows its footprint as the winner's only
/// when it is the winner's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedModel {
    /// The candidate asked for (`--candidate ID`); `None`: the run's delivered model.
    pub candidate: Option<String>,
    /// The network, in words.
    pub summary: String,
    /// Fingerprints of the network and of its weights (a resumed run may deliver another
    /// model in `best/` later).
    pub spec_hash: String,
    pub weights_hash: String,
}

impl VerifiedModel {
    pub fn of(candidate: Option<&str>, spec: &NetSpec, weights: &Weights) -> VerifiedModel {
        VerifiedModel {
            candidate: candidate.map(str::to_string),
            summary: spec.summary(),
            spec_hash: spec_hash(spec),
            weights_hash: weights_hash(weights),
        }
    }

    /// The same network with the same weights.
    fn same_model(&self, other: &VerifiedModel) -> bool {
        self.spec_hash == other.spec_hash && self.weights_hash == other.weights_hash
    }
}

fn spec_hash(spec: &NetSpec) -> String {
    search::layout::Fnv::default()
        .write(spec.to_json().as_bytes())
        .hex()
}

/// Names, shapes and every value's bits, in name order.
fn weights_hash(w: &Weights) -> String {
    let mut h = search::layout::Fnv::default();
    for (name, t) in &w.tensors {
        h.write_u64(name.len() as u64).write(name.as_bytes());
        h.write_u64(t.shape.len() as u64);
        for d in &t.shape {
            h.write_u64(*d as u64);
        }
        for v in &t.data {
            h.write(&v.to_bits().to_le_bytes());
        }
    }
    h.hex()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedKernel {
    pub lang: String,
    pub target: String,
    pub estimate: SavedSizes,
    pub measured: SavedSizes,
    pub limits: SavedLimits,
    pub fits: bool,
    pub ok: bool,
    #[serde(default)]
    pub emulation: Option<SavedEmulation>,
}

/// Save `nas verify`'s findings on `model` in the run directory, for the report.
pub fn save_verify(
    run_dir: &Path,
    model: &VerifiedModel,
    v: &crate::firmware::Verification,
) -> Result<()> {
    crate::util::write_json(
        &Layout::new(run_dir).verify(),
        &serde_json::json!({ "model": model, "kernels": v.reports(), "notes": v.notes }),
    )
}

/// `verify.json` when it measured the run's winner on the run's target, else why not.
fn winner_verify(
    dir: &Path,
    target: &str,
    winner: Option<&Winner>,
) -> Result<(Option<SavedVerify>, Option<String>)> {
    let Some(v) = read_optional::<SavedVerify>(&Layout::new(dir).verify())? else {
        return Ok((None, None));
    };
    let again = format!("`nas verify --run {}` measures the winner", dir.display());
    let Some(w) = winner else {
        return Ok((
            None,
            Some("verify.json is not shown: the run has no winner yet to compare it with".into()),
        ));
    };
    let Some(m) = &v.model else {
        return Ok((
            None,
            Some(format!(
                "verify.json does not say which model it measured (an older nas verify wrote \
                 it), so it is not shown as the winner's footprint; {again}"
            )),
        ));
    };
    let best = Layout::new(dir).best();
    let spec: NetSpec = read_json(&best.spec())?;
    let weights = Weights::load(&best.weights())?;
    let delivered = VerifiedModel::of(None, &spec, &weights);
    if !m.same_model(&delivered) {
        let what = match &m.candidate {
            Some(id) => format!("candidate {id} ({})", m.summary),
            None => format!("an earlier delivered model ({})", m.summary),
        };
        return Ok((
            None,
            Some(format!(
                "verify.json measured {what}, not the winner {} ({}): its footprint is not \
                 shown as the winner's; {again}",
                w.record.id, delivered.summary
            )),
        ));
    }
    if let Some(k) = v.kernels.iter().find(|k| k.target != target) {
        return Ok((
            None,
            Some(format!(
                "verify.json measured the winner on {}, not on the run's target {target}: not \
                 shown; {again}",
                k.target
            )),
        ));
    }
    Ok((Some(v), None))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSizes {
    pub flash_bytes: u64,
    pub ram_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedLimits {
    pub max_flash_bytes: u64,
    pub max_ram_bytes: u64,
    pub chip_flash_bytes: u64,
    pub chip_ram_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedEmulation {
    pub samples: usize,
    pub bit_exact: usize,
    pub instructions_per_inference: u64,
    pub instructions_per_mac: f64,
}

/// Read everything the report needs from a run directory.
pub fn load(dir: &Path) -> Result<RunReport> {
    let run = search::open_run(dir)?;
    let cfg = &run.config;
    let mut records = read_records(dir)?;
    records.sort_by_key(|(r, _)| (r.generation, r.index));
    let failed: Vec<(String, String)> = records
        .iter()
        .filter_map(|(r, _)| Some((r.id.clone(), r.failed.clone()?)))
        .collect();
    records.retain(|(r, _)| r.failed.is_none());

    let mut winner = load_winner(dir, &cfg.target)?;
    let (verify, verify_note) = winner_verify(dir, &cfg.target.name, winner.as_ref())?;
    let latency = latency_model(&records, verify.as_ref(), cfg.target.clock_hz.max(1));
    let candidates: Vec<Candidate> = records
        .iter()
        .map(|(r, c)| candidate(r, c.as_ref(), &latency))
        .collect();
    let parents = parent_steps(&candidates);
    let rejected = read_rejections(dir)?;
    let pareto = ParetoFronts {
        flash: pareto_front(&candidates, |c| Some(c.flash_bytes as f64)),
        ram: pareto_front(&candidates, |c| Some(c.ram_bytes as f64)),
        latency: pareto_front(&candidates, latency_value),
    };

    let summary: Option<RunSummary> = read_optional(&Layout::new(dir).summary_json())?;
    if let (Some(w), Some(s)) = (winner.as_mut(), &summary) {
        w.test_float32.clone_from(&s.test_float32);
    }
    let (data, synthetic, class_names) = describe_data(&cfg.data)?;
    Ok(RunReport {
        run: dir.to_path_buf(),
        tool_version: cfg.tool_version.clone(),
        target: target_info(&cfg.target),
        limits: cfg.limits,
        metric: serde_json::to_value(cfg.metric)?
            .as_str()
            .unwrap_or("score")
            .to_string(),
        data,
        synthetic_data: synthetic,
        class_names,
        generations: cfg.generations,
        children: cfg.children,
        random_walk: cfg.random_walk,
        seconds_training_total: candidates.iter().map(|c| c.train_seconds).sum(),
        complete: summary.as_ref().is_some_and(|s| s.complete),
        candidates,
        failed,
        parents,
        rejected,
        pareto,
        run_pareto: search::pareto::load(dir)?
            .members
            .into_iter()
            .map(|p| p.id)
            .collect(),
        latency,
        winner,
        verify,
        verify_note,
    })
}

/// The JSON file at `path`, or `None` when there is no such file.
fn read_optional<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if path.is_file() {
        Ok(Some(read_json(path)?))
    } else {
        Ok(None)
    }
}

/// The record of every candidate that finished (failed ones included), with its `cost.json`
/// when it has one, in directory order.
fn read_records(dir: &Path) -> Result<Vec<(Record, Option<Cost>)>> {
    let cand_dir = Layout::new(dir).candidates();
    let mut records = Vec::new();
    if !cand_dir.is_dir() {
        return Ok(records);
    }
    let entries = std::fs::read_dir(&cand_dir)
        .with_context(|| format!("cannot list {}", cand_dir.display()))?;
    for e in entries {
        let path = e
            .with_context(|| format!("cannot list {}", cand_dir.display()))?
            .path();
        let rec_path = path.join(search::layout::RECORD);
        // A candidate without its record was interrupted while training: not finished.
        if !rec_path.is_file() {
            continue;
        }
        let rec: Record = read_json(&rec_path)?;
        let cost = read_optional::<Cost>(&path.join(search::layout::COST))?;
        records.push((rec, cost));
    }
    Ok(records)
}

/// How the latency axis is computed: from the candidates' latency estimates when their costs
/// carry one, else from the instructions per MAC that verify measured, else not at all.
fn latency_model(
    records: &[(Record, Option<Cost>)],
    verify: Option<&SavedVerify>,
    clock: u64,
) -> LatencyModel {
    let ipm = verify
        .and_then(|v| v.kernels.first())
        .and_then(|k| k.emulation.as_ref())
        .map(|e| e.instructions_per_mac)
        .filter(|x| x.is_finite() && *x > 0.0);
    let modelled = records
        .iter()
        .any(|(_, c)| c.as_ref().is_some_and(|c| c.latency_ms.is_some()));
    LatencyModel {
        instructions_per_mac: ipm,
        clock_hz: clock,
        modelled,
        description: match ipm {
            _ if modelled => format!(
                "estimated by the target's latency model (calibrated against nas verify's \
                 instruction counts under QEMU) at {} MHz",
                clock / 1_000_000
            ),
            Some(x) => format!(
                "estimated: executed MACs × {x:.2} instructions/MAC (measured by nas verify on the \
                 winner under QEMU) at {} MHz, one instruction per cycle",
                clock / 1_000_000
            ),
            None => "executed MACs (no verify report in the run to turn them into time: \
                     run `nas verify --run DIR`)"
                .to_string(),
        },
    }
}

/// A finished candidate as the report shows it.
fn candidate(r: &Record, c: Option<&Cost>, latency: &LatencyModel) -> Candidate {
    let executed_macs = c.map(|c| c.executed_macs);
    Candidate {
        id: r.id.clone(),
        generation: r.generation,
        index: r.index,
        parent: r.parent.clone(),
        summary: r.summary.clone(),
        score: r.score,
        val_accuracy: r.val.accuracy,
        val_weighted_f1: r.val.weighted_f1,
        params: r.params,
        flops: r.flops,
        executed_macs,
        ram_bytes: r.ram_bytes,
        flash_bytes: r.flash_bytes,
        // The target's calibrated latency model (in cost.json) first; else the MACs at the
        // instructions per MAC verify measured for the winner.
        latency_ms: c.and_then(|c| c.latency_ms).or(
            match (executed_macs, latency.instructions_per_mac) {
                (Some(m), Some(x)) => Some(m as f64 * x / latency.clock_hz as f64 * 1e3),
                _ => None,
            },
        ),
        measured: r.measured,
        duplicate_of: r.duplicate_of.clone(),
        epochs_run: r.epochs_run,
        train_seconds: r.train_seconds,
    }
}

/// The parent of each generation: the `parent` of its children.
fn parent_steps(candidates: &[Candidate]) -> Vec<ParentStep> {
    let mut parents: Vec<ParentStep> = Vec::new();
    for c in candidates {
        let Some(p) = &c.parent else { continue };
        if parents.last().is_some_and(|s| s.generation == c.generation) {
            continue;
        }
        if let Some(pc) = candidates.iter().find(|x| &x.id == p) {
            parents.push(ParentStep {
                generation: c.generation,
                parent: p.clone(),
                score: pc.score,
            });
        }
    }
    parents
}

/// Where the data came from, in words; whether it is the synthetic set; the class names of
/// a dataset directory that has them.
fn describe_data(data: &search::DataSource) -> Result<(String, bool, Option<Vec<String>>)> {
    Ok(match data {
        search::DataSource::Synthetic { seed } => {
            (format!("synthetic demo dataset (seed {seed})"), true, None)
        }
        search::DataSource::Dir {
            path,
            limit_per_class,
            relabel_conflicts,
        } => (
            format!(
                "{}{}{}",
                path.display(),
                limit_per_class.map_or(String::new(), |n| format!(
                    " (at most {n} train samples per class)"
                )),
                if *relabel_conflicts {
                    " (conflicting training labels relabelled to their majority)"
                } else {
                    ""
                }
            ),
            false,
            crate::data::classes::read_class_names(path)?,
        ),
    })
}

fn target_info(t: &crate::target::Target) -> TargetInfo {
    TargetInfo {
        name: t.name.clone(),
        description: t.description.clone(),
        core: t.core.clone(),
        clock_hz: t.clock_hz,
        chip_flash_bytes: t.memory.flash_bytes,
        chip_ram_bytes: t.memory.ram_bytes,
        code_per_layer_bytes: t.code_size.per_layer_bytes,
        code_base_bytes: t.code_size.base_bytes,
    }
}

/// The value on the latency axis: estimated milliseconds, else executed MACs.
pub fn latency_value(c: &Candidate) -> Option<f64> {
    c.latency_ms.or(c.executed_macs.map(|m| m as f64))
}

/// Ids of the candidates no other candidate beats on both score (higher) and `cost` (lower),
/// cheapest first. Reused candidates repeat an earlier point and are left out.
pub fn pareto_front(cands: &[Candidate], cost: impl Fn(&Candidate) -> Option<f64>) -> Vec<String> {
    let mut pts: Vec<(f64, f64, &str)> = cands
        .iter()
        .filter(|c| c.duplicate_of.is_none())
        .filter_map(|c| Some((cost(c)?, c.score, c.id.as_str())))
        .filter(|(x, y, _)| x.is_finite() && y.is_finite())
        .collect();
    // Cheapest first; among equal costs the best score first.
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut front = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for (_, y, id) in pts {
        if y > best {
            best = y;
            front.push(id.to_string());
        }
    }
    front
}

/// `events.jsonl`'s `rejected` events, summed per generation. Torn lines are skipped (a run
/// killed mid-append leaves one).
fn read_rejections(dir: &Path) -> Result<Vec<GenerationRejections>> {
    let path = Layout::new(dir).events();
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    // One event per (generation, index): a resumed run logs its regenerated children again.
    let mut per_child: std::collections::BTreeMap<(usize, usize), GenerationRejections> =
        Default::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.get("event").and_then(|e| e.as_str()) != Some("rejected") {
            continue;
        }
        let index = v.get("index").and_then(|i| i.as_u64()).unwrap_or(0) as usize;
        let Ok(r) = serde_json::from_value::<GenerationRejections>(v) else {
            continue;
        };
        per_child.insert((r.generation, index), r);
    }
    let mut out: std::collections::BTreeMap<usize, GenerationRejections> = Default::default();
    for r in per_child.into_values() {
        let e = out
            .entry(r.generation)
            .or_insert_with(|| GenerationRejections {
                generation: r.generation,
                ..Default::default()
            });
        e.rejected.count += r.rejected.count;
        for (k, n) in r.rejected.by_budget {
            *e.rejected.by_budget.entry(k).or_default() += n;
        }
    }
    Ok(out.into_values().collect())
}

fn load_winner(dir: &Path, target: &crate::target::Target) -> Result<Option<Winner>> {
    let best = Layout::new(dir).best();
    let rec_path = best.record();
    if !rec_path.is_file() {
        return Ok(None);
    }
    let record: Record = read_json(&rec_path)?;
    let mut cost: Cost = read_json(&best.cost())?;
    if cost.weights_bytes > 0 && cost.layers.iter().all(|l| l.flash_bytes == 0) {
        // A cost.json from before per-layer flash was recorded: cost the spec again, in the
        // dtype and under the limits it was costed for, for the layers' figures.
        let again = search::cost_of(&record.spec, target, &cost.limits, cost.dtype)?;
        if again.layers.len() == cost.layers.len() {
            for (l, a) in cost.layers.iter_mut().zip(&again.layers) {
                l.flash_bytes = a.flash_bytes;
            }
        }
    }
    let final_training = read_optional(&best.final_record())?;
    let test: Option<Metrics> = read_optional(&best.test())?;
    let layers = cost
        .layers
        .iter()
        .map(|l| LayerRow {
            name: l.name.clone(),
            desc: l.desc.clone(),
            executed_macs: l.executed_macs,
            params: l.deployed_params,
            flash_bytes: l.flash_bytes,
        })
        .collect();
    let mut arena = Vec::new();
    let mut prev: Option<(u64, u64)> = None;
    for l in &cost.layers {
        let output = l.arena_offset.map(|o| (o as u64, l.out_bytes as u64));
        arena.push(ArenaUse {
            layer: l.name.clone(),
            input: prev,
            output,
        });
        prev = output;
    }
    Ok(Some(Winner {
        arena_bytes: cost.arena_bytes,
        record,
        final_training,
        cost,
        test,
        test_float32: None,
        layers,
        arena,
    }))
}
