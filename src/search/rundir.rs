//! The run directory: where every candidate, the best model so far and the run's log live,
//! written atomically so that an interrupted run can be resumed.

use super::*;
use std::io::{Read, Seek};

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
    /// Set when this candidate's architecture was evaluated before (the first candidate with
    /// it): its result was reused and nothing was trained.
    #[serde(default)]
    pub duplicate_of: Option<String>,
    /// Per-epoch losses and validation accuracy (of the best fold for full training).
    #[serde(default)]
    pub history: Vec<train::EpochLog>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub run: PathBuf,
    pub target: String,
    pub winner: Record,
    pub cost: Cost,
    /// The winner's metrics on the test split (used once, never for selection); absent while
    /// the run is incomplete.
    pub test: Option<Metrics>,
    pub candidates: usize,
    pub trained_this_session: usize,
    pub seconds_this_session: f64,
    pub seconds_training_total: f64,
    pub complete: bool,
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

    pub(super) fn event(&self, value: serde_json::Value) -> Result<()> {
        let path = self.dir.join("events.jsonl");
        // A run killed in the middle of an append leaves a torn last line: start a new one so
        // that the torn line stays the only one lost.
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
        let mut line = if torn {
            "\n".to_string()
        } else {
            String::new()
        };
        line.push_str(&serde_json::to_string(&value)?);
        line.push('\n');
        f.write_all(line.as_bytes())?;
        f.sync_data()?;
        Ok(())
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

/// Open an existing run directory.
pub fn open_run(dir: &Path) -> Result<Run> {
    let config: RunConfig = read_json(&dir.join("config.json")).with_context(|| {
        format!(
            "{} is not a run directory (no readable config.json)",
            dir.display()
        )
    })?;
    Ok(Run {
        dir: dir.to_path_buf(),
        config,
        quiet: true,
    })
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
