//! Samples whose bytes say less than their labels: the same bytes under several labels.
//!
//! Captures are full of background traffic that belongs to no application (Windows' LLMNR
//! queries for `wpad`, SSDP, LAN-sync broadcasts) and is labelled with whatever capture it was
//! recorded in. Such sessions are byte for byte the same, but for the random 16-bit
//! transaction ID of each DNS-format query, across classes. Here samples are compared with
//! those IDs set to zero ([`masked`]): [`ceiling`] says how much of a test split no classifier
//! of the bytes can get right, and [`relabel_conflicts`] gives every training sample of such a
//! group the group's majority label, the answer a classifier should learn for it (the test
//! split is never changed).

use super::Dataset;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// DNS header length: ID, flags, four counts.
const DNS_HEADER: usize = 12;

/// The length of the DNS-format query message at the start of `b` (a standard query's flags,
/// one question, no records), or `None` when `b` does not start with one.
fn query_len(b: &[u8]) -> Option<usize> {
    let header = b.get(..DNS_HEADER)?;
    if !matches!(header[2..4], [0x00 | 0x01, 0x00]) || header[4..12] != [0, 1, 0, 0, 0, 0, 0, 0] {
        return None;
    }
    let mut i = DNS_HEADER;
    loop {
        let label = *b.get(i)? as usize;
        if label == 0 {
            break;
        }
        if label > 63 {
            return None;
        }
        i += 1 + label;
    }
    // The name's final zero, then type and class.
    let end = i + 1 + 4;
    (end <= b.len()).then_some(end)
}

/// `sample` with the transaction ID of each DNS-format query message of a leading chain of
/// them set to zero, and the number of messages in the chain.
pub fn masked(sample: &[u8]) -> (Vec<u8>, usize) {
    let mut b = sample.to_vec();
    let (mut at, mut messages) = (0, 0);
    while let Some(n) = query_len(&b[at..]) {
        b[at] = 0;
        b[at + 1] = 0;
        at += n;
        messages += 1;
    }
    (b, messages)
}

/// How often each label occurs per masked sample of `ds`.
pub fn label_counts(ds: &Dataset) -> HashMap<Vec<u8>, BTreeMap<u8, usize>> {
    let mut seen: HashMap<Vec<u8>, BTreeMap<u8, usize>> = HashMap::new();
    for i in 0..ds.n() {
        *seen
            .entry(masked(ds.sample(i)).0)
            .or_default()
            .entry(ds.labels[i])
            .or_default() += 1;
    }
    seen
}

/// The most frequent label of `counts` (the smallest of equally frequent ones).
pub fn majority(counts: &BTreeMap<u8, usize>) -> Option<u8> {
    counts
        .iter()
        .max_by_key(|&(&l, &c)| (c, std::cmp::Reverse(l)))
        .map(|(&l, _)| l)
}

/// What [`relabel_conflicts`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Relabelled {
    /// Groups of identical (masked) samples under more than one label.
    pub groups: usize,
    /// Samples in those groups.
    pub samples: usize,
    /// Samples whose label changed to their group's majority.
    pub changed: usize,
}

/// The groups of `ds`'s samples whose masked bytes occur under several labels, and how many
/// of their samples [`relabel_conflicts`] would change.
pub fn count_conflicts(ds: &Dataset) -> Relabelled {
    summarize(&label_counts(ds))
}

fn summarize(seen: &HashMap<Vec<u8>, BTreeMap<u8, usize>>) -> Relabelled {
    let mut r = Relabelled::default();
    for counts in seen.values().filter(|c| c.len() > 1) {
        let total: usize = counts.values().sum();
        r.groups += 1;
        r.samples += total;
        r.changed += total - counts.values().max().copied().unwrap_or(0);
    }
    r
}

/// Gives every sample of `ds` whose masked bytes occur under several labels the most frequent
/// of them (for a training split: the Bayes answer for those bytes, instead of noise the
/// network cannot fit).
pub fn relabel_conflicts(ds: &mut Dataset) -> Relabelled {
    let seen = label_counts(ds);
    for i in 0..ds.n() {
        let counts = &seen[&masked(ds.sample(i)).0];
        if counts.len() > 1 {
            ds.labels[i] = majority(counts).expect("a group has a label");
        }
    }
    summarize(&seen)
}

/// How much of a test split no classifier of the bytes can get right ([`ceiling`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ceiling {
    /// Test samples.
    pub samples: usize,
    /// Per test sample: its masked bytes occur in the training split under another label than
    /// its own, or under several.
    pub ambiguous: Vec<bool>,
    /// Per test sample: whether the best answer, its bytes' majority label in training, is
    /// right (true for the samples that are not ambiguous).
    pub best_right: Vec<bool>,
    /// Wrong even with each group's one answer chosen by its test labels.
    pub oracle_lost: usize,
}

impl Relabelled {
    /// One line for a run's log: what changed, out of `n` training samples.
    pub fn describe(&self, n: usize) -> String {
        format!(
            "--relabel-conflicts: {} of {n} training samples relabelled to their group's majority \
             label ({} samples in {} groups share their bytes, DNS transaction IDs masked, under \
             several labels)",
            self.changed, self.samples, self.groups
        )
    }
}

impl Ceiling {
    /// Test samples the best answers miss.
    pub fn lost(&self) -> usize {
        self.best_right.iter().filter(|&&r| !r).count()
    }

    /// The ceiling's accuracy: what the best answers can get right at most, as a fraction.
    pub fn accuracy(&self) -> f64 {
        (self.samples - self.lost()) as f64 / self.samples.max(1) as f64
    }
}

/// The test samples of `test` whose masked bytes the training split `train` also holds under
/// another label, and what the best answer to them (their majority label there) gets right:
/// every other test sample counted as answerable, an upper bound on any classifier's accuracy.
pub fn ceiling(train: &Dataset, test: &Dataset) -> Ceiling {
    let seen = label_counts(train);
    let n = test.n();
    let (mut ambiguous, mut best_right) = (vec![false; n], vec![true; n]);
    let mut by_group: HashMap<Vec<u8>, BTreeMap<u8, usize>> = HashMap::new();
    for i in 0..n {
        let key = masked(test.sample(i)).0;
        let Some(counts) = seen.get(&key) else {
            continue;
        };
        let label = test.labels[i];
        if counts.len() == 1 && counts.contains_key(&label) {
            continue;
        }
        ambiguous[i] = true;
        best_right[i] = majority(counts) == Some(label);
        *by_group.entry(key).or_default().entry(label).or_default() += 1;
    }
    let oracle_lost = by_group
        .values()
        .map(|g| g.values().sum::<usize>() - g.values().max().copied().unwrap_or(0))
        .sum();
    Ceiling {
        samples: n,
        ambiguous,
        best_right,
        oracle_lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session of LLMNR-style queries for `name`, with these transaction IDs, zero-padded
    /// to 64 bytes.
    fn queries(name: &str, ids: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for id in ids {
            b.extend(id.to_be_bytes());
            b.extend([0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
            b.push(name.len() as u8);
            b.extend(name.bytes());
            b.extend([0, 0, 1, 0, 1]);
        }
        b.resize(64, 0);
        b
    }

    fn dataset(samples: &[Vec<u8>], labels: &[u8]) -> Dataset {
        Dataset::new("t", samples.concat(), labels.to_vec(), 64, 3).unwrap()
    }

    #[test]
    fn masks_each_query_id_and_nothing_else() {
        let (m, n) = masked(&queries("wpad", &[0x1234, 0xbeef]));
        assert_eq!(n, 2);
        assert_eq!(m, queries("wpad", &[0, 0]));
        // Not a query: a TLS record header, left as it is.
        let tls: Vec<u8> = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01]
            .into_iter()
            .chain([7; 58])
            .collect();
        assert_eq!(masked(&tls), (tls.clone(), 0));
        // A truncated name ends the chain: nothing past the sample is read.
        let mut cut = queries("wpad", &[5]);
        cut.truncate(15);
        assert_eq!(masked(&cut).1, 0);
    }

    #[test]
    fn relabels_conflicts_to_their_majority_and_sets_the_ceiling() {
        let a = |id| queries("wpad", &[id, id + 1]);
        let other = queries("smtp", &[9]);
        // Four `wpad` pairs: label 0 three times, 1 once; one sample of its own.
        let mut train = dataset(&[a(1), a(2), a(3), a(4), other.clone()], &[0, 0, 1, 0, 2]);
        let counted = count_conflicts(&train);
        let r = relabel_conflicts(&mut train);
        assert_eq!(counted, r);
        assert_eq!(
            r,
            Relabelled {
                groups: 1,
                samples: 4,
                changed: 1
            }
        );
        assert_eq!(train.labels, [0, 0, 0, 0, 2]);

        let train = dataset(&[a(1), a(2), a(3), a(4), other.clone()], &[0, 0, 1, 0, 2]);
        let test = dataset(&[a(7), a(8), other, queries("x", &[1])], &[0, 1, 2, 1]);
        let c = ceiling(&train, &test);
        assert_eq!(c.ambiguous, [true, true, false, false]);
        assert_eq!(c.best_right, [true, false, true, true]);
        assert_eq!((c.lost(), c.oracle_lost), (1, 1));
        assert!((c.accuracy() - 0.75).abs() < 1e-12);
    }
}
