//! A dataset directory: finding the train/test IDX pairs, loading and checking them.

use super::*;

/// Which file of a pair a directory entry is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdxRole {
    Images,
    Labels,
}

/// An images file and a labels file sharing a prefix (`train`, `t10k`, ...).
#[derive(Default)]
pub(crate) struct Pair {
    images: Option<PathBuf>,
    labels: Option<PathBuf>,
}

/// The images and labels of one pair, read and checked against each other.
pub(crate) struct LoadedPair {
    images: PathBuf,
    labels_path: PathBuf,
    len: usize,
    samples: Vec<u8>,
    labels: Vec<u8>,
}

pub(crate) const LOOKED_FOR: &str =
    "train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz] with \
t10k-* (or test-*) images/labels, or a single <prefix>-images-idx3-ubyte[.gz] + \
<prefix>-labels-idx1-ubyte[.gz] pair";

/// Splits an IDX file name such as `t10k-images-idx3-ubyte.gz` (also `train-labels.idx1-ubyte`)
/// into its prefix and role.
pub(crate) fn classify_idx_name(name: &str) -> Option<(String, IdxRole)> {
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
pub(crate) fn scan_dir(dir: &Path) -> Result<(BTreeMap<String, Pair>, Vec<String>), DataError> {
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

pub(crate) fn is_gz_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Reads one pair and checks that the images and labels agree on the number of samples.
pub(crate) fn load_pair(images: &Path, labels_path: &Path) -> Result<LoadedPair, DataError> {
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
    let complete = complete_pairs(&pairs).map_err(missing)?;
    let name = dataset_name(dir);
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
        (Some((_, ti, tl)), Some((_, si, sl))) => load_train_test(
            &name,
            (ti.as_path(), tl.as_path()),
            (si.as_path(), sl.as_path()),
            opts,
        ),
        _ if complete.len() == 1 => {
            let (_, images, labels) = &complete[0];
            load_held_out(&name, images, labels, opts)
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

/// The complete pairs of `pairs` as `(prefix, images, labels)`; a pair that was started but
/// misses its images or labels is an error, returned as what to look for.
fn complete_pairs(pairs: &BTreeMap<String, Pair>) -> Result<Vec<(&str, PathBuf, PathBuf)>, String> {
    let mut complete = Vec::new();
    for (prefix, pair) in pairs {
        match (&pair.images, &pair.labels) {
            (Some(i), Some(l)) => complete.push((prefix.as_str(), i.clone(), l.clone())),
            (Some(_), None) => {
                return Err(format!(
                    "{prefix}-labels-idx1-ubyte[.gz] to go with the {prefix} images"
                ))
            }
            (None, Some(_)) => {
                return Err(format!(
                    "{prefix}-images-idx3-ubyte[.gz] to go with the {prefix} labels"
                ))
            }
            (None, None) => {}
        }
    }
    Ok(complete)
}

/// The dataset's name: the directory's name, else its path.
fn dataset_name(dir: &Path) -> String {
    dir.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Loads a train pair and a test pair (each as `(images, labels)`), read as given.
fn load_train_test(
    name: &str,
    (train_images, train_labels): (&Path, &Path),
    (test_images, test_labels): (&Path, &Path),
    opts: &LoadOptions,
) -> Result<Splits, DataError> {
    let train = load_pair(train_images, train_labels)?;
    let test = load_pair(test_images, test_labels)?;
    if train.len != test.len {
        return Err(DataError::LengthMismatch {
            train_path: train.images,
            train_len: train.len,
            test_path: test.images,
            test_len: test.len,
        });
    }
    let classes = resolve_classes(opts, [&train, &test])?;
    check_test_labels_trained(&train, &test)?;
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
        relabelled: None,
    })
}

/// Loads a single pair and holds out a stratified test split of it.
fn load_held_out(
    name: &str,
    images: &Path,
    labels: &Path,
    opts: &LoadOptions,
) -> Result<Splits, DataError> {
    let pair = load_pair(images, labels)?;
    let classes = resolve_classes(opts, [&pair])?;
    let all = Dataset::new(name, pair.samples, pair.labels, pair.len, classes)?;
    let (keep, held) = stratified_split(&all.labels, classes, opts.test_fraction, opts.seed)?;
    let mut train = all.subset(&keep);
    train.name = format!("{name}/train");
    let mut test = all.subset(&held);
    test.name = format!("{name}/test");
    Ok(Splits {
        train: cap_train(train, opts),
        test,
        test_held_out: true,
        synthetic: false,
        relabelled: None,
    })
}

/// Every test label must be a class the training labels hold: a model is never tested on a
/// class it could not have learned, and a stray test label (99 beside 0..=2) does not size
/// the network for 100 classes.
fn check_test_labels_trained(train: &LoadedPair, test: &LoadedPair) -> Result<(), DataError> {
    let mut present = [false; MAX_CLASSES];
    for &l in &train.labels {
        present[usize::from(l)] = true;
    }
    match test.labels.iter().position(|&l| !present[usize::from(l)]) {
        Some(index) => Err(DataError::UntrainedTestLabel {
            path: test.labels_path.clone(),
            index,
            label: test.labels[index],
            train_path: train.labels_path.clone(),
            train_classes: (0..=u8::MAX).filter(|&c| present[usize::from(c)]).collect(),
        }),
        None => Ok(()),
    }
}

/// The number of classes to use, with every label of every pair checked against it.
pub(crate) fn resolve_classes<const N: usize>(
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

pub(crate) fn cap_train(train: Dataset, opts: &LoadOptions) -> Dataset {
    match opts.limit_per_class {
        Some(limit) => train.stratified_head(limit),
        None => train,
    }
}

pub(crate) fn check_classes(classes: usize) -> Result<(), DataError> {
    if classes == 0 || classes > MAX_CLASSES {
        return Err(DataError::InvalidParameter {
            name: "number of classes",
            reason: format!("{classes} is outside 1..={MAX_CLASSES}"),
        });
    }
    Ok(())
}

/// Checks that every label is below `classes`; `origin` names the file or dataset.
pub(crate) fn check_labels(labels: &[u8], classes: usize, origin: &Path) -> Result<(), DataError> {
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

pub(crate) fn count_classes(labels: &[u8], classes: usize) -> Vec<usize> {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(usize::from(l)) {
            *c += 1;
        }
    }
    counts
}
