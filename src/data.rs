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
//! * per-class statistics ([`summarize`], [`Summary`]).
//!
//! A sample is the first `len` bytes of one session (784 for the real datasets), stored
//! row-major in [`Dataset::samples`]; a model reads it as a 1-channel sequence of length
//! `len`. Labels are `u8` class indices below [`Dataset::classes`].
//!
//! Nothing here panics on bad input files: every problem is a [`DataError`] that names the
//! file (or dataset) and what is wrong with it.

pub mod classes;
pub mod pcap;

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

// ---------------------------------------------------------------------------------------------
// IDX reading
// ---------------------------------------------------------------------------------------------

/// Reads an IDX file of `u8` samples, raw or gzip-compressed (detected from its first bytes).
///
/// Accepts magic `0x00000802..=0x00000804` (count plus 1 to 3 sample dimensions; the usual
/// `0x00000803` is count × rows × columns). Returns `(count, len, data)` where `len` is the
/// product of the dimensions after the count and `data` holds `count × len` bytes.
/// Where the project's tests and benchmarks find the shared real datasets (ISCX, USTC):
/// `$NAS_SHARED_DATA` when set, else `../shared/data` beside the source checkout. It may not
/// exist; callers that need it say so.
pub fn shared_data_dir() -> PathBuf {
    std::env::var_os("NAS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")))
}

pub fn read_idx_images(path: &Path) -> Result<(usize, usize, Vec<u8>), DataError> {
    let (dims, data) = read_idx(path, 2..=4, IDX_IMAGES_MAGIC)?;
    let count = dims[0];
    // The product of all dims was checked for overflow, so the tail product cannot overflow.
    let len = dims[1..].iter().product();
    Ok((count, len, data))
}

/// Reads an IDX labels file (magic `0x00000801`, one `u8` per sample), raw or gzip-compressed.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    read_idx(path, 1..=1, IDX_LABELS_MAGIC).map(|(_, data)| data)
}

/// Opens `path`, sniffs gzip, and reads a `u8` IDX file whose number of dimensions lies in
/// `ndims`. Returns the dimensions and the payload.
fn read_idx(
    path: &Path,
    ndims: RangeInclusive<u8>,
    expected_magic: u32,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let io_err = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let is_gzip = reader.fill_buf().map_err(io_err)?.starts_with(&GZIP_MAGIC);
    let header = IdxSpec {
        path,
        ndims,
        expected_magic,
    };
    if is_gzip {
        let bound = file_len.saturating_mul(MAX_DEFLATE_RATIO);
        header.read(MultiGzDecoder::new(reader), true, bound)
    } else {
        header.read(reader, false, file_len)
    }
}

/// What an IDX reader expects of a file.
struct IdxSpec<'a> {
    path: &'a Path,
    ndims: RangeInclusive<u8>,
    expected_magic: u32,
}

impl IdxSpec<'_> {
    /// Reads header and payload from `r` (the decompressed stream for gzip). `max_bytes` is an
    /// upper bound on what the stream can hold: the file size for raw files (checked exactly),
    /// the deflate bound for gzip (used only to cap pre-allocation).
    fn read<R: Read>(
        &self,
        mut r: R,
        gzip: bool,
        max_bytes: u64,
    ) -> Result<(Vec<usize>, Vec<u8>), DataError> {
        let path = self.path.to_path_buf();
        let stream_err = |source| {
            if gzip {
                DataError::Gzip {
                    path: path.clone(),
                    source,
                }
            } else {
                DataError::Io {
                    path: path.clone(),
                    source,
                }
            }
        };
        let truncated = |expected_bytes: u64, actual_bytes: u64| DataError::Truncated {
            path: path.clone(),
            expected_bytes,
            actual_bytes,
        };

        // Magic: 0x00 0x00, type byte, number of dimensions.
        let mut magic = [0u8; 4];
        let got = read_up_to(&mut r, &mut magic).map_err(stream_err)?;
        if got < magic.len() {
            return Err(truncated(4, got as u64));
        }
        let found = u32::from_be_bytes(magic);
        let nd = magic[3];
        if magic[0] != 0 || magic[1] != 0 || magic[2] != IDX_TYPE_U8 || !self.ndims.contains(&nd) {
            return Err(DataError::BadMagic {
                path,
                found,
                expected: self.expected_magic,
            });
        }

        // Dimensions: one big-endian u32 each.
        let header_len = 4 + 4 * usize::from(nd);
        let mut raw = vec![0u8; 4 * usize::from(nd)];
        let got = read_up_to(&mut r, &mut raw).map_err(stream_err)?;
        if got < raw.len() {
            return Err(truncated(header_len as u64, (4 + got) as u64));
        }
        let dims32: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let bad_dims = |reason: &str| DataError::BadDims {
            path: path.clone(),
            dims: dims32.clone(),
            reason: reason.to_string(),
        };
        if dims32[0] == 0 {
            return Err(DataError::Empty { path });
        }
        if dims32[1..].contains(&0) {
            return Err(bad_dims("a sample dimension is zero"));
        }
        let payload = dims32
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
            .ok_or_else(|| bad_dims("count × dimensions overflows"))?;
        let expected_total = payload
            .checked_add(header_len as u64)
            .ok_or_else(|| bad_dims("count × dimensions overflows"))?;
        let dims = dims32
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| bad_dims("a dimension does not fit this platform's usize"))?;
        let payload_usize = usize::try_from(payload)
            .map_err(|_| bad_dims("the data size does not fit this platform's usize"))?;

        // Raw files: the exact size is known, so check it before reading or allocating.
        if !gzip {
            if max_bytes < expected_total {
                return Err(truncated(expected_total, max_bytes));
            }
            if max_bytes > expected_total {
                return Err(DataError::TrailingBytes {
                    path,
                    expected_bytes: expected_total,
                });
            }
        }

        // Pre-allocate no more than the stream can possibly hold, then read at most one byte
        // past the header-implied size so that both truncation and trailing data show. When
        // fewer bytes arrive than the limit, the stream reached its end: for gzip that means
        // every member's CRC and size trailer was checked and nothing follows the last one.
        let capacity = payload.min(max_bytes.saturating_sub(header_len as u64));
        let mut data = Vec::new();
        data.try_reserve_exact(usize::try_from(capacity).unwrap_or(payload_usize))
            .map_err(|e| stream_err(io::Error::new(io::ErrorKind::OutOfMemory, e)))?;
        (&mut r)
            .take(payload.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(stream_err)?;
        let got = data.len() as u64;
        if got < payload {
            return Err(truncated(expected_total, header_len as u64 + got));
        }
        if got > payload {
            return Err(DataError::TrailingBytes {
                path,
                expected_bytes: expected_total,
            });
        }
        Ok((dims, data))
    }
}

/// Fills `buf` from `r` until it is full or the stream ends; returns the bytes read.
fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

// ---------------------------------------------------------------------------------------------
// Directory loading
// ---------------------------------------------------------------------------------------------

/// Which file of a pair a directory entry is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IdxRole {
    Images,
    Labels,
}

/// An images file and a labels file sharing a prefix (`train`, `t10k`, ...).
#[derive(Default)]
struct Pair {
    images: Option<PathBuf>,
    labels: Option<PathBuf>,
}

/// The images and labels of one pair, read and checked against each other.
struct LoadedPair {
    images: PathBuf,
    labels_path: PathBuf,
    len: usize,
    samples: Vec<u8>,
    labels: Vec<u8>,
}

const LOOKED_FOR: &str = "train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz] with \
t10k-* (or test-*) images/labels, or a single <prefix>-images-idx3-ubyte[.gz] + \
<prefix>-labels-idx1-ubyte[.gz] pair";

/// Splits an IDX file name such as `t10k-images-idx3-ubyte.gz` (also `train-labels.idx1-ubyte`)
/// into its prefix and role.
fn classify_idx_name(name: &str) -> Option<(String, IdxRole)> {
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    let stem = stem.strip_suffix("-ubyte")?;
    for (marker, role) in [("-images", IdxRole::Images), ("-labels", IdxRole::Labels)] {
        if let Some(pos) = stem.rfind(marker) {
            let rest = &stem[pos + marker.len()..];
            let digits = rest
                .strip_prefix("-idx")
                .or_else(|| rest.strip_prefix(".idx"))?;
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && pos > 0 {
                return Some((stem[..pos].to_ascii_lowercase(), role));
            }
        }
    }
    None
}

/// Lists the IDX pairs of `dir`, keyed by lower-case prefix. When a file exists both raw and
/// gzip-compressed, the raw one is used.
fn scan_dir(dir: &Path) -> Result<(BTreeMap<String, Pair>, Vec<String>), DataError> {
    let io_err = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut pairs: BTreeMap<String, Pair> = BTreeMap::new();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some((prefix, role)) = classify_idx_name(&name) else {
            continue;
        };
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        found.push(name.clone());
        let pair = pairs.entry(prefix).or_default();
        let slot = match role {
            IdxRole::Images => &mut pair.images,
            IdxRole::Labels => &mut pair.labels,
        };
        let replace = match slot {
            None => true,
            // Prefer the raw file over its .gz twin (no decompression needed).
            Some(old) => is_gz_name(old) && !name.ends_with(".gz"),
        };
        if replace {
            *slot = Some(path);
        }
    }
    found.sort();
    Ok((pairs, found))
}

fn is_gz_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Reads one pair and checks that the images and labels agree on the number of samples.
fn load_pair(images: &Path, labels_path: &Path) -> Result<LoadedPair, DataError> {
    let labels = read_idx_labels(labels_path)?;
    let (count, len, samples) = read_idx_images(images)?;
    if count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images.to_path_buf(),
            images_count: count,
            labels_path: labels_path.to_path_buf(),
            labels_count: labels.len(),
        });
    }
    Ok(LoadedPair {
        images: images.to_path_buf(),
        labels_path: labels_path.to_path_buf(),
        len,
        samples,
        labels,
    })
}

/// Loads a dataset directory.
///
/// * With `train-images*`/`train-labels*` and `t10k-images*`/`t10k-labels*` (or `test-*`)
///   files, raw or `.gz`: train and test are read as given (`test_held_out = false`).
/// * With a single complete pair (any `<prefix>-images-idx3-ubyte[.gz]` and
///   `<prefix>-labels-idx1-ubyte[.gz]`, e.g. only `t10k-*`): a stratified test split of
///   `opts.test_fraction` per class is held out with `opts.seed` (`test_held_out = true`).
///
/// The number of classes is `opts.classes`, or the largest label over both sets plus one;
/// every label is checked against it. `opts.limit_per_class` then caps the train set.
pub fn load_dir(dir: &Path, opts: &LoadOptions) -> Result<Splits, DataError> {
    if let Some(c) = opts.classes {
        check_classes(c)?;
    }
    let (pairs, found) = scan_dir(dir)?;
    let missing = |looked_for: String| DataError::Missing {
        dir: dir.to_path_buf(),
        looked_for,
        found: found.clone(),
    };

    // Every pair that was started must be complete.
    let mut complete = Vec::new();
    for (prefix, pair) in &pairs {
        match (&pair.images, &pair.labels) {
            (Some(i), Some(l)) => complete.push((prefix.as_str(), i.clone(), l.clone())),
            (Some(_), None) => {
                return Err(missing(format!(
                    "{prefix}-labels-idx1-ubyte[.gz] to go with the {prefix} images"
                )))
            }
            (None, Some(_)) => {
                return Err(missing(format!(
                    "{prefix}-images-idx3-ubyte[.gz] to go with the {prefix} labels"
                )))
            }
            (None, None) => {}
        }
    }

    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let train = complete.iter().find(|(p, _, _)| *p == "train");
    let tests: Vec<_> = complete
        .iter()
        .filter(|(p, _, _)| matches!(*p, "t10k" | "test"))
        .collect();
    if tests.len() > 1 {
        return Err(DataError::Ambiguous {
            dir: dir.to_path_buf(),
            reason: "both t10k-* and test-* pairs are present".into(),
            candidates: tests.iter().map(|(p, _, _)| p.to_string()).collect(),
        });
    }

    match (train, tests.first()) {
        (Some((_, ti, tl)), Some((_, si, sl))) => {
            let train = load_pair(ti, tl)?;
            let test = load_pair(si, sl)?;
            if train.len != test.len {
                return Err(DataError::LengthMismatch {
                    train_path: train.images,
                    train_len: train.len,
                    test_path: test.images,
                    test_len: test.len,
                });
            }
            let classes = resolve_classes(opts, [&train, &test])?;
            let train_ds = Dataset::new(
                format!("{name}/train"),
                train.samples,
                train.labels,
                train.len,
                classes,
            )?;
            let test_ds = Dataset::new(
                format!("{name}/test"),
                test.samples,
                test.labels,
                test.len,
                classes,
            )?;
            Ok(Splits {
                train: cap_train(train_ds, opts),
                test: test_ds,
                test_held_out: false,
                synthetic: false,
            })
        }
        _ if complete.len() == 1 => {
            let (_, images, labels) = &complete[0];
            let pair = load_pair(images, labels)?;
            let classes = resolve_classes(opts, [&pair])?;
            let all = Dataset::new(name.clone(), pair.samples, pair.labels, pair.len, classes)?;
            let (keep, held) =
                stratified_split(&all.labels, classes, opts.test_fraction, opts.seed)?;
            let mut train = all.subset(&keep);
            train.name = format!("{name}/train");
            let mut test = all.subset(&held);
            test.name = format!("{name}/test");
            Ok(Splits {
                train: cap_train(train, opts),
                test,
                test_held_out: true,
                synthetic: false,
            })
        }
        _ if complete.is_empty() => Err(missing(LOOKED_FOR.to_string())),
        _ => Err(DataError::Ambiguous {
            dir: dir.to_path_buf(),
            reason:
                "several images/labels pairs but not exactly one train-* and one t10k-*/test-* pair"
                    .into(),
            candidates: complete.iter().map(|(p, _, _)| p.to_string()).collect(),
        }),
    }
}

/// The number of classes to use, with every label of every pair checked against it.
fn resolve_classes<const N: usize>(
    opts: &LoadOptions,
    pairs: [&LoadedPair; N],
) -> Result<usize, DataError> {
    let classes = match opts.classes {
        Some(c) => c,
        None => {
            let max = pairs
                .iter()
                .flat_map(|p| p.labels.iter().copied())
                .max()
                .unwrap_or(0);
            usize::from(max) + 1
        }
    };
    for p in pairs {
        check_labels(&p.labels, classes, &p.labels_path)?;
    }
    Ok(classes)
}

fn cap_train(train: Dataset, opts: &LoadOptions) -> Dataset {
    match opts.limit_per_class {
        Some(limit) => train.stratified_head(limit),
        None => train,
    }
}

fn check_classes(classes: usize) -> Result<(), DataError> {
    if classes == 0 || classes > MAX_CLASSES {
        return Err(DataError::InvalidParameter {
            name: "number of classes",
            reason: format!("{classes} is outside 1..={MAX_CLASSES}"),
        });
    }
    Ok(())
}

/// Checks that every label is below `classes`; `origin` names the file or dataset.
fn check_labels(labels: &[u8], classes: usize, origin: &Path) -> Result<(), DataError> {
    match labels.iter().position(|&l| usize::from(l) >= classes) {
        Some(index) => Err(DataError::LabelOutOfRange {
            path: origin.to_path_buf(),
            index,
            label: labels[index],
            classes,
        }),
        None => Ok(()),
    }
}

fn count_classes(labels: &[u8], classes: usize) -> Vec<usize> {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(usize::from(l)) {
            *c += 1;
        }
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------------

/// Indices of each class, in order, after checking the labels.
fn indices_by_class(labels: &[u8], classes: usize) -> Result<Vec<Vec<usize>>, DataError> {
    check_classes(classes)?;
    if labels.is_empty() {
        return Err(DataError::Empty {
            path: PathBuf::from("<labels>"),
        });
    }
    check_labels(labels, classes, Path::new("<labels>"))?;
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[usize::from(l)].push(i);
    }
    Ok(by_class)
}

/// Splits sample indices into `(keep, held_out)`, stratified by class.
///
/// Each class with `m` samples gives `round(fraction × m)` samples to the held-out set,
/// clamped to `1..=m-1` so that both sides see every class. A class with a single sample
/// cannot be split: [`DataError::TooFewForSplit`]. Which samples are held out is drawn with
/// a `ChaCha8Rng` seeded from `seed`, so the result is deterministic. Both lists are sorted.
pub fn stratified_split(
    labels: &[u8],
    classes: usize,
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    if !(fraction.is_finite() && fraction > 0.0 && fraction < 1.0) {
        return Err(DataError::InvalidParameter {
            name: "test fraction",
            reason: format!("{fraction} is not strictly between 0 and 1"),
        });
    }
    let by_class = indices_by_class(labels, classes)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut keep = Vec::with_capacity(labels.len());
    let mut held = Vec::new();
    for (class, mut idx) in by_class.into_iter().enumerate() {
        let m = idx.len();
        if m == 0 {
            continue;
        }
        if m < 2 {
            return Err(DataError::TooFewForSplit {
                class,
                count: m,
                needed: 2,
            });
        }
        let h = ((fraction * m as f64).round() as usize).clamp(1, m - 1);
        idx.shuffle(&mut rng);
        held.extend_from_slice(&idx[..h]);
        keep.extend_from_slice(&idx[h..]);
    }
    keep.sort_unstable();
    held.sort_unstable();
    Ok((keep, held))
}

/// Partitions sample indices into `k` disjoint folds that together cover every index.
///
/// Each class is shuffled (`ChaCha8Rng` seeded from `seed`) and dealt round-robin across the
/// folds, continuing where the previous class stopped, so every fold holds `⌊m/k⌋` or
/// `⌈m/k⌉` samples of a class with `m` samples and fold sizes differ by at most one.
/// Every class present needs at least `k` samples ([`DataError::TooFewForSplit`]).
/// Each fold is sorted.
pub fn stratified_kfold(
    labels: &[u8],
    classes: usize,
    k: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>, DataError> {
    if k < 2 {
        return Err(DataError::InvalidParameter {
            name: "number of folds",
            reason: format!("{k} folds; need at least 2"),
        });
    }
    let by_class = indices_by_class(labels, classes)?;
    if let Some((class, idx)) = by_class
        .iter()
        .enumerate()
        .find(|(_, idx)| !idx.is_empty() && idx.len() < k)
    {
        return Err(DataError::TooFewForSplit {
            class,
            count: idx.len(),
            needed: k,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut folds: Vec<Vec<usize>> = (0..k)
        .map(|_| Vec::with_capacity(labels.len() / k + 1))
        .collect();
    let mut next = 0usize;
    for mut idx in by_class {
        idx.shuffle(&mut rng);
        for i in idx {
            folds[next].push(i);
            next = (next + 1) % k;
        }
    }
    for f in &mut folds {
        f.sort_unstable();
    }
    Ok(folds)
}

// ---------------------------------------------------------------------------------------------
// Synthetic data
// ---------------------------------------------------------------------------------------------

/// First bytes of a few protocol families (TLS application data, TLS handshake, HTTP,
/// length-prefixed binary). Several classes share each family, so the first bytes alone do
/// not identify the class.
const FAMILY_PREFIXES: [&[u8]; 4] = [
    &[0x17, 0x03, 0x03],
    &[0x16, 0x03, 0x01],
    b"GET /",
    &[0x00, 0x00, 0x00],
];
/// Number of byte alphabets that the classes' payload distributions are built from.
const ALPHABET_POOL: usize = 12;
/// Probability that a header byte of an instance is replaced by a random byte.
const HEADER_NOISE: f64 = 0.2;
/// Probability that an instance's payload follows another class's payload prototype.
const PAYLOAD_CONFUSION: f64 = 0.08;

/// The byte-pattern prototype of one synthetic class.
///
/// Classes come in sibling pairs (`2k`, `2k + 1`, like an application with and without a
/// VPN) that share their header; each payload favours a band of byte values (like text, or a
/// field's typical range) with a few strays, at a rate that varies per instance. So neither the
/// header nor the byte histogram alone identifies a class.
struct ClassPrototype {
    /// Protocol-family prefix followed by application-specific header bytes.
    header: Vec<u8>,
    /// Bytes that the payload favours.
    alphabet: [u8; 16],
    /// Probability that a payload byte comes from `alphabet` (otherwise uniform).
    alphabet_p: f64,
    /// Record marker repeated through the payload about every `period` bytes.
    marker: [u8; 3],
    period: usize,
    /// Mean session length as a share of the sample length.
    mean_len: f64,
}

impl ClassPrototype {
    /// Draws the prototypes of `classes` classes.
    fn draw_all(classes: usize, rng: &mut ChaCha8Rng) -> Vec<Self> {
        let pool: Vec<[u8; 16]> = (0..ALPHABET_POOL)
            .map(|_| {
                // A band of byte values (like text, or a field's typical range) with a few
                // strays, so that classes differ in how their payload bytes are distributed.
                let base: u8 = rng.random_range(0..=240);
                let mut a = [0u8; 16];
                for (i, b) in a.iter_mut().enumerate() {
                    *b = base + i as u8;
                }
                a
            })
            .collect();
        let headers: Vec<Vec<u8>> = (0..classes.div_ceil(2))
            .map(|app| {
                let mut h = FAMILY_PREFIXES[app % FAMILY_PREFIXES.len()].to_vec();
                let extra = rng.random_range(6..=20);
                h.extend((0..extra).map(|_| rng.random::<u8>()));
                h
            })
            .collect();
        (0..classes)
            .map(|class| {
                let header = headers[class / 2].clone();
                let mut alphabet = pool[class % ALPHABET_POOL];
                for _ in 0..4 {
                    let j = rng.random_range(0..alphabet.len());
                    alphabet[j] = rng.random();
                }
                Self {
                    marker: [header[0], rng.random(), rng.random()],
                    header,
                    alphabet,
                    alphabet_p: rng.random_range(0.3..0.6),
                    period: rng.random_range(24..=96),
                    mean_len: rng.random_range(0.3..0.95),
                }
            })
            .collect()
    }

    /// Writes this class's header into `out[..session]`, with a variable-length field (0..=2
    /// random bytes) after the first three bytes and [`HEADER_NOISE`] of its bytes mutated.
    /// Returns the position after the header.
    fn render_header(&self, out: &mut [u8], session: usize, rng: &mut ChaCha8Rng) -> usize {
        let shift = rng.random_range(0..=2usize);
        let mut pos = 0usize;
        for (j, &b) in self.header.iter().enumerate() {
            if j == 3 {
                for _ in 0..shift {
                    if pos < session {
                        out[pos] = rng.random();
                        pos += 1;
                    }
                }
            }
            if pos >= session {
                break;
            }
            out[pos] = if rng.random_bool(HEADER_NOISE) {
                rng.random()
            } else {
                b
            };
            pos += 1;
        }
        pos
    }

    /// Fills `out[pos..session]` with payload: record markers about every `period` bytes and
    /// bytes from the class alphabet (at a per-instance rate) or uniform.
    fn render_payload(&self, out: &mut [u8], mut pos: usize, session: usize, rng: &mut ChaCha8Rng) {
        let p = (self.alphabet_p * rng.random_range(0.5..1.5)).clamp(0.0, 1.0);
        let mut next_marker = pos + rng.random_range(8..self.period.max(9));
        while pos < session {
            if pos == next_marker {
                for &m in &self.marker {
                    if pos < session {
                        out[pos] = m;
                        pos += 1;
                    }
                }
                next_marker = pos + self.period + rng.random_range(0..16);
                continue;
            }
            out[pos] = if rng.random_bool(p) {
                self.alphabet[rng.random_range(0..self.alphabet.len())]
            } else {
                rng.random()
            };
            pos += 1;
        }
    }
}

/// Writes one noisy instance of class `class` into `out` (zero-filled on entry); bytes from
/// the session length on stay zero, like the padding of a short session.
fn render_instance(protos: &[ClassPrototype], class: usize, out: &mut [u8], rng: &mut ChaCha8Rng) {
    let proto = &protos[class];
    let len = out.len();
    let session = (proto.mean_len * len as f64 * rng.random_range(0.5..1.5)).round() as usize;
    let session = session.clamp(len.min(proto.header.len() + 1), len);
    let pos = proto.render_header(out, session, rng);
    let payload = if rng.random_bool(PAYLOAD_CONFUSION) {
        &protos[rng.random_range(0..protos.len())]
    } else {
        proto
    };
    payload.render_payload(out, pos, session, rng);
}

/// A deterministic dataset shaped like session bytes, named `"synthetic"`.
///
/// Each class has a prototype: a protocol-family prefix and application header shared with
/// a sibling class, then payload drawn from a class-specific byte distribution (a band of
/// byte values mixed with uniform bytes) with periodic record markers, and zero padding after a
/// class-dependent, randomly varying session length. Instances mutate header bytes, shift
/// fields, vary lengths and alphabet rates, and a few borrow another class's payload, so a
/// small CNN can learn the classes, but neither the header nor the byte histogram alone
/// separates them and accuracy stays below 100 %. Sample `i` has class
/// `i % classes` (balanced). `len` is raised to at least 1 and `classes` clamped to
/// `1..=256`.
pub fn synthetic(n: usize, len: usize, classes: usize, seed: u64) -> Dataset {
    let len = len.max(1);
    let classes = classes.clamp(1, MAX_CLASSES);
    let mut proto_rng = ChaCha8Rng::seed_from_u64(seed);
    let protos = ClassPrototype::draw_all(classes, &mut proto_rng);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let mut samples = vec![0u8; n * len];
    let mut labels = Vec::with_capacity(n);
    for (i, out) in samples.chunks_exact_mut(len).enumerate() {
        let class = i % classes;
        render_instance(&protos, class, out, &mut rng);
        labels.push(class as u8);
    }
    Dataset {
        name: "synthetic".into(),
        samples,
        labels,
        len,
        classes,
    }
}

/// Synthetic train/test splits: 12 classes, 784-byte samples, 2,400 train and 480 test
/// samples (200 and 40 per class) from the same class prototypes. `test_held_out` is true
/// (the test set is carved from the same generated pool) and `synthetic` is true.
pub fn synthetic_splits(seed: u64) -> Splits {
    const CLASSES: usize = 12;
    const TRAIN_PER_CLASS: usize = 200;
    const TEST_PER_CLASS: usize = 40;
    let n_train = CLASSES * TRAIN_PER_CLASS;
    let all = synthetic(n_train + CLASSES * TEST_PER_CLASS, 784, CLASSES, seed);
    let idx: Vec<usize> = (0..all.n()).collect();
    let mut train = all.subset(&idx[..n_train]);
    train.name = "synthetic/train".into();
    let mut test = all.subset(&idx[n_train..]);
    test.name = "synthetic/test".into();
    Splits {
        train,
        test,
        test_held_out: true,
        synthetic: true,
    }
}

// ---------------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------------

/// Size and class balance of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub name: String,
    pub n: usize,
    pub len: usize,
    pub classes: usize,
    pub class_counts: Vec<usize>,
    /// Largest over smallest non-zero class count (1.0 when balanced, 0.0 when empty).
    pub imbalance_ratio: f64,
}

/// Counts samples per class and the imbalance ratio of `ds`.
pub fn summarize(ds: &Dataset) -> Summary {
    let class_counts = ds.class_counts();
    let nonzero = class_counts.iter().copied().filter(|&c| c > 0);
    let imbalance_ratio = match (nonzero.clone().max(), nonzero.min()) {
        (Some(max), Some(min)) => max as f64 / min as f64,
        _ => 0.0,
    };
    Summary {
        name: ds.name.clone(),
        n: ds.n(),
        len: ds.len,
        classes: ds.classes,
        class_counts,
        imbalance_ratio,
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} samples × {} bytes, {} classes, imbalance {:.2} (max/min)",
            self.name, self.n, self.len, self.classes, self.imbalance_ratio
        )?;
        writeln!(f, "{:>6} {:>9} {:>8}", "class", "count", "share")?;
        for (class, &count) in self.class_counts.iter().enumerate() {
            let share = if self.n == 0 {
                0.0
            } else {
                100.0 * count as f64 / self.n as f64
            };
            writeln!(f, "{class:>6} {count:>9} {share:>7.2}%")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    /// The shared real-data folder; the real-data tests must fail loudly, not pass, without it.
    fn shared_data_dir() -> PathBuf {
        let dir = super::shared_data_dir();
        assert!(
            dir.is_dir(),
            "real datasets not found at {} (set NAS_SHARED_DATA to the shared data folder)",
            dir.display()
        );
        dir
    }
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    const ISCX: &str = "iscx-vpn2016-12class-sessionl7";
    const USTC: &str = "ustc-tfc2016-20class-sessionl7";
    const ISCX_TRAIN_COUNTS: [usize; 12] = [
        3139, 2068, 5400, 897, 1251, 5400, 3611, 262, 877, 402, 486, 5400,
    ];

    // ----- crafted files -----

    fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).expect("gzip in memory");
        e.finish().expect("gzip in memory")
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).expect("write crafted file");
        p
    }

    /// Writes a valid pair `<prefix>-images-idx3-ubyte[.gz]` / `<prefix>-labels-idx1-ubyte[.gz]`.
    fn write_pair(dir: &Path, prefix: &str, labels: &[u8], rows: u32, cols: u32, compress: bool) {
        let n = labels.len() as u32;
        let len = (rows * cols) as usize;
        let data: Vec<u8> = (0..labels.len() * len).map(|i| (i % 251) as u8).collect();
        let img = idx_bytes(IDX_IMAGES_MAGIC, &[n, rows, cols], &data);
        let lab = idx_bytes(IDX_LABELS_MAGIC, &[n], labels);
        let sfx = if compress { ".gz" } else { "" };
        let (img, lab) = if compress {
            (gz(&img), gz(&lab))
        } else {
            (img, lab)
        };
        write(dir, &format!("{prefix}-images-idx3-ubyte{sfx}"), &img);
        write(dir, &format!("{prefix}-labels-idx1-ubyte{sfx}"), &lab);
    }

    fn assert_names(err: &DataError, path: &Path) {
        let msg = err.to_string();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(msg.contains(name), "error {msg:?} does not name {name}");
    }

    #[test]
    fn reads_raw_and_gz_images_and_labels() {
        let t = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * 6).map(|i| i as u8).collect();
        let raw = idx_bytes(IDX_IMAGES_MAGIC, &[2, 2, 3], &data);
        for (name, bytes) in [("a-images-idx3-ubyte", raw.clone()), ("a.gz", gz(&raw))] {
            let p = write(t.path(), name, &bytes);
            let (n, len, got) = read_idx_images(&p).unwrap();
            assert_eq!((n, len), (2, 6));
            assert_eq!(got, data);
        }
        // 1 and 3 sample dimensions are accepted too; len is their product.
        let p = write(t.path(), "d2", &idx_bytes(0x0802, &[3, 4], &[7; 12]));
        assert_eq!(read_idx_images(&p).unwrap().1, 4);
        let p = write(t.path(), "d4", &idx_bytes(0x0804, &[1, 2, 3, 4], &[7; 24]));
        assert_eq!(read_idx_images(&p).unwrap().1, 24);
        let p = write(
            t.path(),
            "l.gz",
            &gz(&idx_bytes(IDX_LABELS_MAGIC, &[3], &[0, 1, 2])),
        );
        assert_eq!(read_idx_labels(&p).unwrap(), vec![0, 1, 2]);
        // A multi-member gzip file is one stream.
        let whole = idx_bytes(IDX_LABELS_MAGIC, &[4], &[3, 2, 1, 0]);
        let mut multi = gz(&whole[..6]);
        multi.extend(gz(&whole[6..]));
        let p = write(t.path(), "multi.gz", &multi);
        assert_eq!(read_idx_labels(&p).unwrap(), vec![3, 2, 1, 0]);
    }

    #[test]
    fn bad_magic_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let cases = [
            (
                "labels-as-images",
                idx_bytes(IDX_LABELS_MAGIC, &[2], &[0, 1]),
                true,
            ),
            ("float-type", idx_bytes(0x0d03, &[1, 1, 1], &[0; 4]), true),
            ("five-dims", idx_bytes(0x0805, &[1, 1, 1, 1, 1], &[0]), true),
            ("text", b"hello, world, not idx".to_vec(), true),
            (
                "images-as-labels",
                idx_bytes(IDX_IMAGES_MAGIC, &[1, 1, 1], &[0]),
                false,
            ),
        ];
        for (name, bytes, images) in cases {
            for compress in [false, true] {
                let fname = format!("{name}{}", if compress { ".gz" } else { "" });
                let bytes = if compress { gz(&bytes) } else { bytes.clone() };
                let p = write(t.path(), &fname, &bytes);
                let err = if images {
                    read_idx_images(&p).unwrap_err()
                } else {
                    read_idx_labels(&p).unwrap_err()
                };
                assert!(matches!(err, DataError::BadMagic { .. }), "{fname}: {err}");
                assert_names(&err, &p);
            }
        }
    }

    #[test]
    fn zero_and_overflowing_dims_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let p = write(
            t.path(),
            "zero-images",
            &idx_bytes(IDX_IMAGES_MAGIC, &[2, 28, 0], &[]),
        );
        let err = read_idx_images(&p).unwrap_err();
        assert!(matches!(err, DataError::BadDims { .. }), "{err}");
        assert_names(&err, &p);
        let max = u32::MAX;
        let p = write(
            t.path(),
            "huge",
            &idx_bytes(0x0804, &[max, max, max, max], &[0; 8]),
        );
        let err = read_idx_images(&p).unwrap_err();
        assert!(matches!(err, DataError::BadDims { .. }), "{err}");
        assert_names(&err, &p);
        let p = write(
            t.path(),
            "empty-labels",
            &idx_bytes(IDX_LABELS_MAGIC, &[0], &[]),
        );
        let err = read_idx_labels(&p).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err}");
        assert_names(&err, &p);
    }

    #[test]
    fn huge_header_in_tiny_file_is_truncated_not_oom() {
        let t = tempfile::tempdir().unwrap();
        // Claims 4G samples of 784 bytes in about 1 KB.
        let bytes = idx_bytes(IDX_IMAGES_MAGIC, &[u32::MAX, 28, 28], &[1; 1000]);
        for (name, b) in [("big-raw", bytes.clone()), ("big.gz", gz(&bytes))] {
            let p = write(t.path(), name, &b);
            let err = read_idx_images(&p).unwrap_err();
            match &err {
                DataError::Truncated {
                    expected_bytes,
                    actual_bytes,
                    ..
                } => {
                    assert_eq!(*expected_bytes, 16 + u64::from(u32::MAX) * 784);
                    assert_eq!(*actual_bytes, 1016);
                }
                other => panic!("{name}: expected Truncated, got {other}"),
            }
            assert_names(&err, &p);
        }
    }

    #[test]
    fn truncated_files_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let full = idx_bytes(IDX_IMAGES_MAGIC, &[3, 2, 2], &[5; 12]);
        for cut in [2, 9, 15, 20] {
            let part = &full[..cut];
            for (name, b) in [
                (format!("cut{cut}"), part.to_vec()),
                (format!("cut{cut}.gz"), gz(part)),
            ] {
                let p = write(t.path(), &name, &b);
                let err = read_idx_images(&p).unwrap_err();
                assert!(matches!(err, DataError::Truncated { .. }), "{name}: {err}");
                assert_names(&err, &p);
            }
        }
        // A gzip file cut in its compressed stream is a gzip error.
        let z = gz(&full);
        let p = write(t.path(), "cut-stream.gz", &z[..z.len() - 6]);
        let err = read_idx_images(&p).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{err}");
        assert_names(&err, &p);
    }

    #[test]
    fn trailing_bytes_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let mut bytes = idx_bytes(IDX_LABELS_MAGIC, &[3], &[0, 1, 2]);
        bytes.push(9);
        for (name, b) in [("trail", bytes.clone()), ("trail.gz", gz(&bytes))] {
            let p = write(t.path(), name, &b);
            let err = read_idx_labels(&p).unwrap_err();
            assert!(
                matches!(err, DataError::TrailingBytes { .. }),
                "{name}: {err}"
            );
            assert_names(&err, &p);
        }
        // Garbage after a valid gzip member is reported too.
        let mut z = gz(&idx_bytes(IDX_LABELS_MAGIC, &[3], &[0, 1, 2]));
        z.extend_from_slice(b"garbage!");
        let p = write(t.path(), "garbage.gz", &z);
        let err = read_idx_labels(&p).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Gzip { .. } | DataError::TrailingBytes { .. }
            ),
            "{err}"
        );
        assert_names(&err, &p);
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..4000).map(|i| (i * 7 % 256) as u8).collect();
        let z = gz(&idx_bytes(IDX_IMAGES_MAGIC, &[10, 20, 20], &data));
        // Damage the deflate stream, then the CRC trailer.
        for (name, at) in [("body.gz", z.len() / 2), ("crc.gz", z.len() - 6)] {
            let mut bad = z.clone();
            bad[at] ^= 0xff;
            let p = write(t.path(), name, &bad);
            let err = read_idx_images(&p).unwrap_err();
            assert!(
                matches!(
                    err,
                    DataError::Gzip { .. }
                        | DataError::Truncated { .. }
                        | DataError::TrailingBytes { .. }
                ),
                "{name}: {err}"
            );
            assert_names(&err, &p);
        }
    }

    #[test]
    fn missing_file_is_io_error() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("nope-labels-idx1-ubyte");
        let err = read_idx_labels(&p).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err}");
        assert_names(&err, &p);
    }

    #[test]
    fn load_dir_two_pairs_raw_and_gz() {
        for compress in [false, true] {
            let t = tempfile::tempdir().unwrap();
            write_pair(t.path(), "train", &[0, 1, 2, 0, 1], 2, 3, compress);
            write_pair(t.path(), "t10k", &[2, 1], 2, 3, !compress);
            let s = load_dir(t.path(), &LoadOptions::default()).unwrap();
            assert!(!s.test_held_out && !s.synthetic);
            assert_eq!(
                (s.train.n(), s.test.n(), s.train.len, s.train.classes),
                (5, 2, 6, 3)
            );
            assert_eq!(s.test.classes, 3);
            assert!(s.train.name.ends_with("/train") && s.test.name.ends_with("/test"));
        }
        // test-* names and an explicit class count.
        let t = tempfile::tempdir().unwrap();
        write_pair(t.path(), "train", &[0, 1], 1, 4, true);
        write_pair(t.path(), "test", &[1], 1, 4, true);
        let opts = LoadOptions {
            classes: Some(5),
            ..LoadOptions::default()
        };
        let s = load_dir(t.path(), &opts).unwrap();
        assert_eq!((s.train.classes, s.test.n()), (5, 1));
    }

    #[test]
    fn load_dir_single_pair_holds_out_test_and_caps_train() {
        let t = tempfile::tempdir().unwrap();
        let labels: Vec<u8> = (0..60).map(|i| (i % 3) as u8).collect();
        write_pair(t.path(), "t10k", &labels, 2, 2, true);
        let s = load_dir(t.path(), &LoadOptions::default()).unwrap();
        assert!(s.test_held_out);
        assert_eq!((s.train.n(), s.test.n()), (54, 6));
        assert_eq!(s.test.class_counts(), vec![2, 2, 2]);
        let opts = LoadOptions {
            limit_per_class: Some(5),
            ..LoadOptions::default()
        };
        let s = load_dir(t.path(), &opts).unwrap();
        assert_eq!(s.train.class_counts(), vec![5, 5, 5]);
        assert_eq!(s.test.n(), 6);
    }

    #[test]
    fn count_mismatch_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        write_pair(t.path(), "t10k", &[0, 1, 0, 1], 2, 2, false);
        let lab = write(
            t.path(),
            "t10k-labels-idx1-ubyte",
            &idx_bytes(IDX_LABELS_MAGIC, &[3], &[0, 1, 0]),
        );
        let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    images_count: 4,
                    labels_count: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert_names(&err, &lab);
        assert_names(&err, &t.path().join("t10k-images-idx3-ubyte"));
    }

    #[test]
    fn label_out_of_range_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        write_pair(t.path(), "train", &[0, 1, 0, 1], 1, 3, false);
        write_pair(t.path(), "t10k", &[0, 2], 1, 3, false);
        let opts = LoadOptions {
            classes: Some(2),
            ..LoadOptions::default()
        };
        let err = load_dir(t.path(), &opts).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::LabelOutOfRange {
                    index: 1,
                    label: 2,
                    classes: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert_names(&err, &t.path().join("t10k-labels-idx1-ubyte"));
        let bad = LoadOptions {
            classes: Some(0),
            ..LoadOptions::default()
        };
        assert!(matches!(
            load_dir(t.path(), &bad),
            Err(DataError::InvalidParameter { .. })
        ));
    }

    #[test]
    fn length_mismatch_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        write_pair(t.path(), "train", &[0, 1], 28, 28, true);
        write_pair(t.path(), "t10k", &[0, 1], 28, 27, true);
        let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::LengthMismatch {
                    train_len: 784,
                    test_len: 756,
                    ..
                }
            ),
            "{err}"
        );
        assert_names(&err, &t.path().join("train-images-idx3-ubyte.gz"));
        assert_names(&err, &t.path().join("t10k-images-idx3-ubyte.gz"));
    }

    #[test]
    fn missing_and_ambiguous_files_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, DataError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");
        // Images without their labels.
        write_pair(t.path(), "t10k", &[0, 1], 1, 2, false);
        write(
            t.path(),
            "train-images-idx3-ubyte.gz",
            &gz(&idx_bytes(IDX_IMAGES_MAGIC, &[1, 1, 1], &[0])),
        );
        let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, DataError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("train-labels-idx1-ubyte"), "{err}");
        // Two unrelated pairs.
        let t = tempfile::tempdir().unwrap();
        write_pair(t.path(), "foo", &[0, 1], 1, 2, false);
        write_pair(t.path(), "bar", &[0, 1], 1, 2, false);
        let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, DataError::Ambiguous { .. }), "{err}");
        // A directory that does not exist.
        let err = load_dir(&t.path().join("absent"), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err}");
        assert!(err.to_string().contains("absent"));
    }

    #[test]
    fn corrupt_gzip_in_dir_names_the_file() {
        let t = tempfile::tempdir().unwrap();
        write_pair(t.path(), "t10k", &[0, 1, 0, 1], 2, 2, true);
        let p = t.path().join("t10k-images-idx3-ubyte.gz");
        let mut z = std::fs::read(&p).unwrap();
        let mid = z.len() / 2;
        z[mid] ^= 0x55;
        z.truncate(z.len() - 3);
        std::fs::write(&p, &z).unwrap();
        let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
        assert_names(&err, &p);
    }

    #[test]
    fn file_name_classification() {
        let c = |n: &str| classify_idx_name(n).map(|(p, r)| (p, r == IdxRole::Images));
        assert_eq!(
            c("train-images-idx3-ubyte.gz"),
            Some(("train".into(), true))
        );
        assert_eq!(c("t10k-labels-idx1-ubyte"), Some(("t10k".into(), false)));
        assert_eq!(c("Test-images.idx3-ubyte"), Some(("test".into(), true)));
        assert_eq!(
            c("my-set-images-idx3-ubyte.gz"),
            Some(("my-set".into(), true))
        );
        assert_eq!(c("README.md"), None);
        assert_eq!(c("images-idx3-ubyte"), None);
        assert_eq!(c("train-images-idx3-ubyte.zip"), None);
    }

    // ----- in-memory datasets -----

    #[test]
    fn dataset_new_validates() {
        assert!(Dataset::new("ok", vec![1, 2, 3, 4], vec![0, 1], 2, 2).is_ok());
        assert!(Dataset::new("empty", vec![], vec![], 3, 2).is_ok());
        let e = Dataset::new("short", vec![1, 2, 3], vec![0, 1], 2, 2).unwrap_err();
        assert!(matches!(e, DataError::BadShape { .. }) && e.to_string().contains("short"));
        assert!(matches!(
            Dataset::new("len0", vec![], vec![], 0, 2),
            Err(DataError::BadShape { .. })
        ));
        assert!(matches!(
            Dataset::new("c0", vec![1], vec![0], 1, 0),
            Err(DataError::BadShape { .. })
        ));
        assert!(matches!(
            Dataset::new("c257", vec![1], vec![0], 1, 257),
            Err(DataError::BadShape { .. })
        ));
        let e = Dataset::new("lbl", vec![1, 2], vec![0, 5], 1, 3).unwrap_err();
        assert!(matches!(
            e,
            DataError::LabelOutOfRange {
                index: 1,
                label: 5,
                classes: 3,
                ..
            }
        ));
        assert!(e.to_string().contains("lbl"));
    }

    #[test]
    fn dataset_accessors_subset_and_head() {
        let ds = Dataset::new("d", (0..12).collect(), vec![1, 0, 1, 2, 1, 0], 2, 4).unwrap();
        assert_eq!(ds.n(), 6);
        assert_eq!(ds.sample(2), &[4, 5]);
        assert_eq!(ds.get(5), Some((&[10u8, 11][..], 0)));
        assert_eq!(ds.get(6), None);
        assert_eq!(ds.class_counts(), vec![2, 3, 1, 0]);
        let sub = ds.subset(&[3, 0]);
        assert_eq!(
            (sub.samples.clone(), sub.labels.clone(), sub.classes),
            (vec![6, 7, 0, 1], vec![2, 1], 4)
        );
        let head = ds.stratified_head(1);
        assert_eq!(head.labels, vec![1, 0, 2]);
        assert_eq!(head.samples, vec![0, 1, 2, 3, 6, 7]);
        assert_eq!(ds.stratified_head(10), ds);
        assert_eq!(ds.stratified_head(0).n(), 0);
    }

    fn toy_labels(n: usize, classes: usize) -> Vec<u8> {
        // Imbalanced: class c has roughly proportional to (c + 1) samples.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        (0..n)
            .map(|_| {
                let total = classes * (classes + 1) / 2;
                let mut r = rng.random_range(0..total);
                let mut c = 0;
                while r > c {
                    r -= c + 1;
                    c += 1;
                }
                c.min(classes - 1) as u8
            })
            .collect()
    }

    fn check_split(labels: &[u8], classes: usize, fraction: f64, keep: &[usize], held: &[usize]) {
        assert!(keep.windows(2).all(|w| w[0] < w[1]) && held.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<usize> = keep.iter().chain(held).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..labels.len()).collect::<Vec<_>>(),
            "disjoint and covering"
        );
        let total = count_classes(labels, classes);
        let held_counts = count_classes(
            &held.iter().map(|&i| labels[i]).collect::<Vec<_>>(),
            classes,
        );
        for c in 0..classes {
            let target = (fraction * total[c] as f64).round() as i64;
            assert!(
                (held_counts[c] as i64 - target).abs() <= 1,
                "class {c}: held {} of {}, target {target}",
                held_counts[c],
                total[c]
            );
            if total[c] >= 2 {
                assert!(held_counts[c] >= 1 && held_counts[c] < total[c]);
            }
        }
    }

    #[test]
    fn split_is_stratified_deterministic_and_validated() {
        let labels = toy_labels(1000, 5);
        let (k1, h1) = stratified_split(&labels, 5, 0.1, 1).unwrap();
        check_split(&labels, 5, 0.1, &k1, &h1);
        let (k2, h2) = stratified_split(&labels, 5, 0.1, 1).unwrap();
        assert_eq!((k1.clone(), h1.clone()), (k2, h2));
        let (_, h3) = stratified_split(&labels, 5, 0.1, 2).unwrap();
        assert_ne!(h1, h3);
        let (k, h) = stratified_split(&labels, 5, 0.33, 3).unwrap();
        check_split(&labels, 5, 0.33, &k, &h);
        // Tiny classes still get one held-out sample.
        let (_, h) = stratified_split(&[0, 0, 1, 1, 1], 2, 0.1, 0).unwrap();
        assert_eq!(h.len(), 2);
        for f in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(matches!(
                stratified_split(&labels, 5, f, 0),
                Err(DataError::InvalidParameter { .. })
            ));
        }
        assert!(matches!(
            stratified_split(&[0, 0, 1], 2, 0.5, 0),
            Err(DataError::TooFewForSplit {
                class: 1,
                count: 1,
                needed: 2
            })
        ));
        assert!(matches!(
            stratified_split(&[], 2, 0.5, 0),
            Err(DataError::Empty { .. })
        ));
        assert!(matches!(
            stratified_split(&[3], 2, 0.5, 0),
            Err(DataError::LabelOutOfRange { .. })
        ));
    }

    #[test]
    fn kfold_is_stratified_deterministic_and_validated() {
        let labels = toy_labels(997, 6);
        let folds = stratified_kfold(&labels, 6, 5, 11).unwrap();
        assert_eq!(folds.len(), 5);
        let mut all: Vec<usize> = folds.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..labels.len()).collect::<Vec<_>>(),
            "disjoint and covering"
        );
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
        let total = count_classes(&labels, 6);
        for f in &folds {
            assert!(f.windows(2).all(|w| w[0] < w[1]));
            let counts = count_classes(&f.iter().map(|&i| labels[i]).collect::<Vec<_>>(), 6);
            for c in 0..6 {
                assert!(
                    counts[c] == total[c] / 5 || counts[c] == total[c].div_ceil(5),
                    "class {c}"
                );
            }
        }
        assert_eq!(folds, stratified_kfold(&labels, 6, 5, 11).unwrap());
        assert_ne!(folds, stratified_kfold(&labels, 6, 5, 12).unwrap());
        assert!(matches!(
            stratified_kfold(&labels, 6, 1, 0),
            Err(DataError::InvalidParameter { .. })
        ));
        assert!(matches!(
            stratified_kfold(&[0, 0, 0, 1, 1], 2, 3, 0),
            Err(DataError::TooFewForSplit {
                class: 1,
                count: 2,
                needed: 3
            })
        ));
    }

    // ----- synthetic data -----

    #[test]
    fn synthetic_is_deterministic_and_shaped() {
        let a = synthetic(240, 784, 12, 5);
        assert_eq!(a, synthetic(240, 784, 12, 5));
        assert_ne!(a.samples, synthetic(240, 784, 12, 6).samples);
        assert_eq!(
            (a.name.as_str(), a.n(), a.len, a.classes),
            ("synthetic", 240, 784, 12)
        );
        assert_eq!(a.class_counts(), vec![20; 12]);
        // Short sessions: many samples end in zero padding, none is all zero.
        let padded = (0..a.n()).filter(|&i| a.sample(i)[783] == 0).count();
        assert!(padded > a.n() / 4, "{padded}");
        assert!((0..a.n()).all(|i| a.sample(i)[..8].iter().any(|&b| b != 0)));
        // Degenerate arguments do not panic.
        assert_eq!(synthetic(3, 0, 0, 1).len, 1);
        assert_eq!(synthetic(0, 16, 300, 1).classes, 256);
        let s = synthetic_splits(DEFAULT_SEED);
        assert!(s.synthetic);
        assert_eq!(
            (s.train.n(), s.test.n(), s.train.len, s.test.classes),
            (2400, 480, 784, 12)
        );
        assert_eq!(s.test.class_counts(), vec![40; 12]);
        assert_eq!(s, synthetic_splits(DEFAULT_SEED));
    }

    /// The classes are learnable (a naive-Bayes rule on payload byte histograms beats chance
    /// by far) but not trivially (it stays clearly below 100 %: siblings share headers and a
    /// few instances borrow another class's payload).
    #[test]
    fn synthetic_is_learnable_but_not_trivial() {
        let s = synthetic_splits(3);
        let classes = s.train.classes;
        let used = |x: &[u8]| x.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        let mut log_p = vec![vec![1f64; 256]; classes];
        for i in 0..s.train.n() {
            let x = s.train.sample(i);
            for &b in &x[..used(x)] {
                log_p[usize::from(s.train.labels[i])][usize::from(b)] += 1.0;
            }
        }
        for row in &mut log_p {
            let total: f64 = row.iter().sum();
            row.iter_mut().for_each(|v| *v = (*v / total).ln());
        }
        let correct = (0..s.test.n())
            .filter(|&i| {
                let x = s.test.sample(i);
                let score = |c: usize| -> f64 {
                    x[..used(x)].iter().map(|&b| log_p[c][usize::from(b)]).sum()
                };
                let best = (0..classes).max_by(|&a, &b| score(a).total_cmp(&score(b)));
                best == Some(usize::from(s.test.labels[i]))
            })
            .count();
        let acc = correct as f64 / s.test.n() as f64;
        eprintln!("byte-histogram naive Bayes accuracy on synthetic: {acc:.3}");
        assert!(acc > 0.5, "{acc}");
        assert!(acc < 0.99, "{acc}");
    }

    #[test]
    fn summary_counts_and_displays() {
        let ds = Dataset::new("toy", vec![0; 6], vec![0, 0, 0, 2, 2, 0], 1, 3).unwrap();
        let s = summarize(&ds);
        assert_eq!(s.class_counts, vec![4, 0, 2]);
        assert_eq!(s.imbalance_ratio, 2.0);
        let text = s.to_string();
        assert!(
            text.contains("toy") && text.contains("66.67%") && text.contains("33.33%"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2 + 3);
        let empty = summarize(&ds.subset(&[]));
        assert_eq!(empty.imbalance_ratio, 0.0);
        assert!(empty.to_string().contains("0.00%"));
    }

    // ----- real data -----

    #[test]
    fn real_iscx_loads_with_published_counts() {
        let dir = shared_data_dir().join(ISCX);
        let t0 = std::time::Instant::now();
        let s = load_dir(&dir, &LoadOptions::default()).unwrap();
        eprintln!("ISCX loaded in {:?}", t0.elapsed());
        assert!(!s.test_held_out && !s.synthetic);
        assert_eq!((s.train.n(), s.test.n()), (29_193, 3_244));
        assert_eq!(
            (s.train.len, s.train.classes, s.test.classes),
            (784, 12, 12)
        );
        assert_eq!(s.train.class_counts(), ISCX_TRAIN_COUNTS.to_vec());
        assert!(s.test.class_counts().iter().all(|&c| c > 0));
        let sum = summarize(&s.train);
        assert!((sum.imbalance_ratio - 5400.0 / 262.0).abs() < 1e-9);
        eprintln!("{sum}");
        // Direct readers agree.
        let (n, len, data) = read_idx_images(&dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
        assert_eq!((n, len, data.len()), (3_244, 784, 3_244 * 784));
        // Small real subsets.
        let head = s.train.stratified_head(10);
        assert_eq!(head.class_counts(), vec![10; 12]);
        let capped = load_dir(
            &dir,
            &LoadOptions {
                limit_per_class: Some(300),
                ..LoadOptions::default()
            },
        )
        .unwrap();
        let expect: Vec<usize> = ISCX_TRAIN_COUNTS.iter().map(|&c| c.min(300)).collect();
        assert_eq!(capped.train.class_counts(), expect);
        assert_eq!(capped.test.n(), 3_244);
    }

    #[test]
    fn real_ustc_single_pair_holds_out_stratified_test() {
        let dir = shared_data_dir().join(USTC);
        let s = load_dir(&dir, &LoadOptions::default()).unwrap();
        assert!(s.test_held_out);
        assert_eq!(s.train.n() + s.test.n(), 13_325);
        assert_eq!(
            (s.train.len, s.train.classes, s.test.classes),
            (784, 20, 20)
        );
        let (tr, te) = (s.train.class_counts(), s.test.class_counts());
        for c in 0..20 {
            let total = tr[c] + te[c];
            assert!((457..=958).contains(&total), "class {c}: {total}");
            let target = (DEFAULT_TEST_FRACTION * total as f64).round() as i64;
            assert!(
                (te[c] as i64 - target).abs() <= 1,
                "class {c}: {} vs {target}",
                te[c]
            );
        }
        let share = s.test.n() as f64 / 13_325.0;
        assert!((share - 0.10).abs() < 0.005, "{share}");
        // Same seed, same split; another seed, another split.
        let again = load_dir(&dir, &LoadOptions::default()).unwrap();
        assert_eq!(again.test.labels, s.test.labels);
        assert_eq!(again.test.samples, s.test.samples);
        let other = load_dir(
            &dir,
            &LoadOptions {
                seed: 7,
                ..LoadOptions::default()
            },
        )
        .unwrap();
        assert_eq!(other.test.n(), s.test.n());
        assert_ne!(other.test.samples, s.test.samples);
        // k-fold on the real labels.
        let all_labels = read_idx_labels(&dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
        let folds = stratified_kfold(&all_labels, 20, 5, DEFAULT_SEED).unwrap();
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, (0..13_325).collect::<Vec<_>>());
    }
}
