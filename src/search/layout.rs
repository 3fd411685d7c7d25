//! Where everything lives in a run directory (`nas search`) or a training directory
//! (`nas train`): the one owner of their file names. Every reader and writer asks [`Layout`]
//! (and [`ModelFiles`] for a directory holding one model) for a path instead of spelling a
//! name out, so that a name is changed, or looked up, in one place.

use std::path::{Path, PathBuf};

/// The run's configuration (`nas search`).
pub const CONFIG: &str = "config.json";
/// The configuration of `nas train`.
pub const TRAIN_CONFIG: &str = "train.json";
/// A candidate's result; in `best/`, the delivered model's candidate.
pub const RECORD: &str = "record.json";
/// A final training's record, in `final/<id>/` and, for the delivered model, in `best/`.
pub const FINAL_RECORD: &str = "final.json";
/// A model's network spec.
pub const SPEC: &str = "spec.json";
/// A model's trained weights.
pub const WEIGHTS: &str = "weights.safetensors";
/// A model's cost on the run's target.
pub const COST: &str = "cost.json";
/// The delivered model's metrics on the test split.
pub const TEST: &str = "test.json";
/// A candidate's training task (see `task`).
pub const TASK: &str = "task.json";
/// A task's initial weights.
pub const INIT: &str = "init.safetensors";
/// A local worker's output.
pub const WORKER_LOG: &str = "worker.log";
/// The human log.
pub const LOG: &str = "log.txt";
/// One JSON event per line.
pub const EVENTS: &str = "events.jsonl";
/// The run's summary, written when it completes.
pub const SUMMARY_JSON: &str = "summary.json";
pub const SUMMARY_TXT: &str = "summary.txt";
/// The run's Pareto front (see `pareto`).
pub const PARETO: &str = "pareto.json";
/// What `nas verify --run DIR` measured.
pub const VERIFY: &str = "verify.json";
/// The HTML report.
pub const REPORT: &str = "report.html";
/// The fingerprint of the data the run was created on.
pub const DATA: &str = "data.json";
/// The advisory lock of the process writing the directory (see `lock`).
pub const LOCK: &str = ".lock";
/// The delivered model's files, relative to a run or training directory.
pub const BEST_SPEC: &str = "best/spec.json";
pub const BEST_WEIGHTS: &str = "best/weights.safetensors";

/// The paths of a run or training directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join(CONFIG)
    }

    pub fn train_config(&self) -> PathBuf {
        self.dir.join(TRAIN_CONFIG)
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join(LOG)
    }

    pub fn events(&self) -> PathBuf {
        self.dir.join(EVENTS)
    }

    pub fn summary_json(&self) -> PathBuf {
        self.dir.join(SUMMARY_JSON)
    }

    pub fn summary_txt(&self) -> PathBuf {
        self.dir.join(SUMMARY_TXT)
    }

    pub fn pareto(&self) -> PathBuf {
        self.dir.join(PARETO)
    }

    pub fn verify(&self) -> PathBuf {
        self.dir.join(VERIFY)
    }

    pub fn report(&self) -> PathBuf {
        self.dir.join(REPORT)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join(DATA)
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.join(LOCK)
    }

    /// Where Slurm arrays keep their task lists and outputs.
    pub fn slurm(&self) -> PathBuf {
        self.dir.join("slurm")
    }

    /// The folder of every candidate's folder.
    pub fn candidates(&self) -> PathBuf {
        self.dir.join("candidates")
    }

    /// Candidate `id`'s files (`candidates/<id>/`).
    pub fn candidate(&self, id: &str) -> ModelFiles {
        ModelFiles {
            dir: self.candidates().join(id),
        }
    }

    /// The final training of candidate `id` (`final/<id>/`).
    pub fn final_of(&self, id: &str) -> ModelFiles {
        ModelFiles {
            dir: self.dir.join("final").join(id),
        }
    }

    /// The delivered model (`best/`).
    pub fn best(&self) -> ModelFiles {
        ModelFiles {
            dir: self.dir.join("best"),
        }
    }
}

/// The files of one model's folder: a candidate, a final training or the delivered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    dir: PathBuf,
}

impl ModelFiles {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn record(&self) -> PathBuf {
        self.dir.join(RECORD)
    }

    pub fn final_record(&self) -> PathBuf {
        self.dir.join(FINAL_RECORD)
    }

    pub fn spec(&self) -> PathBuf {
        self.dir.join(SPEC)
    }

    pub fn weights(&self) -> PathBuf {
        self.dir.join(WEIGHTS)
    }

    pub fn cost(&self) -> PathBuf {
        self.dir.join(COST)
    }

    pub fn test(&self) -> PathBuf {
        self.dir.join(TEST)
    }

    pub fn task(&self) -> PathBuf {
        self.dir.join(TASK)
    }

    pub fn init(&self) -> PathBuf {
        self.dir.join(INIT)
    }

    pub fn worker_log(&self) -> PathBuf {
        self.dir.join(WORKER_LOG)
    }
}

/// 64-bit FNV-1a: a hash that is stable across builds and platforms (unlike the std hasher),
/// for names and fingerprints, not for security.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) -> &mut Fnv {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    pub fn write_u64(&mut self, v: u64) -> &mut Fnv {
        self.write(&v.to_le_bytes())
    }

    pub fn finish(&self) -> u64 {
        self.0
    }

    /// The hash as 16 hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_inside_the_directory() {
        let l = Layout::new(Path::new("r"));
        assert_eq!(l.config(), Path::new("r/config.json"));
        assert_eq!(
            l.candidate("g001-c02").record(),
            Path::new("r/candidates/g001-c02/record.json")
        );
        assert_eq!(
            l.final_of("g001-c02").final_record(),
            Path::new("r/final/g001-c02/final.json")
        );
        assert_eq!(l.best().spec(), Path::new("r").join(BEST_SPEC));
        assert_eq!(l.best().weights(), Path::new("r").join(BEST_WEIGHTS));
    }

    #[test]
    fn fnv_is_the_reference_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(Fnv::default().finish(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv::default().write(b"a").finish(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            Fnv::default().write(b"foobar").finish(),
            0x8594_4171_f739_67e8
        );
    }
}
