//! How much of a dataset's test split no classifier of the bytes can get right.
//!
//! A test sample whose bytes also occur in the training split, under more than one label or
//! under another label than its own, is at best answered with the label it has most often
//! there: that is all its bytes say. Before comparing, the random 16-bit transaction ID of
//! every DNS / LLMNR / mDNS query message is set to zero (the background lookups a capture is
//! full of, e.g. Windows' LLMNR queries for `wpad`, differ in nothing else). Every other test
//! sample is counted as answerable, so the figure is an upper bound on accuracy, not an
//! estimate of it.
//!
//! ```text
//! cargo run --release --example label_ceiling -- ../shared/data/iscx-vpn2016-12class-sessionl7
//! nas eval --run runs/r1 --predictions /tmp/pred.csv
//! cargo run --release --example label_ceiling -- ../shared/data/iscx-vpn2016-12class-sessionl7 /tmp/pred.csv
//! ```
//!
//! Prints the ceiling, the groups of such samples that cost it the most (what their bytes are,
//! their labels in the training split) and, given the CSV of `nas eval --predictions` on the
//! same test split, the model's accuracy on those samples and on the rest. A dataset with a
//! single images file is split as `nas search` splits it with its default seed (42; a second
//! argument `--seed N` after the paths changes it).

use anyhow::{bail, Context, Result};
use nas::data::conflicts::{ceiling, label_counts, majority, masked};
use nas::data::{load_dir, LoadOptions};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// DNS header length: ID, flags, four counts.
const HEADER: usize = 12;

/// The query name of the DNS message at the start of `b` (dotted labels).
fn query_name(b: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut i = HEADER;
    while let Some(&l) = b.get(i) {
        if l == 0 || i + 1 + l as usize > b.len() {
            break;
        }
        labels.push(String::from_utf8_lossy(&b[i + 1..i + 1 + l as usize]).into_owned());
        i += 1 + l as usize;
    }
    labels.join(".")
}

/// What a group's bytes are, in a few words.
fn describe(sample: &[u8], messages: usize) -> String {
    if messages > 0 {
        return format!(
            "{messages} DNS-format queries for \"{}\"",
            query_name(sample)
        );
    }
    let head: String = sample[..sample.len().min(12)]
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '.'
            }
        })
        .collect();
    let hex: Vec<String> = sample[..sample.len().min(8)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{} \"{head}\"", hex.join(" "))
}

/// `nas eval --predictions`: whether each test sample was predicted right.
fn read_predictions(path: &PathBuf, n: usize) -> Result<Vec<bool>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut correct = Vec::with_capacity(n);
    for (line_no, line) in text.lines().enumerate().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(index), Some(flag)) = (fields.first(), fields.get(3)) else {
            bail!(
                "{}:{}: expected index,label,predicted,correct,…",
                path.display(),
                line_no + 1
            );
        };
        if index.parse::<usize>().ok() != Some(correct.len()) {
            bail!(
                "{}:{}: rows must be in test-split order",
                path.display(),
                line_no + 1
            );
        }
        correct.push(*flag == "1");
    }
    if correct.len() != n {
        bail!(
            "{} has {} rows, the test split {n} samples: not predictions on this split",
            path.display(),
            correct.len()
        );
    }
    Ok(correct)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = LoadOptions::default();
    let mut paths = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--seed" {
            opts.seed = it.next().context("--seed needs a number")?.parse()?;
        } else {
            paths.push(PathBuf::from(a));
        }
    }
    let Some(dir) = paths.first() else {
        bail!("usage: label_ceiling DATASET_DIR [PREDICTIONS.csv] [--seed N]");
    };
    let splits = load_dir(dir, &opts)?;
    let (train, test) = (&splits.train, &splits.test);

    let seen = label_counts(train);
    let c = ceiling(train, test);

    // The test samples whose bytes say less than their label, grouped by masked bytes.
    struct Group {
        what: String,
        train: BTreeMap<u8, usize>,
        best: u8,
        test: BTreeMap<u8, usize>,
    }
    let mut groups: HashMap<Vec<u8>, Group> = HashMap::new();
    for i in (0..test.n()).filter(|&i| c.ambiguous[i]) {
        let (key, messages) = masked(test.sample(i));
        let counts = &seen[&key];
        let g = groups.entry(key).or_insert_with(|| Group {
            what: describe(test.sample(i), messages),
            train: counts.clone(),
            best: majority(counts).unwrap_or(0),
            test: BTreeMap::new(),
        });
        *g.test.entry(test.labels[i]).or_default() += 1;
    }

    let n = test.n();
    let lost = c.lost();
    let (ambiguous, oracle_lost) = (&c.ambiguous, c.oracle_lost);
    let n_amb = ambiguous.iter().filter(|&&a| a).count();
    println!(
        "{}: {n} test samples; {n_amb} of them have bytes that the training split also holds \
         under another label (DNS transaction IDs masked)",
        test.name
    );
    println!(
        "ceiling: at most {} of {n} right ({:.2} %): the best answer to those {n_amb} (their \
         majority label in training) misses {lost}",
        n - lost,
        100.0 * (n - lost) as f64 / n as f64
    );

    // Summed over groups that look alike (the same description: e.g. two-query and
    // four-query LLMNR sessions are told apart by their length, not by their ID).
    #[derive(Default)]
    struct Row {
        train: BTreeMap<u8, usize>,
        test: BTreeMap<u8, usize>,
        missed: usize,
    }
    let mut by_what: BTreeMap<String, Row> = BTreeMap::new();
    for g in groups.values() {
        let e = by_what.entry(g.what.clone()).or_default();
        for (&l, &c) in &g.train {
            *e.train.entry(l).or_default() += c;
        }
        for (&l, &c) in &g.test {
            *e.test.entry(l).or_default() += c;
            if l != g.best {
                e.missed += c;
            }
        }
    }
    println!(
        "even choosing each group's answer by its test labels: at most {} right ({:.2} %)",
        n - oracle_lost,
        100.0 * (n - oracle_lost) as f64 / n as f64
    );
    let mut rows: Vec<_> = by_what.into_iter().collect();
    rows.sort_by_key(|(_, r)| std::cmp::Reverse(r.missed));
    let fmt = |m: &BTreeMap<u8, usize>| {
        let mut v: Vec<(u8, usize)> = m.iter().map(|(&l, &c)| (l, c)).collect();
        v.sort_by_key(|&(l, c)| (std::cmp::Reverse(c), l));
        v.iter()
            .take(4)
            .map(|(l, c)| format!("{l}:{c}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("\nmissed | test (label:count)      | train (label:count)           | bytes");
    for (what, r) in rows.iter().take(10) {
        if r.missed == 0 {
            break;
        }
        println!(
            "{:>6} | {:<24} | {:<29} | {what}",
            r.missed,
            fmt(&r.test),
            fmt(&r.train)
        );
    }

    if let Some(pred) = paths.get(1) {
        let correct = read_predictions(pred, n)?;
        let count = |amb: bool| {
            let idx: Vec<usize> = (0..n).filter(|&i| ambiguous[i] == amb).collect();
            let right = idx.iter().filter(|&&i| correct[i]).count();
            (idx.len(), right)
        };
        let ((na, ra), (nr, rr)) = (count(true), count(false));
        let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
        println!(
            "\nthe model ({}): {:.2} % overall; on the {na} samples above {ra} right ({:.2} %, \
             the ceiling {}), on the other {nr} {rr} right ({:.2} %)",
            pred.display(),
            pct(ra + rr, n),
            pct(ra, na),
            na - lost,
            pct(rr, nr)
        );
    }
    Ok(())
}
