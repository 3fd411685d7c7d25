//! `nas report`: a run directory at a glance, as one self-contained HTML file with SVG plots
//! (or the same data as JSON).
//!
//! - [`model`] reads the run (config, candidates' records and costs, the best model, the
//!   summary, `events.jsonl` and a saved `verify.json`) into a [`RunReport`];
//! - [`plots`] draws its figures with plotters' SVG backend;
//! - [`html`] puts them on one page with no scripts and no external resources.

pub mod html;
pub mod model;
pub mod plots;

pub use model::{load, save_verify, RunReport, SavedVerify, VerifiedModel, VERIFY_FILE};

use anyhow::Result;
use std::path::Path;

/// The file name `nas search` and `nas report` write in the run directory by default.
pub use crate::search::layout::REPORT as REPORT_FILE;

/// Time to leave at the end of a search's time budget for its report, for a run of
/// `candidates` candidates: reading and drawing are linear in the candidates (not in the
/// configured generations). Measured on 2 busy cores: 0.02 s for 5 candidates, 0.29 s for
/// 2,020 (0.14 ms each); the figures below leave a wide margin (a slow shared filesystem).
pub fn time_estimate(candidates: usize) -> std::time::Duration {
    std::time::Duration::from_secs_f64(
        REPORT_BASE_SECONDS + REPORT_SECONDS_PER_CANDIDATE * candidates as f64,
    )
}

/// See [`time_estimate`].
pub const REPORT_BASE_SECONDS: f64 = 0.5;
/// See [`time_estimate`].
pub const REPORT_SECONDS_PER_CANDIDATE: f64 = 0.002;

/// The report page of a run directory.
pub fn render_html(r: &RunReport) -> Result<String> {
    let figs = plots::figures(r)?;
    Ok(html::render(r, &figs))
}

/// Read the run in `dir` and write its HTML report to `out`.
pub fn write_report(dir: &Path, out: &Path) -> Result<RunReport> {
    let r = load(dir)?;
    let page = render_html(&r)?;
    crate::util::write_atomic(out, page.as_bytes())?;
    Ok(r)
}

#[cfg(test)]
mod tests;
