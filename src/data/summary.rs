//!  figures: counts, classes, imbalance.

use super::*;

/// Size and class balance of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetSummary {
    pub name: String,
    pub n: usize,
    pub len: usize,
    pub classes: usize,
    pub class_counts: Vec<usize>,
    /// Largest over smallest non-zero class count (1.0 when balanced, 0.0 when empty).
    pub imbalance_ratio: f64,
}

/// Counts samples per class and the imbalance ratio of `ds`.
pub fn summarize(ds: &Dataset) -> DatasetSummary {
    let class_counts = ds.class_counts();
    let nonzero = class_counts.iter().copied().filter(|&c| c > 0);
    let imbalance_ratio = match (nonzero.clone().max(), nonzero.min()) {
        (Some(max), Some(min)) => max as f64 / min as f64,
        _ => 0.0,
    };
    DatasetSummary {
        name: ds.name.clone(),
        n: ds.n(),
        len: ds.len,
        classes: ds.classes,
        class_counts,
        imbalance_ratio,
    }
}

impl fmt::Display for DatasetSummary {
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
