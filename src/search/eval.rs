//! `nas eval`: a run's winner on the test split.

use super::*;

// ---------------------------------------------------------------------------------------------
// nas eval
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory written by `nas search`
    #[arg(long)]
    pub run: PathBuf,
    /// Evaluate on this dataset's test split instead of the run's own data
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
}

/// `nas eval`: the winner's test metrics and confusion matrix.
pub fn eval(a: EvalArgs) -> Result<()> {
    let run = open_run(&a.run)?;
    let (rec, w) = run.best()?;
    let source = match &a.data {
        Some(p) => DataSource::Dir {
            path: p.clone(),
            limit_per_class: None,
        },
        None => run.config.data.clone(),
    };
    let splits = load_data(&source, run.config.seed)?;
    if splits.test.len != rec.spec.input_len {
        bail!(
            "the test samples have length {}, the winner expects {}",
            splits.test.len,
            rec.spec.input_len
        );
    }
    if splits.test.classes > rec.spec.classes {
        bail!(
            "the test split has {} classes, the winner was trained for {}",
            splits.test.classes,
            rec.spec.classes
        );
    }
    let m = train::evaluate(&rec.spec, &w, &splits.test)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"winner": rec.id, "spec": rec.spec, "test": m})
            )?
        );
    } else {
        println!("winner {}: {}", rec.id, rec.summary);
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
