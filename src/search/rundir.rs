//! The run directory: where every candidate, the best model so far and the run's log live,
//! written atomically so that an interrupted run can be resumed.

use super::*;

use std::io::{Read, Seek};

/// The run's configuration, relative to the run directory.
pub const CONFIG: &str = "config.json";
/// A final training's record, in `final/<id>/` and, for the delivered model, in `best/`.
pub const FINAL_RECORD: &str = "final.json";

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
    pub measured: Option<MeasuredFootprint>,
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
    pub dtype: crate::quant::Dtype,
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
    pub(super) quiet: bool,
    /// Keys of the events in `events.jsonl`, read on first use.
    events: std::sync::Mutex<Option<std::collections::HashSet<String>>>,
}

impl Run {
    pub fn candidate_dir(&self, id: &str) -> PathBuf {
        self.dir.join("candidates").join(id)
    }

    /// A finished candidate's record and weights, if both were written.
    pub fn load_candidate(&self, id: &str) -> Option<(Record, Weights)> {
        let d = self.candidate_dir(id);
        let rec: Record = read_json(&d.join("record.json")).ok()?;
        let w = Weights::load(&d.join("weights.safetensors")).ok()?;
        // Weights that do not belong to the record's spec (a damaged or edited run) make the
        // candidate unfinished: it is trained again rather than indexed out of bounds.
        w.check(&rec.spec).ok()?;
        Some((rec, w))
    }

    pub(super) fn log(&self, line: &str) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log.txt"))?;
        writeln!(f, "{line}")?;
        if !self.quiet {
            println!("{line}");
        }
        Ok(())
    }

    /// Append an event to `events.jsonl`. A run killed in the middle of an append leaves a torn
    /// last line: it is cut off first (its event is written again by [`Run::event_once`]), so
    /// the file stays one JSON object per line.
    pub(super) fn event(&self, value: serde_json::Value) -> Result<()> {
        let path = self.dir.join("events.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
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
            let path = self.dir.join("events.jsonl");
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
        let d = self.candidate_dir(&rec.id);
        write_json(&d.join("spec.json"), &rec.spec)?;
        write_json(&d.join("cost.json"), c)?;
        w.save(&d.join("weights.safetensors"))?;
        // The record goes last: its presence marks the candidate as complete.
        write_json(&d.join("record.json"), rec)
    }

    pub(super) fn save_best(&self, rec: &Record, w: &Weights, c: &Cost) -> Result<()> {
        let d = self.dir.join("best");
        w.save(&d.join("weights.safetensors"))?;
        write_json(&d.join("spec.json"), &rec.spec)?;
        write_json(&d.join("cost.json"), c)?;
        write_json(&d.join("record.json"), rec)
    }

    /// Every finished candidate's record, in candidate order.
    pub fn records(&self) -> Result<Vec<Record>> {
        let dir = self.dir.join("candidates");
        let mut v: Vec<Record> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| read_json::<Record>(&e.path().join("record.json")).ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    pub fn final_dir(&self, id: &str) -> PathBuf {
        self.dir.join("final").join(id)
    }

    /// A finished final training of candidate `id`, if its record and weights were written.
    pub fn load_final(&self, id: &str) -> Option<(FinalRecord, Weights)> {
        let d = self.final_dir(id);
        let rec: FinalRecord = read_json(&d.join(FINAL_RECORD)).ok()?;
        let w = Weights::load(&d.join("weights.safetensors")).ok()?;
        w.check(&rec.spec).ok()?;
        Some((rec, w))
    }

    pub(super) fn save_final(&self, id: &str, rec: &FinalRecord, w: &Weights) -> Result<()> {
        let d = self.final_dir(id);
        write_json(&d.join("spec.json"), &rec.spec)?;
        w.save(&d.join("weights.safetensors"))?;
        // The record goes last: its presence marks the final training as complete.
        write_json(&d.join(FINAL_RECORD), rec)
    }

    /// Put the delivered model in `best/`: the final weights, the candidate's record and the
    /// final training's record.
    pub(super) fn save_delivered(&self, d: &Delivered, c: &Cost) -> Result<()> {
        self.save_best(&d.candidate, &d.weights, c)?;
        write_json(&self.dir.join("best").join(FINAL_RECORD), &d.record)
    }

    /// The best model recorded in the run: spec, weights and record.
    pub fn best(&self) -> Result<(Record, Weights)> {
        let d = self.dir.join("best");
        let rec: Record = read_json(&d.join("record.json"))
            .with_context(|| format!("{} has no best model yet", self.dir.display()))?;
        let w = Weights::load(&d.join("weights.safetensors"))?;
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
        "finished" => Some("finished".into()),
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
    pub dtype: crate::quant::Dtype,
}

impl TrainRunConfig {
    pub fn validate(&self) -> Result<()> {
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

/// A `nas train` directory being written.
pub struct TrainDir {
    pub dir: PathBuf,
}

impl TrainDir {
    /// Start one in `dir` (created), which must not hold a training already.
    pub fn create(dir: &Path, cfg: &TrainRunConfig) -> Result<TrainDir> {
        if dir.join(TRAIN_CONFIG).exists() {
            bail!(
                "{} already holds a training; choose another --out",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_json(&dir.join(TRAIN_CONFIG), cfg)?;
        Ok(TrainDir {
            dir: dir.to_path_buf(),
        })
    }

    pub fn log(&self, line: &str) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log.txt"))?;
        writeln!(f, "{line}")?;
        Ok(())
    }

    /// The trained model in `best/` (as a run's delivered model) and `summary.json`.
    pub fn save(&self, s: &TrainSummary, w: &Weights) -> Result<()> {
        let best = self.dir.join("best");
        w.save(&best.join("weights.safetensors"))?;
        write_json(&best.join("cost.json"), &s.cost)?;
        write_json(&best.join("test.json"), &s.test)?;
        write_json(&best.join(FINAL_RECORD), &s.record)?;
        // The spec last: with it, the directory holds a complete model.
        write_json(&best.join("spec.json"), &s.record.spec)?;
        write_json(&self.dir.join("summary.json"), s)
    }

    /// `summary.txt`, written and returned.
    pub fn summary_text(&self, s: &TrainSummary) -> Result<String> {
        let text = format!(
            "best epoch {} of {}\n  validation: {}\n  test:       {}  (test split, used once)\n\n\
             next: nas export --run {} --lang c --out model/   |   nas verify --run {}",
            s.record.best_epoch + 1,
            s.record.epochs_run,
            s.record.val.brief(),
            s.test.brief(),
            self.dir.display(),
            self.dir.display()
        );
        let text = match &s.int8 {
            Some(q) => format!("{}\n\n{}", q.text(), text),
            None => text,
        };
        write_atomic(&self.dir.join("summary.txt"), text.as_bytes())?;
        Ok(text)
    }
}

/// The configuration of `nas train`, relative to its directory.
pub const TRAIN_CONFIG: &str = "train.json";
/// The delivered model's files, relative to a run or training directory.
pub const BEST_SPEC: &str = "best/spec.json";
pub const BEST_WEIGHTS: &str = "best/weights.safetensors";

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
    /// (`candidates/<ID>/`).
    pub fn open_model(dir: &Path, candidate: Option<&str>) -> Result<ModelDir> {
        let Some(id) = candidate else {
            return ModelDir::open(dir);
        };
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
        let (target, limits, data, seed) = if dir.join(CONFIG).is_file() {
            let c = Run::open(dir)?.config;
            (c.target, c.limits, c.data, c.seed)
        } else if dir.join(TRAIN_CONFIG).is_file() {
            let c: TrainRunConfig = read_json(&dir.join(TRAIN_CONFIG))?;
            c.validate()
                .with_context(|| format!("invalid {}", dir.join(TRAIN_CONFIG).display()))?;
            (c.target, c.limits, c.data, c.seed)
        } else {
            bail!(
                "{} is neither a search run ({CONFIG}) nor a training directory ({TRAIN_CONFIG})",
                dir.display()
            );
        };
        let spec_path = dir.join(BEST_SPEC);
        ensure!(
            spec_path.is_file(),
            "{} has no {BEST_SPEC}: has the search finished a candidate yet?",
            dir.display()
        );
        let spec: NetSpec = read_json(&spec_path)?;
        spec.validate()
            .with_context(|| format!("invalid network spec {}", spec_path.display()))?;
        let weights = Weights::load(&dir.join(BEST_WEIGHTS))?;
        weights.check(&spec).with_context(|| {
            format!(
                "{} does not match {}",
                dir.join(BEST_WEIGHTS).display(),
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
    /// Open an existing run directory (see [`open_run`]).
    pub fn open(dir: &Path) -> Result<Run> {
        ensure!(
            dir.is_dir(),
            "run directory {} does not exist",
            dir.display()
        );
        let config: RunConfig = read_json(&dir.join(CONFIG)).with_context(|| {
            format!(
                "{} is not a run directory (no readable {CONFIG})",
                dir.display()
            )
        })?;
        config
            .validate()
            .with_context(|| format!("invalid {}", dir.join(CONFIG).display()))?;
        Ok(Run {
            dir: dir.to_path_buf(),
            config,
            quiet: true,
            events: Default::default(),
        })
    }

    /// Start a new run in `dir` (created), which must not hold one already.
    pub fn create(dir: &Path, config: RunConfig) -> Result<Run> {
        config.validate()?;
        if dir.join(CONFIG).exists() {
            bail!(
                "{} already holds a run; continue it with `nas search --resume {}` or choose another --out",
                dir.display(),
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create run directory {}", dir.display()))?;
        write_json(&dir.join(CONFIG), &config)?;
        Ok(Run {
            dir: dir.to_path_buf(),
            config,
            quiet: true,
            events: Default::default(),
        })
    }

    /// Whether log lines are echoed on the terminal.
    pub fn quiet(mut self, quiet: bool) -> Run {
        self.quiet = quiet;
        self
    }
}

/// Load the data a run was configured with.
pub fn load_data(source: &DataSource, seed: u64) -> Result<Splits> {
    Ok(match source {
        DataSource::Synthetic { seed } => data::synthetic_splits(*seed),
        DataSource::Dir {
            path,
            limit_per_class,
        } => {
            let opts = LoadOptions {
                limit_per_class: *limit_per_class,
                seed,
                ..LoadOptions::default()
            };
            data::load_dir(path, &opts)
                .with_context(|| format!("cannot load the dataset {}", path.display()))?
        }
    })
}
