//! Stratified splits and k folds.

use super::*;

/// Indices of each class, in order, after checking the labels.
pub(crate) fn indices_by_class(
    labels: &[u8],
    classes: usize,
) -> Result<Vec<Vec<usize>>, DataError> {
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
