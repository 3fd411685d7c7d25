//! Datasets: reading, validating, splitting, summarising and synthesising traffic samples.
//!
//! This module owns everything between the bytes on disk and a validated in-memory
//! [`Dataset`]:
//!
//! * reading MNIST-style IDX files (`u8` data, big-endian header), raw or gzip-compressed,
//!   with every header checked against the real (decompressed) byte length *before* any
//!   header-sized allocation ([`read_idx_images`], [`read_idx_labels`]);
//! * finding the files of a dataset directory and pairing them ([`load_dir`]): either a
//!   `train-*` pair plus a `t10k-*`/`test-*` pair, or a single images/labels pair from which
//!   a stratified test split is held out;
//! * deterministic, seeded, stratified splits and k-fold partitions ([`stratified_split`],
//!   [`stratified_kfold`]);
//! * a deterministic synthetic dataset shaped like session bytes, for tests and for runs
//!   without the real data ([`synthetic`], [`synthetic_splits`]);
//! * per-class statistics ([`summarize`], [`DatasetSummary`]);
//! * samples whose bytes occur under several labels, and the ceiling they set
//!   ([`conflicts`]);
//! * where a run's data comes from ([`DataSource`], recorded in its configuration) and
//!   loading it again ([`load_data`]).
//!
//! A sample is the first `len` bytes of one session (784 for the real datasets), stored
//! row-major in [`Dataset::samples`]; a model reads it as a 1-channel sequence of length
//! `len`. Labels are `u8` class indices below [`Dataset::classes`].
//!
//! Nothing here panics on bad input files: every problem is a [`DataError`] that names the
//! file (or dataset) and what is wrong with it.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub mod classes;
pub mod conflicts;
mod dir;
mod idx;
pub mod pcap;
mod source;
mod split;
mod summary;
mod synthetic;

pub use dir::*;
pub use idx::*;
pub use source::{load_data, DataSource};
pub use split::*;
pub use summary::*;
pub use synthetic::*;

/// Share of a single images/labels pair that [`load_dir`] holds out as the test set by default.
pub const DEFAULT_TEST_FRACTION: f64 = 0.10;
/// Default seed for splits and synthetic data.
pub const DEFAULT_SEED: u64 = 42;
/// IDX magic of a `u8` file with three dimensions (count, rows, columns): sample images.
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic of a `u8` file with one dimension (count): labels.
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
/// Labels are `u8`, so a dataset has at most this many classes.
pub const MAX_CLASSES: usize = 256;

/// IDX type byte for unsigned bytes.
const IDX_TYPE_U8: u8 = 0x08;
/// First two bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Upper bound on deflate's compression ratio (~1032:1); bounds pre-allocation for gzip input.
const MAX_DEFLATE_RATIO: u64 = 1032;
/// Buffer size for reading files.
const READ_BUFFER: usize = 1 << 16;

/// Everything that can go wrong while loading, validating or splitting data.
///
/// Every variant that concerns a file names it; in-memory checks name the dataset instead.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file or directory could not be opened or read.
    #[error("{}: I/O error: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file starts like gzip but its compressed stream is corrupt or cut short.
    #[error("{}: corrupt or truncated gzip data: {source}", path.display())]
    Gzip {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The IDX magic number is not the one expected (wrong type byte, wrong number of
    /// dimensions, or not an IDX file at all).
    #[error(
        "{}: bad IDX magic 0x{found:08x}, expected 0x{expected:08x} (is this the right file, and is it an IDX file?)",
        path.display()
    )]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// The IDX dimensions are unusable (a zero dimension, or a size that overflows).
    #[error("{}: bad IDX dimensions {dims:?}: {reason}", path.display())]
    BadDims {
        path: PathBuf,
        dims: Vec<u32>,
        reason: String,
    },
    /// The file holds fewer bytes than its header implies.
    #[error(
        "{}: truncated: its header implies {expected_bytes} bytes (uncompressed) but it holds only {actual_bytes}",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        expected_bytes: u64,
        actual_bytes: u64,
    },
    /// The file holds more bytes than its header implies.
    #[error(
        "{}: trailing bytes: it holds more than the {expected_bytes} bytes (uncompressed) that its header implies",
        path.display()
    )]
    TrailingBytes { path: PathBuf, expected_bytes: u64 },
    /// An images file and its labels file disagree on the number of samples.
    #[error(
        "sample count mismatch: {} holds {images_count} samples but {} holds {labels_count} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        images_path: PathBuf,
        images_count: usize,
        labels_path: PathBuf,
        labels_count: usize,
    },
    /// A label is not below the number of classes.
    #[error(
        "{}: label {label} at index {index} is out of range for {classes} classes",
        path.display()
    )]
    LabelOutOfRange {
        /// The labels file, or the name of an in-memory dataset.
        path: PathBuf,
        index: usize,
        label: u8,
        classes: usize,
    },
    /// A test label is a class the training split holds no sample of (a label beyond the
    /// training labels would also size the network for classes it never learns).
    #[error(
        "{}: label {label} at index {index} is not a class of the training split: {} holds {}",
        path.display(),
        train_path.display(),
        describe_classes(train_classes)
    )]
    UntrainedTestLabel {
        path: PathBuf,
        index: usize,
        label: u8,
        train_path: PathBuf,
        /// The classes the training labels hold, ascending.
        train_classes: Vec<u8>,
    },
    /// Train and test samples have different lengths.
    #[error(
        "sample length mismatch: {} has samples of {train_len} bytes but {} has {test_len}",
        train_path.display(),
        test_path.display()
    )]
    LengthMismatch {
        train_path: PathBuf,
        train_len: usize,
        test_path: PathBuf,
        test_len: usize,
    },
    /// The directory holds no usable images/labels pair.
    #[error(
        "{}: no usable IDX files: looked for {looked_for}; found {}",
        dir.display(),
        if found.is_empty() { "no IDX files".to_string() } else { found.join(", ") }
    )]
    Missing {
        dir: PathBuf,
        looked_for: String,
        found: Vec<String>,
    },
    /// The directory holds several candidate pairs and none of them is clearly the one to use.
    #[error(
        "{}: ambiguous IDX files: {reason}; candidates: {}",
        dir.display(),
        candidates.join(", ")
    )]
    Ambiguous {
        dir: PathBuf,
        reason: String,
        candidates: Vec<String>,
    },
    /// The file (or dataset) holds no samples.
    #[error("{}: holds no samples", path.display())]
    Empty { path: PathBuf },
    /// A class has too few samples for the requested split or number of folds.
    #[error(
        "class {class} has only {count} samples; the requested split needs at least {needed} per class present"
    )]
    TooFewForSplit {
        class: usize,
        count: usize,
        needed: usize,
    },
    /// In-memory sample buffer, length or class count are inconsistent.
    #[error("dataset {name:?}: {reason}")]
    BadShape { name: String, reason: String },
    /// A parameter (fraction, number of folds, number of classes) is out of its range.
    #[error("invalid {name}: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
}

/// `labels 0..=11` when the classes are contiguous from 0, else `labels 0, 1, 3` (the first
/// 16, then how many more).
fn describe_classes(classes: &[u8]) -> String {
    match classes {
        [] => "no labels".to_string(),
        [.., last]
            if classes
                .iter()
                .enumerate()
                .all(|(i, &c)| usize::from(c) == i) =>
        {
            format!("labels 0..={last}")
        }
        _ => {
            let shown: Vec<String> = classes.iter().take(16).map(u8::to_string).collect();
            let more = classes.len().saturating_sub(16);
            format!(
                "labels {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        }
    }
}

/// Samples and labels of one dataset split, validated: `samples.len() == n × len` and every
/// label is below `classes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Human-readable name, e.g. `iscx-vpn2016-12class-sessionl7/train`.
    pub name: String,
    /// `n × len` bytes, one sample after the other (row-major).
    pub samples: Vec<u8>,
    /// One class index per sample.
    pub labels: Vec<u8>,
    /// Bytes per sample (784 for the real datasets).
    pub len: usize,
    /// Number of classes (labels are `0..classes`); may exceed the largest label present.
    pub classes: usize,
}

impl Dataset {
    /// Builds a dataset after checking that `samples` holds `labels.len() × len` bytes, that
    /// `len >= 1`, that `1 <= classes <= 256` and that every label is below `classes`.
    /// An empty dataset (no labels, no samples) is allowed.
    pub fn new(
        name: impl Into<String>,
        samples: Vec<u8>,
        labels: Vec<u8>,
        len: usize,
        classes: usize,
    ) -> Result<Self, DataError> {
        let name = name.into();
        let bad = |reason: String| DataError::BadShape {
            name: name.clone(),
            reason,
        };
        if len == 0 {
            return Err(bad("sample length is zero".into()));
        }
        if classes == 0 || classes > MAX_CLASSES {
            return Err(bad(format!(
                "{classes} classes is outside 1..={MAX_CLASSES}"
            )));
        }
        match labels.len().checked_mul(len) {
            Some(expected) if expected == samples.len() => {}
            _ => {
                return Err(bad(format!(
                    "{} sample bytes is not {} labels × {len} bytes",
                    samples.len(),
                    labels.len()
                )))
            }
        }
        check_labels(&labels, classes, Path::new(&name))?;
        Ok(Self {
            name,
            samples,
            labels,
            len,
            classes,
        })
    }

    /// Number of samples.
    pub fn n(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset holds no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The bytes of sample `i`.
    ///
    /// # Panics
    /// If `i >= self.n()`, like slice indexing; see [`Dataset::get`] for a checked version.
    pub fn sample(&self, i: usize) -> &[u8] {
        &self.samples[i * self.len..(i + 1) * self.len]
    }

    /// The bytes and label of sample `i`, or `None` when `i` is out of range.
    pub fn get(&self, i: usize) -> Option<(&[u8], u8)> {
        let label = *self.labels.get(i)?;
        let start = i.checked_mul(self.len)?;
        let bytes = self.samples.get(start..start.checked_add(self.len)?)?;
        Some((bytes, label))
    }

    /// Number of samples of each class, indexed by class (length `classes`).
    pub fn class_counts(&self) -> Vec<usize> {
        count_classes(&self.labels, self.classes)
    }

    /// The samples at `idx`, in that order (repeats allowed), with the same `len`, `classes`
    /// and name.
    ///
    /// # Panics
    /// If an index is `>= self.n()`.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut samples = Vec::with_capacity(idx.len() * self.len);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            samples.extend_from_slice(self.sample(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            name: self.name.clone(),
            samples,
            labels,
            len: self.len,
            classes: self.classes,
        }
    }

    /// The first `per_class` samples of each class, in file order (small real subsets for
    /// tests and quick runs). Classes with fewer samples keep all of them.
    pub fn stratified_head(&self, per_class: usize) -> Dataset {
        let mut taken = vec![0usize; self.classes];
        let idx: Vec<usize> = self
            .labels
            .iter()
            .enumerate()
            .filter_map(|(i, &l)| {
                let t = taken.get_mut(usize::from(l))?;
                (*t < per_class).then(|| {
                    *t += 1;
                    i
                })
            })
            .collect();
        self.subset(&idx)
    }
}

/// A train set and a test set with the same sample length and number of classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
    /// True when the test set was carved (stratified) out of a single images/labels pair
    /// rather than read from its own files.
    pub test_held_out: bool,
    /// True when the data came from [`synthetic`] rather than from files.
    pub synthetic: bool,
    /// What relabelling the training split's conflicting samples changed, when the source
    /// asked for it ([`DataSource`]'s `relabel_conflicts`).
    pub relabelled: Option<conflicts::Relabelled>,
}

/// How [`load_dir`] reads a dataset directory.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Number of classes; `None`: the largest label over train and test, plus one.
    pub classes: Option<usize>,
    /// Share of each class held out as the test set when the directory holds a single pair.
    pub test_fraction: f64,
    /// Seed of the held-out split.
    pub seed: u64,
    /// Keep at most this many train samples per class (the first ones, in file order),
    /// applied after loading and splitting; the test set is never capped.
    pub limit_per_class: Option<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            classes: None,
            test_fraction: DEFAULT_TEST_FRACTION,
            seed: DEFAULT_SEED,
            limit_per_class: None,
        }
    }
}

/// How a byte becomes a network input: `b · (1/255)`, in [0, 1]. The one definition of the
/// input scaling: training and inference multiply by it, and the kernels fold it into one
/// multiply per first-layer output.
pub const INPUT_SCALE: f32 = 1.0 / 255.0;

/// A byte as a network input.
pub fn input_value(b: u8) -> f32 {
    b as f32 * INPUT_SCALE
}

/// Where the project's tests and benchmarks find the shared real datasets (ISCX, USTC):
/// `$NAS_SHARED_DATA` when set, else `../shared/data` beside the source checkout. It may not
/// exist; callers that need it say so.
pub fn shared_data_dir() -> PathBuf {
    std::env::var_os("NAS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")))
}

#[cfg(test)]
mod tests;
