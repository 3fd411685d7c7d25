//! Classification metrics: accuracy, weighted and macro precision/recall/F1 (the seed's
//! weighted figures, as scikit-learn computes them) and the confusion matrix.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub samples: usize,
    pub accuracy: f64,
    pub weighted_precision: f64,
    pub weighted_recall: f64,
    pub weighted_f1: f64,
    pub macro_f1: f64,
    /// Mean cross-entropy, when computed from logits.
    #[serde(default)]
    pub loss: Option<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// Metrics from true and predicted labels (`classes` rows/columns in the confusion matrix).
pub fn from_predictions(truth: &[u8], pred: &[u8], classes: usize) -> Metrics {
    assert_eq!(
        truth.len(),
        pred.len(),
        "truth and predictions differ in length"
    );
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (&t, &p) in truth.iter().zip(pred) {
        confusion[t as usize][p as usize] += 1;
    }
    let n = truth.len();
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    let (mut wp, mut wr, mut wf, mut mf) = (0.0, 0.0, 0.0, 0.0);
    let mut present = 0usize;
    for (c, row) in confusion.iter().enumerate() {
        let tp = row[c] as f64;
        let support: usize = row.iter().sum();
        let predicted: usize = (0..classes).map(|r| confusion[r][c]).sum();
        // scikit-learn's zero_division=0 convention.
        let precision = if predicted > 0 {
            tp / predicted as f64
        } else {
            0.0
        };
        let recall = if support > 0 {
            tp / support as f64
        } else {
            0.0
        };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        let w = support as f64 / n.max(1) as f64;
        wp += w * precision;
        wr += w * recall;
        wf += w * f1;
        // Macro over the classes present in the truth or the predictions (scikit-learn's labels).
        if support > 0 || predicted > 0 {
            mf += f1;
            present += 1;
        }
    }
    Metrics {
        samples: n,
        accuracy: correct as f64 / n.max(1) as f64,
        weighted_precision: wp,
        weighted_recall: wr,
        weighted_f1: wf,
        macro_f1: mf / present.max(1) as f64,
        loss: None,
        confusion,
    }
}

/// Index of the largest value, the first one on ties (as the kernels' `predict`): the one
/// definition of a prediction, for float logits and int8 outputs alike.
pub fn argmax<T: PartialOrd>(v: &[T]) -> usize {
    let mut best = 0;
    for (k, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = k;
        }
    }
    best
}

/// Index of the largest logit of each row.
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<u8> {
    logits
        .chunks_exact(classes)
        .map(|row| argmax(row) as u8)
        .collect()
}

/// Mean softmax cross-entropy of logits against labels.
pub fn cross_entropy(logits: &[f32], labels: &[u8], classes: usize) -> f64 {
    let mut total = 0.0f64;
    for (row, &y) in logits.chunks_exact(classes).zip(labels) {
        total += log_sum_exp(row) - row[y as usize] as f64;
    }
    total / labels.len().max(1) as f64
}

/// `ln Σ exp(v)` over one row of logits, computed from its largest value (no overflow).
fn log_sum_exp(row: &[f32]) -> f64 {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
}

/// The softmax probability of class `k` for one row of logits.
pub fn softmax_at(row: &[f32], k: usize) -> f64 {
    (row[k] as f64 - log_sum_exp(row)).exp()
}

/// Metrics (with loss) from logits.
pub fn from_logits(logits: &[f32], labels: &[u8], classes: usize) -> Metrics {
    let mut m = from_predictions(labels, &argmax_rows(logits, classes), classes);
    m.loss = Some(cross_entropy(logits, labels, classes));
    m
}

impl Metrics {
    /// One line: accuracy and F1 figures.
    pub fn brief(&self) -> String {
        format!(
            "acc {:.2} %  weighted F1 {:.2} %  macro F1 {:.2} %",
            100.0 * self.accuracy,
            100.0 * self.weighted_f1,
            100.0 * self.macro_f1
        )
    }

    /// The confusion matrix as a text table (rows: true class, columns: predicted).
    pub fn confusion_table(&self, names: Option<&[&str]>) -> String {
        let k = self.confusion.len();
        let label = |i: usize| {
            names
                .and_then(|n| n.get(i))
                .map_or(i.to_string(), |s| s.to_string())
        };
        let w = (0..k).map(|i| label(i).len()).max().unwrap_or(1).max(5);
        let mut s = String::new();
        let _ = write!(s, "{:>w$} |", "true\\pred");
        for j in 0..k {
            let _ = write!(s, " {:>5}", j);
        }
        let _ = writeln!(s, " | recall");
        for (i, row) in self.confusion.iter().enumerate() {
            let support: usize = row.iter().sum();
            let _ = write!(s, "{:>w$} |", label(i), w = w.max(9));
            for v in row {
                let _ = write!(s, " {:>5}", v);
            }
            let rec = if support > 0 {
                100.0 * row[i] as f64 / support as f64
            } else {
                0.0
            };
            let _ = writeln!(s, " | {rec:5.1} %");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn_on_a_small_case() {
        // sklearn: y_true = [0,0,1,1,2,2], y_pred = [0,1,1,1,2,0]
        // precision: c0 1/2, c1 2/3, c2 1/1; recall: c0 1/2, c1 1, c2 1/2
        // f1: c0 0.5, c1 0.8, c2 0.6667; weighted (supports 2,2,2) = mean.
        let m = from_predictions(&[0, 0, 1, 1, 2, 2], &[0, 1, 1, 1, 2, 0], 3);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        let f1 = (0.5 + 0.8 + 2.0 / 3.0) / 3.0;
        assert!((m.weighted_f1 - f1).abs() < 1e-12);
        assert!((m.macro_f1 - f1).abs() < 1e-12);
        assert!((m.weighted_precision - (0.5 + 2.0 / 3.0 + 1.0) / 3.0).abs() < 1e-12);
        assert_eq!(m.confusion[0], vec![1, 1, 0]);
        assert_eq!(m.confusion[2], vec![1, 0, 1]);
    }

    #[test]
    fn argmax_and_loss() {
        let logits = [0.0, 2.0, 1.0, 5.0, 0.0, 0.0];
        assert_eq!(argmax_rows(&logits, 3), vec![1, 0]);
        let ce = cross_entropy(&[0.0, 0.0], &[1], 2);
        assert!((ce - 2f64.ln()).abs() < 1e-9);
    }
}
