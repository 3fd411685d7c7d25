//! `nas report`: a run directory at a glance.

use crate::report::{self, REPORT_FILE};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One self-contained HTML page with SVG plots (no scripts, nothing fetched)
    Html,
    /// The same data as JSON, on stdout unless --out is given
    Json,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    nas report --run runs/iscx-f401                    # writes runs/iscx-f401/report.html\n  \
    nas report --run runs/iscx-f401 --out /tmp/r.html\n  \
    nas report --run runs/iscx-f401 --format json | jq .pareto")]
pub struct ReportArgs {
    /// Run directory of `nas search`
    #[arg(long)]
    pub run: PathBuf,
    /// Output file (default: report.html in the run directory for HTML, stdout for JSON)
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
}

pub fn run(a: ReportArgs) -> Result<()> {
    let r = report::load(&a.run)?;
    match a.format {
        ReportFormat::Json => {
            let text = serde_json::to_string_pretty(&r)?;
            match &a.out {
                Some(p) => crate::util::write_atomic(p, format!("{text}\n").as_bytes())
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => outln!("{text}")?,
            }
        }
        ReportFormat::Html => {
            let out = a.out.clone().unwrap_or_else(|| a.run.join(REPORT_FILE));
            let page = report::render_html(&r)?;
            crate::util::write_atomic(&out, page.as_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            outln!(
                "wrote {} ({} candidates{}{})",
                out.display(),
                r.candidates.len(),
                if r.verify.is_some() {
                    ", with the verify measurement"
                } else {
                    ""
                },
                if r.complete {
                    ""
                } else {
                    "; the run is not complete"
                }
            )?;
        }
    }
    Ok(())
}
