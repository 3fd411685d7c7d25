//! Where a run's data comes from, as recorded in its configuration, and loading it: the same
//! splits every time for the same source and seed.

use super::{load_dir, synthetic_splits, LoadOptions, Splits};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the run's data comes from (recorded so that a resume loads the same data).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataSource {
    Dir {
        path: PathBuf,
        limit_per_class: Option<usize>,
        /// Training samples whose bytes occur under several labels get the most frequent one
        /// ([`super::conflicts::relabel_conflicts`]; the test split is left as it is).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        relabel_conflicts: bool,
    },
    Synthetic {
        seed: u64,
    },
}

/// Load the data a run was configured with.
pub fn load_data(source: &DataSource, seed: u64) -> Result<Splits> {
    Ok(match source {
        DataSource::Synthetic { seed } => synthetic_splits(*seed),
        DataSource::Dir {
            path,
            limit_per_class,
            relabel_conflicts,
        } => {
            let opts = LoadOptions {
                limit_per_class: *limit_per_class,
                seed,
                ..LoadOptions::default()
            };
            let mut splits = load_dir(path, &opts)
                .with_context(|| format!("cannot load the dataset {}", path.display()))?;
            if *relabel_conflicts {
                splits.relabelled = Some(super::conflicts::relabel_conflicts(&mut splits.train));
            }
            splits
        }
    })
}
