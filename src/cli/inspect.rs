//! `nas data inspect`: a dataset directory's splits, class counts and names, and the samples
//! whose bytes occur under several labels with the test ceiling they set.

use crate::data;
use anyhow::Result;

/// `nas data inspect DIR`.
pub fn run(dir: &std::path::Path, json: bool) -> Result<()> {
    let splits = data::load_dir(dir, &data::LoadOptions::default())?;
    let train = data::summarize(&splits.train);
    let test = data::summarize(&splits.test);
    let names = data::classes::read_class_names(dir)?;
    // Samples whose bytes (DNS transaction IDs masked) occur under several labels.
    let conflicts = data::conflicts::count_conflicts(&splits.train);
    let ceiling = data::conflicts::ceiling(&splits.train, &splits.test);
    let ambiguous = ceiling.ambiguous.iter().filter(|&&a| a).count();
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "train": train, "test": test, "test_held_out": splits.test_held_out,
                "class_names": names,
                "conflicts": {
                    "train_groups": conflicts.groups,
                    "train_samples": conflicts.samples,
                    "train_relabelled_by_majority": conflicts.changed,
                    "test_ambiguous": ambiguous,
                    "test_ceiling_lost": ceiling.lost(),
                    "test_ceiling_accuracy": ceiling.accuracy(),
                },
            }))?
        )?;
    } else {
        if let Some(names) = &names {
            outln!("classes (classes.json):")?;
            for (i, n) in names.iter().enumerate() {
                outln!("{i:>6}  {n}")?;
            }
            if names.len() != splits.train.classes {
                outln!(
                    "note: classes.json names {} classes, the labels use {}",
                    names.len(),
                    splits.train.classes
                )?;
            }
            outln!()?;
        }
        outln!("train split:\n{train}")?;
        let how = if splits.test_held_out {
            " (held out from the single pair, stratified)"
        } else {
            ""
        };
        outln!("test split{how}:\n{test}")?;
        outln!(
            "\nsame bytes, several labels (DNS-format query IDs masked): {} training samples in {} \
             groups,\n{} of them not under their group's majority label (`--relabel-conflicts` on \
             search and\ntrain gives them that label); {ambiguous} test samples have bytes that \
             training holds under\nanother label: no classifier of the bytes gets more than \
             {:.2} % of the test split right",
            conflicts.samples,
            conflicts.groups,
            conflicts.changed,
            100.0 * ceiling.accuracy()
        )?;
    }
    Ok(())
}
