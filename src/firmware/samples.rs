//! The inputs embedded in the firmware: a dataset's test samples or synthetic sequences.

use super::*;

/// The inputs embedded in the firmware.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    /// Where they come from, for the report.
    pub source: String,
    pub inputs: Vec<Vec<u8>>,
    /// Their classes, when known.
    pub labels: Option<Vec<u8>>,
}

impl Samples {
    /// `n` deterministic synthetic byte sequences of length `len`: a pseudo-random one, a ramp,
    /// all zeros, all 0xFF, then more pseudo-random ones.
    pub fn synthetic(n: usize, len: usize) -> Samples {
        let mut state: u32 = 0x2545_f491;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        };
        let inputs = (0..n)
            .map(|i| match i {
                1 => (0..len).map(|j| j as u8).collect(),
                2 => vec![0; len],
                3 => vec![0xff; len],
                _ => (0..len).map(|_| next()).collect(),
            })
            .collect();
        Samples {
            source: format!(
                "{n} synthetic byte sequences (random, ramp, zeros, 0xff; no --data given)"
            ),
            inputs,
            labels: None,
        }
    }

    /// Up to `n` samples of a dataset directory's test split, spread over the classes (the first
    /// samples of each class in file order).
    pub fn from_dir(dir: &Path, n: usize) -> Result<Samples> {
        let splits = crate::data::load_dir(dir, &crate::data::LoadOptions::default())
            .with_context(|| format!("cannot read test samples from {}", dir.display()))?;
        let test = &splits.test;
        ensure!(
            !test.is_empty(),
            "the test split of {} is empty",
            dir.display()
        );
        let per_class = n.div_ceil(test.classes.max(1)).max(1);
        let head = test.stratified_head(per_class);
        // Interleave the classes so that a small n still covers several of them.
        let mut by_class: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
        for (i, &l) in head.labels.iter().enumerate() {
            by_class.entry(l).or_default().push(i);
        }
        let mut idx = Vec::new();
        for round in 0..per_class {
            for v in by_class.values() {
                if let Some(&i) = v.get(round) {
                    idx.push(i);
                }
            }
        }
        idx.truncate(n);
        Ok(Samples {
            source: format!(
                "{} test samples of {} (`{}`)",
                idx.len(),
                dir.display(),
                test.name
            ),
            inputs: idx.iter().map(|&i| head.sample(i).to_vec()).collect(),
            labels: Some(idx.iter().map(|&i| head.labels[i]).collect()),
        })
    }
}
