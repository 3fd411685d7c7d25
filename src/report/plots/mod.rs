//! The report's figures, drawn with plotters into SVG strings (no fonts needed: the SVG backend
//! writes `<text>` elements that the browser renders).
//!
//! Every series has its own colour (the constants below), so that a reader of the SVG — the
//! tests — can find each series by colour and count its points: scatter points are `<circle>`s
//! filled (or, for reused candidates, stroked) with the series colour, lines are `<polyline>`s
//! stroked with it, bars are `<rect>`s filled with it.
//!
//! `axes` holds what the figures share; each other submodule draws one family of figures.

mod axes;
mod confusion;
mod search;
mod training;
mod verify;
mod winner;

pub use confusion::heat;
pub use search::{last_recorded_generation, progress_x, MAX_GENERATION_TICKS};
pub use training::shown_history;

use super::model::RunReport;
use anyhow::Result;
use plotters::prelude::*;
use search::Resource;

/// Candidates trained in this run.
pub const TRAINED: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
/// Candidates whose architecture was evaluated before (result reused), drawn as rings.
pub const REUSED: RGBColor = RGBColor(0x7f, 0x7f, 0x7f);
/// The parent of each generation.
pub const PARENT: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
/// Children rejected by the budgets.
pub const REJECTED: RGBColor = RGBColor(0xd6, 0x27, 0x28);
/// The Pareto front.
pub const PARETO: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
/// The winner.
pub const WINNER: RGBColor = RGBColor(0x94, 0x67, 0xbd);
/// Budget lines.
pub const BUDGET: RGBColor = RGBColor(0xe3, 0x77, 0xc2);
/// Per-layer bars.
pub const MACS: RGBColor = RGBColor(0x17, 0xbe, 0xcf);
pub const PARAMS: RGBColor = RGBColor(0xbc, 0xbd, 0x22);
pub const FLASH: RGBColor = RGBColor(0x8c, 0x56, 0x4b);
/// Arena: the buffer a layer writes, and the one it reads.
pub const ARENA_OUT: RGBColor = RGBColor(0x31, 0x82, 0xbd);
pub const ARENA_IN: RGBColor = RGBColor(0x9e, 0xca, 0xe1);
/// Training curves.
pub const TRAIN_LOSS: RGBColor = RGBColor(0x1b, 0x9e, 0x77);
pub const VAL_LOSS: RGBColor = RGBColor(0xd9, 0x5f, 0x02);
pub const VAL_ACC: RGBColor = RGBColor(0x75, 0x70, 0xb3);
pub const LR: RGBColor = RGBColor(0xe7, 0x29, 0x8a);
/// Verify: the cost model's estimate and the ELF's measurement.
pub const ESTIMATE: RGBColor = RGBColor(0xa6, 0xce, 0xe3);
pub const MEASURED: RGBColor = RGBColor(0x33, 0xa0, 0x2c);

/// One rendered figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable id (`fig-progress`, ...), the HTML anchor.
    pub id: &'static str,
    pub title: String,
    pub caption: String,
    pub svg: String,
}

/// All figures of a report, in page order; the winner's and the verify figures only when the
/// run has them.
pub fn figures(r: &RunReport) -> Result<Vec<Figure>> {
    let mut out = vec![search::progress(r)?];
    for (id, what) in [
        ("fig-pareto-flash", Resource::Flash),
        ("fig-pareto-ram", Resource::Ram),
        ("fig-pareto-latency", Resource::Latency),
    ] {
        out.push(search::scatter(r, id, what)?);
    }
    if let Some(w) = &r.winner {
        out.push(winner::layers(w)?);
        out.push(winner::arena(w)?);
        out.push(training::training(w)?);
        out.push(confusion::confusion(r, w)?);
    }
    if r.verify.is_some() {
        out.push(verify::verify(r)?);
    }
    Ok(out)
}
