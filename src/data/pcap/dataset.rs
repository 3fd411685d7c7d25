//! From the samples of each class to a dataset: samples found in several classes dropped,
//! `--max-per-class` applied, and the seeded stratified train/test split.

use super::super::{stratified_split, DataError};
use super::{ClassCaptures, ClassReport, PcapOptions};
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet};

/// Drops every sample found in more than one class from all of them, counting the drops in
/// the classes' reports.
pub(super) fn drop_conflicting(samples: &mut [Vec<Vec<u8>>], reports: &mut [ClassReport]) {
    let conflicted = conflicting(samples);
    if conflicted.is_empty() {
        return;
    }
    for (c, list) in samples.iter_mut().enumerate() {
        let before = list.len();
        list.retain(|s| !conflicted.contains(s));
        reports[c].conflicting = before - list.len();
    }
}

/// The samples that occur in more than one class.
fn conflicting(samples: &[Vec<Vec<u8>>]) -> HashSet<Vec<u8>> {
    let mut owner: HashMap<&[u8], usize> = HashMap::new();
    let mut conflicted: HashSet<Vec<u8>> = HashSet::new();
    for (c, list) in samples.iter().enumerate() {
        for s in list {
            match owner.get(s.as_slice()) {
                Some(&o) if o != c => {
                    conflicted.insert(s.clone());
                }
                _ => {
                    owner.insert(s, c);
                }
            }
        }
    }
    conflicted
}

/// Applies `--max-per-class` (a seeded random subset, kept in order) class by class, and checks
/// that every class keeps at least the 2 samples a split needs, saying where the packets of a
/// class that does not went.
pub(super) fn cap_and_check(
    opts: &PcapOptions,
    classes: &[ClassCaptures],
    samples: &mut [Vec<Vec<u8>>],
    reports: &mut [ClassReport],
) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    for ((list, rep), class) in samples.iter_mut().zip(reports.iter_mut()).zip(classes) {
        if let Some(cap) = opts.max_per_class {
            if list.len() > cap {
                rep.capped = list.len() - cap;
                keep_random(list, cap, &mut rng);
            }
        }
        if list.len() < 2 {
            bail!(
                "class {:?} ({}) has {} usable sample(s), and a train/test split needs at least 2 \
                 per class: {}",
                rep.name,
                class.dir.display(),
                list.len(),
                rep.shortfall()
            );
        }
    }
    Ok(())
}

/// Keeps `cap` samples of `list` drawn with `rng`, in their original order.
fn keep_random(list: &mut Vec<Vec<u8>>, cap: usize, rng: &mut ChaCha8Rng) {
    let mut idx: Vec<usize> = (0..list.len()).collect();
    idx.shuffle(rng);
    let mut keep = idx[..cap].to_vec();
    keep.sort_unstable();
    let old = std::mem::take(list);
    let mut keep_iter = keep.into_iter().peekable();
    for (i, s) in old.into_iter().enumerate() {
        if keep_iter.peek() == Some(&i) {
            keep_iter.next();
            list.push(s);
        }
    }
}

/// The samples of every class, one after the other (class-major), and the stratified split of
/// their indices.
pub(super) struct Split<'a> {
    /// Every sample, class 0's first.
    pub flat: Vec<&'a [u8]>,
    /// The class of each sample in `flat`.
    pub labels: Vec<u8>,
    /// Indices into `flat` of the train set, and of the test set.
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

impl<'a> Split<'a> {
    /// Splits `samples` (per class) with `opts.test_fraction` and `opts.seed`.
    pub fn new(samples: &'a [Vec<Vec<u8>>], classes: usize, opts: &PcapOptions) -> Result<Self> {
        let labels: Vec<u8> = samples
            .iter()
            .enumerate()
            .flat_map(|(c, l)| std::iter::repeat_n(c as u8, l.len()))
            .collect();
        let flat: Vec<&[u8]> = samples.iter().flatten().map(Vec::as_slice).collect();
        let (train, test) = stratified_split(&labels, classes, opts.test_fraction, opts.seed)
            .map_err(|e: DataError| anyhow::anyhow!(e))?;
        Ok(Split {
            flat,
            labels,
            train,
            test,
        })
    }

    /// Adds each class's train and test counts to its report.
    pub fn count_into(&self, reports: &mut [ClassReport]) {
        for &i in &self.train {
            reports[self.labels[i] as usize].train += 1;
        }
        for &i in &self.test {
            reports[self.labels[i] as usize].test += 1;
        }
    }
}
