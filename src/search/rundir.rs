//! The run directory: where every candidate, the best model so far and the run's log live,
//! written atomically so that an interrupted run can be resumed.

use super::*;

use std::io::{Read, Seek};

pub use super::claim::{check_run_name, is_candidate_id, DirKind, OutDir};
pub use super::layout::{
    Layout, ModelFiles, BEST_SPEC, BEST_WEIGHTS, CONFIG, FINAL_RECORD, TRAIN_CONFIG,
};
pub use super::lock::RunLock;

/// The result of one candidate, saved as `record.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub generation: usize,
    pub index: usize,
    pub parent: Option<String>,
    pub spec: NetSpec,
    pub summary: String,
    pub params: u64,
    pub flops: u64,
    pub max_tensor: u64,
    pub ram_bytes: u64,
    pub flash_bytes: u64,
    /// Validation metrics (mean over folds for full training).
    pub val: Metrics,
    pub score: f64,
    pub epochs_run: usize,
    pub best_epoch: usize,
    /// Leading blocks that started from the parent's trained weights.
    pub inherited_blocks: usize,
    pub train_seconds: f64,
    pub train_samples_per_sec: f64,
    /// Flash and RAM measured from the cross-compiled ELF (`--verify` runs).
    #[serde(default)]
    pub measured: Option<ElfCheck>,
    /// Why the candidate could not be trained (its worker failed twice); never a parent or
    /// the winner.
    #[serde(default)]
    pub failed: Option<String>,
    /// Set when this candidate's architecture was evaluated before (the first candidate with
    /// it): its result was reused and nothing was trained.
    #[serde(default)]
    pub duplicate_of: Option<String>,
    /// Per-epoch losses and validation accuracy (of the best fold for full training).
    #[serde(default)]
    pub history: Vec<train::EpochLog>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub run: PathBuf,
    pub target: String,
    /// The delivered architecture's search candidate (its proxy figures).
    pub winner: Record,
    /// Its final training (absent when the run delivers the proxy-trained candidate).
    #[serde(default)]
    pub delivered: Option<FinalRecord>,
    pub cost: Cost,
    /// The element type the model is deployed in (the run's `--dtype`): what `test` measures.
    #[serde(default)]
    pub dtype: crate::net::Dtype,
    /// The delivered model's metrics on the test split as deployed (int8 in an int8 run; used
    /// once, never for selection); absent while the run is incomplete.
    pub test: Option<Metrics>,
    /// In an int8 run, the same network's float32 metrics on the test split, for comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_float32: Option<Metrics>,
    pub candidates: usize,
    pub trained_this_session: usize,
    pub seconds_this_session: f64,
    pub seconds_training_total: f64,
    pub complete: bool,
    /// The time budget stopped the evolution before its last generation (`--resume`
    /// continues it); the best candidates so far were delivered.
    #[serde(default)]
    pub evolution_cut: bool,
    /// The run's Pareto front (see `pareto`).
    #[serde(default)]
    pub pareto: Vec<pareto::Point>,
}

pub fn candidate_id(generation: usize, index: usize) -> String {
    format!("g{generation:03}-c{index:02}")
}

// ---------------------------------------------------------------------------------------------
// The run directory
// ---------------------------------------------------------------------------------------------

/// An open run directory.
pub struct Run {
    pub dir: PathBuf,
    pub config: RunConfig,
    /// Hears the log lines and the progress (see [`Observer`]); silent unless the CLI sets one.
    observer: std::sync::Arc<dyn Observer>,
    /// Keys of the events in `events.jsonl`, read on first use.
    events: std::sync::Mutex<Option<std::collections::HashSet<String>>>,
    /// Held by a run opened for writing ([`Run::create`], [`Run::resume`]).
    lock: Option<RunLock>,
}

impl Run {
    /// Where the run's files are.
    pub fn files(&self) -> Layout {
        Layout::new(&self.dir)
    }

    /// Whether this process holds the run's lock (it was opened for writing).
    pub fn locked(&self) -> bool {
        self.lock.is_some()
    }

    /// The note to show when opening the run took over a lock left by a killed process.
    pub fn lock_note(&self) -> Option<String> {
        self.lock.as_ref().and_then(|l| l.taken_over())
    }

    /// A finished candidate's record and weights, if both were written.
    pub fn load_candidate(&self, id: &str) -> Option<(Record, Weights)> {
        let d = self.files().candidate(id);
        let rec: Record = read_json(&d.record()).ok()?;
        let w = Weights::load(&d.weights()).ok()?;
        // Weights that do not belong to the record's spec (a damaged or edited run) make the
        // candidate unfinished: it is trained again rather than indexed out of bounds.
        w.check(&rec.spec).ok()?;
        Some((rec, w))
    }

    pub fn log(&self, line: &str) -> Result<()> {
        append_line(&self.files().log(), line)?;
        self.observer.log(line)
    }

    /// Append an event to `events.jsonl`. A run killed in the middle of an append leaves a torn
    /// last line: it is cut off first (its event is written again by [`Run::event_once`]), so
    /// the file stays one JSON object per line.
    pub(super) fn event(&self, value: serde_json::Value) -> Result<()> {
        let path = self.files().events();
        self.append_event(&path, &value)
            .with_context(|| format!("cannot append an event to {}", path.display()))
    }

    /// The body of [`Run::event`].
    fn append_event(&self, path: &Path, value: &serde_json::Value) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let len = f.metadata()?.len();
        let torn = len > 0 && {
            let mut last = [0u8];
            f.seek(std::io::SeekFrom::Start(len - 1))?;
            f.read_exact(&mut last)?;
            last[0] != b'\n'
        };
        if torn {
            let mut text = Vec::new();
            f.seek(std::io::SeekFrom::Start(0))?;
            f.read_to_end(&mut text)?;
            let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            f.set_len(keep as u64)?;
        }
        let mut line = serde_json::to_string(&value)?;
        line.push('\n');
        f.write_all(line.as_bytes())?;
        f.sync_data()?;
        Ok(())
    }

    /// Append an event unless an event with the same key (see [`event_key`]) is already in
    /// `events.jsonl`: a resumed run writes the events a kill cut off, and no event twice, so
    /// the file ends up as an uninterrupted run's.
    pub(super) fn event_once(&self, value: serde_json::Value) -> Result<()> {
        let mut seen = self.events.lock().expect("events lock");
        if seen.is_none() {
            let path = self.files().events();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // A torn last line (a kill in the middle of an append) is cut off now; its event,
            // missing from the keys, is written again when the run gets there.
            let complete = match text.rfind('\n') {
                Some(i) => &text[..=i],
                None => "",
            };
            if complete.len() < text.len() {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(complete.len() as u64)?;
            }
            *seen = Some(
                complete
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter_map(|v| event_key(&v))
                    .collect(),
            );
        }
        let seen = seen.as_mut().expect("loaded above");
        match event_key(&value) {
            Some(key) if seen.contains(&key) => Ok(()),
            key => {
                self.event(value)?;
                seen.extend(key);
                Ok(())
            }
        }
    }

    pub(super) fn save_candidate(&self, rec: &Record, w: &Weights, c: &Cost) -> Result<()> {
        let d = self.files().candidate(&rec.id);
        write_json(&d.spec(), &rec.spec)?;
        write_json(&d.cost(), c)?;
        w.save(&d.weights())?;
        // The record goes last: its presence marks the candidate as complete.
        write_json(&d.record(), rec)
    }

    pub(super) fn save_best(&self, rec: &Record, w: &Weights, c: &Cost) -> Result<()> {
        let d = self.files().best();
        w.save(&d.weights())?;
        write_json(&d.spec(), &rec.spec)?;
        write_json(&d.cost(), c)?;
        write_json(&d.record(), rec)
    }

    /// Every finished candidate's record, in candidate order.
    pub fn records(&self) -> Result<Vec<Record>> {
        let dir = self.files().candidates();
        let mut v: Vec<Record> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| read_json::<Record>(&e.path().join(super::layout::RECORD)).ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    /// A finished final training of candidate `id`, if its record and weights were written.
    pub fn load_final(&self, id: &str) -> Option<(FinalRecord, Weights)> {
        let d = self.files().final_of(id);
        let rec: FinalRecord = read_json(&d.final_record()).ok()?;
        let w = Weights::load(&d.weights()).ok()?;
        w.check(&rec.spec).ok()?;
        Some((rec, w))
    }

    pub(super) fn save_final(&self, id: &str, rec: &FinalRecord, w: &Weights) -> Result<()> {
        let d = self.files().final_of(id);
        write_json(&d.spec(), &rec.spec)?;
        w.save(&d.weights())?;
        // The record goes last: its presence marks the final training as complete.
        write_json(&d.final_record(), rec)
    }

    /// Put the delivered model in `best/`: the final weights, the candidate's record and the
    /// final training's record.
    pub(super) fn save_delivered(&self, d: &Delivered, c: &Cost) -> Result<()> {
        self.save_best(&d.candidate, &d.weights, c)?;
        write_json(&self.files().best().final_record(), &d.record)
    }

    /// The best model recorded in the run: spec, weights and record.
    pub fn best(&self) -> Result<(Record, Weights)> {
        let d = self.files().best();
        let rec: Record = read_json(&d.record())
            .with_context(|| format!("{} has no best model yet", self.dir.display()))?;
        let w = Weights::load(&d.weights())?;
        w.check(&rec.spec)?;
        Ok((rec, w))
    }
}

/// What makes an event unique in `events.jsonl` (`None`: not deduplicated).
pub fn event_key(v: &serde_json::Value) -> Option<String> {
    let s = |x: &serde_json::Value| {
        x.as_str()
            .map(str::to_string)
            .or(x.as_u64().map(|n| n.to_string()))
    };
    match v.get("event")?.as_str()? {
        "candidate" => Some(format!("candidate:{}", s(&v["record"]["id"])?)),
        "generation" => Some(format!("generation:{}", s(&v["generation"])?)),
        "final" => Some(format!("final:{}", s(&v["record"]["candidate"])?)),
        // A resumed run that went further (a larger --generations) may finish with another
        // winner: that is a new event, the same winner again is not.
        "finished" => Some(format!("finished:{}", s(&v["winner"]).unwrap_or_default())),
        _ => None,
    }
}

/// How `nas train` was run, saved as `train.json` in its directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRunConfig {
    pub tool_version: String,
    pub target: Target,
    pub limits: Limits,
    pub data: DataSource,
    pub seed: u64,
    pub spec: NetSpec,
    pub train: TrainConfig,
    /// Share of the training split held out (stratified) for early stopping.
    pub val_fraction: f64,
    pub metric: Metric,
    /// Weights training started from, if not a fresh start.
    pub init: Option<PathBuf>,
    /// Quantization-aware fine-tuning epochs after the float training (0: none).
    #[serde(default)]
    pub qat_epochs: usize,
    /// The deployed element type (int8 with QAT): `export`, `verify` and `eval` default to it.
    #[serde(default)]
    pub dtype: crate::net::Dtype,
}

impl TrainRunConfig {
    pub fn validate(&self) -> Result<()> {
        self.target.check().context("invalid target profile")?;
        self.spec.validate()?;
        self.train.validate()?;
        ensure!(
            self.val_fraction.is_finite() && self.val_fraction > 0.0 && self.val_fraction < 1.0,
            "the validation fraction {} must lie in (0, 1)",
            self.val_fraction
        );
        Ok(())
    }
}

/// A `nas train` directory being written (locked while it is).
pub struct TrainDir {
    pub dir: PathBuf,
    _out: OutDir,
}

impl TrainDir {
    /// Start one in `out`, claimed for `nas train` (see [`OutDir::claim`]).
    pub fn create(mut out: OutDir, cfg: &TrainRunConfig) -> Result<TrainDir> {
        ensure!(
            out.kind == DirKind::Train,
            "{} was claimed for another command",
            out.dir.display()
        );
        write_json(&Layout::new(&out.dir).train_config(), cfg)?;
        // The directory now holds a training: it stays, whatever happens next.
        out.created.clear();
        Ok(TrainDir {
            dir: out.dir.clone(),
            _out: out,
        })
    }

    /// Where the directory's files are.
    pub fn files(&self) -> Layout {
        Layout::new(&self.dir)
    }

    pub fn log(&self, line: &str) -> Result<()> {
        append_line(&self.files().log(), line)
    }

    /// The trained model in `best/` (as a run's delivered model) and `summary.json`.
    pub fn save(&self, s: &TrainSummary, w: &Weights) -> Result<()> {
        let best = self.files().best();
        w.save(&best.weights())?;
        write_json(&best.cost(), &s.cost)?;
        write_json(&best.test(), &s.test)?;
        write_json(&best.final_record(), &s.record)?;
        // The spec last: with it, the directory holds a complete model.
        write_json(&best.spec(), &s.record.spec)?;
        write_json(&self.files().summary_json(), s)
    }

    /// `summary.txt`, written and returned.
    pub fn summary_text(&self, s: &TrainSummary) -> Result<String> {
        // With QAT the directory deploys int8: its test figure comes first, the float one is
        // labelled.
        let mut rows = Vec::new();
        match &s.int8 {
            Some(q) => {
                let deployed = if q.delivered_qat {
                    &q.qat_test
                } else {
                    &q.ptq_test
                };
                rows.push(("validation (float32):", s.record.val.brief()));
                rows.push((
                    "test (int8, deployed):",
                    format!("{}  (test split, used once)", deployed.brief()),
                ));
                rows.push(("test (float32):", s.test.brief()));
            }
            None => {
                rows.push(("validation:", s.record.val.brief()));
                rows.push((
                    "test:",
                    format!("{}  (test split, used once)", s.test.brief()),
                ));
            }
        }
        let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let mut text = format!(
            "best epoch {} of {}\n",
            s.record.best_epoch + 1,
            s.record.epochs_run
        );
        for (label, value) in rows {
            text.push_str(&format!("  {label:<width$} {value}\n"));
        }
        text.push_str(&format!(
            "\nnext: nas export --run {} --lang c --out model/   |   nas verify --run {}",
            self.dir.display(),
            self.dir.display()
        ));
        let text = match &s.int8 {
            Some(q) => format!("{}\n\n{}", q.text(), text),
            None => text,
        };
        write_atomic(&self.files().summary_txt(), text.as_bytes())?;
        Ok(text)
    }
}

// ---------------------------------------------------------------------------------------------
// The data a run was created on
// ---------------------------------------------------------------------------------------------

/// The data a run was created on (`data.json`): a resumed run, and every worker, refuses other
/// data (an edited `config.json`, or a dataset directory whose files changed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFingerprint {
    pub source: DataSource,
    pub train_samples: usize,
    pub test_samples: usize,
    pub sample_bytes: usize,
    pub classes: usize,
    /// FNV-1a over both splits' samples and labels, as loaded (after `--limit-per-class`).
    pub hash: String,
}

impl DataFingerprint {
    pub fn of(source: &DataSource, s: &Splits) -> DataFingerprint {
        let mut h = super::layout::Fnv::default();
        for d in [&s.train, &s.test] {
            h.write_u64(d.n() as u64)
                .write_u64(d.len as u64)
                .write_u64(d.classes as u64)
                .write(&d.samples)
                .write(&d.labels);
        }
        DataFingerprint {
            source: source.clone(),
            train_samples: s.train.n(),
            test_samples: s.test.n(),
            sample_bytes: s.train.len,
            classes: s.train.classes,
            hash: h.hex(),
        }
    }

    /// The same samples and labels (wherever they were read from).
    pub fn same_data(&self, other: &DataFingerprint) -> bool {
        (
            self.train_samples,
            self.test_samples,
            self.sample_bytes,
            self.classes,
            &self.hash,
        ) == (
            other.train_samples,
            other.test_samples,
            other.sample_bytes,
            other.classes,
            &other.hash,
        )
    }

    /// In words: where from, how much, the hash.
    pub fn describe(&self) -> String {
        let from = match &self.source {
            DataSource::Dir { path, .. } => path.display().to_string(),
            DataSource::Synthetic { seed } => format!("the synthetic dataset (seed {seed})"),
        };
        format!(
            "{} train / {} test samples of {} bytes, {} classes, fingerprint {}, from {from}",
            self.train_samples, self.test_samples, self.sample_bytes, self.classes, self.hash
        )
    }
}

// ---------------------------------------------------------------------------------------------
// A model in a run or training directory
// ---------------------------------------------------------------------------------------------

/// A directory holding a delivered model: a search run (`config.json`) or a `nas train`
/// directory (`train.json`). What `export`, `verify` and `eval` read.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub dir: PathBuf,
    pub spec: NetSpec,
    pub weights: Weights,
    /// The target and budgets the model was searched or trained for.
    pub target: Target,
    pub limits: Limits,
    /// The data it was trained on, and the seed of the split.
    pub data: DataSource,
    pub seed: u64,
}

impl ModelDir {
    /// The delivered model of a run (`best/`), or with `candidate`, that candidate of a search
    /// run: its final training (`final/<ID>/`) when it had one, else its search training
    /// (`candidates/<ID>/`). `best` names the delivered model; anything but a candidate id
    /// (a path, `..`) is refused, so that only the run's own models are read.
    pub fn open_model(dir: &Path, candidate: Option<&str>) -> Result<ModelDir> {
        let id = match candidate {
            None | Some("best") => return ModelDir::open(dir),
            Some(id) => id,
        };
        ensure!(
            is_candidate_id(id),
            "--candidate {id:?} is not a candidate id: give one like g003-c01 (a folder of {}; \
             pareto.json lists the front), or `best` for the delivered model",
            Layout::new(dir).candidates().display()
        );
        ensure!(
            dir.join(CONFIG).is_file(),
            "--candidate needs a search run directory ({CONFIG}); {} is not one{}",
            dir.display(),
            if dir.join(TRAIN_CONFIG).is_file() {
                " (a `nas train` directory has only its delivered model: drop --candidate)"
            } else {
                ""
            }
        );
        let run = Run::open(dir)?;
        let (spec, weights) = match run.load_final(id) {
            Some((rec, w)) => (rec.spec, w),
            None => match run.load_candidate(id) {
                Some((rec, w)) => (rec.spec, w),
                None => {
                    let ids: Vec<String> = run.records()?.into_iter().map(|r| r.id).collect();
                    let shown: Vec<&str> = ids.iter().take(6).map(|s| s.as_str()).collect();
                    bail!(
                        "{} has no finished candidate '{id}'{}",
                        dir.display(),
                        if ids.is_empty() {
                            "; it has none yet".to_string()
                        } else {
                            format!(
                                "; valid ids include {}{} ({} in all; pareto.json lists the front)",
                                shown.join(", "),
                                if ids.len() > shown.len() { ", …" } else { "" },
                                ids.len()
                            )
                        }
                    );
                }
            },
        };
        spec.validate()
            .with_context(|| format!("invalid network spec of candidate {id}"))?;
        let c = run.config;
        Ok(ModelDir {
            dir: dir.to_path_buf(),
            spec,
            weights,
            target: c.target,
            limits: c.limits,
            data: c.data,
            seed: c.seed,
        })
    }

    /// The delivered model (`best/`) of a search run or a `nas train` directory.
    pub fn open(dir: &Path) -> Result<ModelDir> {
        ensure!(
            dir.is_dir(),
            "run directory {} does not exist",
            dir.display()
        );
        let l = Layout::new(dir);
        let (target, limits, data, seed) = if l.config().is_file() {
            let c = Run::open(dir)?.config;
            (c.target, c.limits, c.data, c.seed)
        } else if l.train_config().is_file() {
            let c: TrainRunConfig = read_json(&l.train_config())?;
            c.validate()
                .with_context(|| format!("invalid {}", l.train_config().display()))?;
            (c.target, c.limits, c.data, c.seed)
        } else {
            bail!(
                "{} is neither a search run ({CONFIG}) nor a training directory ({TRAIN_CONFIG})",
                dir.display()
            );
        };
        let spec_path = l.best().spec();
        ensure!(
            spec_path.is_file(),
            "{} has no {BEST_SPEC}: has the search finished a candidate yet?",
            dir.display()
        );
        let spec: NetSpec = read_json(&spec_path)?;
        spec.validate()
            .with_context(|| format!("invalid network spec {}", spec_path.display()))?;
        let weights = Weights::load(&l.best().weights())?;
        weights.check(&spec).with_context(|| {
            format!(
                "{} does not match {}",
                l.best().weights().display(),
                spec_path.display()
            )
        })?;
        Ok(ModelDir {
            dir: dir.to_path_buf(),
            spec,
            weights,
            target,
            limits,
            data,
            seed,
        })
    }
}

/// Open an existing run directory. Its configuration goes through the same validation as
/// command-line arguments, so an edited `config.json` is an error, not a panic later.
pub fn open_run(dir: &Path) -> Result<Run> {
    Run::open(dir)
}

impl Run {
    /// Open an existing run directory to read it (see [`open_run`]); it is not locked.
    pub fn open(dir: &Path) -> Result<Run> {
        ensure!(
            dir.is_dir(),
            "run directory {} does not exist",
            dir.display()
        );
        let path = Layout::new(dir).config();
        let config: RunConfig = read_json(&path).with_context(|| {
            format!(
                "{} is not a run directory (no readable {CONFIG})",
                dir.display()
            )
        })?;
        config
            .validate()
            .with_context(|| format!("invalid {}", path.display()))?;
        Ok(Run {
            dir: dir.to_path_buf(),
            config,
            observer: std::sync::Arc::new(Silent),
            events: Default::default(),
            lock: None,
        })
    }

    /// Open an existing run to continue it (`nas search --resume`): locked first, so that a
    /// run another process is writing is refused, naming that process.
    pub fn resume(dir: &Path) -> Result<Run> {
        ensure!(
            dir.is_dir(),
            "run directory {} does not exist",
            dir.display()
        );
        let lock = RunLock::acquire(dir, "nas search --resume")?;
        let mut run = Run::open(dir)?;
        run.lock = Some(lock);
        Ok(run)
    }

    /// Start a new run in `out`, claimed for a search (see [`OutDir::claim`]).
    pub fn create(mut out: OutDir, config: RunConfig) -> Result<Run> {
        ensure!(
            out.kind == DirKind::Search,
            "{} was claimed for another command",
            out.dir.display()
        );
        config.validate()?;
        write_json(&Layout::new(&out.dir).config(), &config)?;
        // The directory now holds a run: it stays, whatever happens next.
        out.created.clear();
        Ok(Run {
            dir: out.dir.clone(),
            config,
            observer: std::sync::Arc::new(Silent),
            events: Default::default(),
            lock: out.lock.take(),
        })
    }

    /// Change the configuration of a run opened for writing and save it (`--resume` with a
    /// larger `--generations`). The changed configuration is validated like a new one.
    pub fn update_config(&mut self, change: impl FnOnce(&mut RunConfig)) -> Result<()> {
        ensure!(
            self.locked(),
            "{} is not opened for writing",
            self.dir.display()
        );
        let mut c = self.config.clone();
        change(&mut c);
        c.validate()?;
        write_json(&self.files().config(), &c)?;
        self.config = c;
        Ok(())
    }

    /// Check the loaded data against the run's fingerprint (`data.json`). A run opened for
    /// writing that has none (a new run, or one written by an older version) records it.
    pub fn check_data(&self, splits: &Splits) -> Result<()> {
        let now = DataFingerprint::of(&self.config.data, splits);
        let path = self.files().data();
        if path.is_file() {
            let was: DataFingerprint = read_json(&path)?;
            ensure!(
                was.same_data(&now),
                "{} was created on other data: {}; its {CONFIG} now gives {}. Continuing would \
                 train and select on other data: restore the original dataset (and {CONFIG}), or \
                 start a new run",
                self.dir.display(),
                was.describe(),
                now.describe()
            );
            Ok(())
        } else if self.locked() {
            write_json(&path, &now)
        } else {
            Ok(())
        }
    }

    /// The observer that hears this run's log lines and progress.
    pub fn observed(mut self, observer: std::sync::Arc<dyn Observer>) -> Run {
        self.observer = observer;
        self
    }

    pub(crate) fn observer(&self) -> &dyn Observer {
        &*self.observer
    }
}

/// Append one line to a log file; an error (a full disk) names the file.
fn append_line(path: &Path, line: &str) -> Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{line}"))
        .with_context(|| format!("cannot append to {}", path.display()))
}
