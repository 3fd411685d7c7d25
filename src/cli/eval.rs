//! `nas eval`: a run's delivered model on the test split.

use crate::search::rundir::ModelDir;
use crate::search::{load_data, DataSource};
use crate::train;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory written by `nas search` or `nas train`
    #[arg(long)]
    pub run: PathBuf,
    /// Evaluate this candidate of the search (e.g. g003-c01) instead of the delivered model;
    /// its final training when it had one
    #[arg(long, value_name = "ID")]
    pub candidate: Option<String>,
    /// Evaluate on this dataset's test split instead of the run's own data
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
}

/// `nas eval`: the delivered model's test metrics and confusion matrix.
pub fn run(a: EvalArgs) -> Result<()> {
    let md = ModelDir::open_model(&a.run, a.candidate.as_deref())?;
    let (spec, w) = (&md.spec, &md.weights);
    let source = match &a.data {
        Some(p) => DataSource::Dir {
            path: p.clone(),
            limit_per_class: None,
        },
        None => md.data.clone(),
    };
    let splits = load_data(&source, md.seed)?;
    if splits.test.len != spec.input_len {
        bail!(
            "the test samples have length {}, the winner expects {}",
            splits.test.len,
            spec.input_len
        );
    }
    if splits.test.classes > spec.classes {
        bail!(
            "the test split has {} classes, the winner was trained for {}",
            splits.test.classes,
            spec.classes
        );
    }
    let m = train::evaluate(spec, w, &splits.test)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"run": a.run, "candidate": a.candidate, "spec": spec, "test": m})
            )?
        );
    } else {
        match &a.candidate {
            Some(id) => println!("{} candidate {id}: {}", a.run.display(), spec.summary()),
            None => println!("{}: {}", a.run.display(), spec.summary()),
        }
        println!(
            "test split ({} samples{}): {}",
            m.samples,
            if splits.synthetic { ", synthetic" } else { "" },
            m.brief()
        );
        println!(
            "weighted precision {:.2} %  weighted recall {:.2} %\n",
            100.0 * m.weighted_precision,
            100.0 * m.weighted_recall
        );
        print!("{}", m.confusion_table(None));
    }
    Ok(())
}
