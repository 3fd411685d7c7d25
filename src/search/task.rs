//! A candidate's training as a self-contained task: everything a worker needs is in the run
//! directory (`candidates/<id>/task.json` and `init.safetensors`, the run's `config.json` and
//! data), so the same task trains inline, in a local worker process (`--jobs N`) or on a Slurm
//! node (`nas worker --run DIR --candidate ID`), with the same result.

use super::*;

/// What training one candidate needs besides the run's configuration and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub generation: usize,
    pub index: usize,
    pub parent: Option<String>,
    pub spec: NetSpec,
    /// Seed of the initial weights, batch order and dropout.
    pub seed: u64,
    /// Leading blocks whose initial weights come from the parent (already in `init`).
    pub inherited_blocks: usize,
    /// The footprint measured from its ELF (`--verify` runs).
    pub measured: Option<ElfCheck>,
}

/// Train a task on the run's data and save the candidate (record last). The one code path of
/// every executor.
pub fn run_task(
    run: &Run,
    train_set: &Dataset,
    folds: &[Vec<usize>],
    task: &Task,
    init: &Weights,
) -> Result<(Record, Weights)> {
    let cfg = &run.config;
    let (base, c) = untrained_record(run, task)?;
    let t = train_candidate(
        &task.spec,
        init,
        train_set,
        folds,
        cfg,
        task.seed,
        run.observer(),
    )?;
    let rec = Record {
        score: cfg.metric.of(&t.val),
        val: t.val,
        epochs_run: t.epochs_run,
        best_epoch: t.best_epoch,
        train_seconds: t.seconds,
        train_samples_per_sec: t.samples_per_sec,
        history: t.history,
        ..base
    };
    run.save_candidate(&rec, &t.weights, &c)?;
    Ok((rec, t.weights))
}

/// The record of a task that could not be trained (its worker failed twice): kept in the run,
/// never chosen as parent or winner.
pub fn failed_record(run: &Run, task: &Task, reason: String) -> Result<Record> {
    let (base, _) = untrained_record(run, task)?;
    Ok(Record {
        failed: Some(reason),
        ..base
    })
}

/// A task's record before training: its identity and cost, no metrics.
fn untrained_record(run: &Run, task: &Task) -> Result<(Record, Cost)> {
    let cfg = &run.config;
    let c = cost_of(&task.spec, &cfg.target, &cfg.limits, cfg.dtype)?;
    let rec = Record {
        id: task.id.clone(),
        generation: task.generation,
        index: task.index,
        parent: task.parent.clone(),
        spec: task.spec.clone(),
        summary: task.spec.summary(),
        params: c.params,
        flops: c.flops,
        max_tensor: c.max_tensor,
        ram_bytes: c.ram_bytes,
        flash_bytes: c.flash_bytes,
        score: 0.0,
        val: crate::metrics::from_predictions(&[], &[], task.spec.classes),
        epochs_run: 0,
        best_epoch: 0,
        inherited_blocks: task.inherited_blocks,
        train_seconds: 0.0,
        train_samples_per_sec: 0.0,
        measured: task.measured,
        duplicate_of: None,
        failed: None,
        history: Vec::new(),
    };
    Ok((rec, c))
}

/// `nas worker`: train candidate `id` of the run in `dir` from its task files; `say` hears
/// what is trained.
pub fn work(dir: &Path, id: &str, say: &mut dyn FnMut(&str) -> Result<()>) -> Result<()> {
    let run = Run::open(dir)?;
    ensure!(
        rundir::is_candidate_id(id),
        "{id:?} is not a candidate id (like g003-c01)"
    );
    let d = run.files().candidate(id);
    let task: Task = read_json(&d.task())
        .with_context(|| format!("{id} has no task in {}", run.dir.display()))?;
    ensure!(
        task.id == id,
        "{} holds the task of {}",
        d.dir().display(),
        task.id
    );
    let init = Weights::load(&d.init())?;
    init.check(&task.spec)
        .with_context(|| format!("{} does not match the task's spec", d.init().display()))?;
    say(&format!(
        "nas worker: training {id}: {}",
        task.spec.summary()
    ))?;
    if let Ok(fail) = std::env::var(FAIL_ENV) {
        // Fault injection for the executors' tests: exits like a crashed worker would.
        ensure!(
            !fail.split(',').any(|f| f == id),
            "{FAIL_ENV} names {id}: failing on purpose"
        );
    }
    let cfg = &run.config;
    let splits = load_data(&cfg.data, cfg.seed)?;
    // The data the driver checked when it started: a worker started later (a Slurm array
    // that outlived its driver) must not train on data that changed since.
    run.check_data(&splits)?;
    let folds = data::stratified_kfold(
        &splits.train.labels,
        splits.train.classes,
        cfg.folds,
        cfg.seed,
    )?;
    run_task(&run, &splits.train, &folds, &task, &init)?;
    Ok(())
}

/// Comma-separated candidate ids a worker refuses to train (tests of retries and failures).
pub const FAIL_ENV: &str = "NAS_WORKER_FAIL";
