//! The search's figures: every candidate's score by generation (with the parents and the
//! rejected children), and score against flash, RAM and latency with the Pareto fronts.

use super::axes::{
    box_mark, draw_legend, err, labelled_line, line_mark, range, svg_of, Chart, FONT,
};
use super::{Figure, BUDGET, PARENT, PARETO, REJECTED, REUSED, TRAINED, WINNER};
use crate::report::model::{latency_value, Candidate, RunReport};
use anyhow::Result;
use plotters::prelude::*;

/// x position of a candidate in the progress plot: its generation, spread by index.
pub fn progress_x(c: &Candidate, children: usize) -> f64 {
    c.generation as f64 + c.index as f64 / (children.max(1) as f64 + 1.0)
}

/// Most labelled ticks on the generation axis: a long run gets every 10th, 100th, …
/// generation labelled (plotters picks the step), never one tick per generation.
pub const MAX_GENERATION_TICKS: usize = 20;

/// The last generation the run has recorded anything of (a candidate, a parent, a rejected
/// child): the progress plot spans the generations the run holds, not the configured ones (an
/// interrupted or time-budgeted run of 10⁸ planned generations is drawn as cheaply as it is
/// long).
pub fn last_recorded_generation(r: &RunReport) -> usize {
    let candidates = r.candidates.iter().map(|c| c.generation);
    let parents = r.parents.iter().map(|p| p.generation);
    let rejected = r.rejected.iter().map(|x| x.generation);
    candidates.chain(parents).chain(rejected).max().unwrap_or(0)
}

pub(super) fn progress(r: &RunReport) -> Result<Figure> {
    let (ylo, yhi) = range(r.candidates.iter().map(|c| c.score), 0.1);
    // Head room above the points for the legend.
    let yhi = yhi + 0.45 * (yhi - ylo);
    let shown = last_recorded_generation(r).max(1);
    let xmax = shown as f64 + 1.0;
    let svg = svg_of((900, 420), |root| {
        let mut ch = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.3..xmax, ylo..yhi)
            .map_err(err)?;
        ch.configure_mesh()
            .x_desc("generation")
            .y_desc(format!("validation {}", r.metric))
            .x_labels((shown + 2).min(MAX_GENERATION_TICKS))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        draw_parents(&mut ch, r)?;
        draw_candidates(&mut ch, r)?;
        draw_rejected(&mut ch, r, ylo + 0.04 * (yhi - ylo), 0.04 * (yhi - ylo))?;
        draw_legend(&mut ch, Some(SeriesLabelPosition::UpperRight), 12)
    })?;
    Ok(Figure {
        id: "fig-progress",
        title: "Search progress".into(),
        caption: format!(
            "Every candidate's validation {} by generation (index spread within a generation); \
             the line is each generation's parent. {} candidates, {} reused, {} rejected by the budgets; \
             generations 0-{} of the {} configured.",
            r.metric,
            r.candidates.len(),
            r.candidates.iter().filter(|c| c.duplicate_of.is_some()).count(),
            r.rejected.iter().map(|x| x.rejected.count).sum::<usize>(),
            last_recorded_generation(r),
            r.generations
        ),
        svg,
    })
}

/// The parent line: the initial parent, then each generation's parent.
fn draw_parents(ch: &mut Chart, r: &RunReport) -> Result<()> {
    let mut line: Vec<(f64, f64)> = Vec::new();
    for p in &r.parents {
        line.push((p.generation as f64 - 0.5, p.score));
        line.push((p.generation as f64 + 0.5, p.score));
    }
    if !line.is_empty() {
        labelled_line(ch, line, PARENT, "parent of the generation")?;
    }
    Ok(())
}

/// Trained candidates as dots, reused ones as rings.
fn draw_candidates(ch: &mut Chart, r: &RunReport) -> Result<()> {
    let children = r.children;
    let trained: Vec<_> = r
        .candidates
        .iter()
        .filter(|c| c.duplicate_of.is_none())
        .collect();
    ch.draw_series(
        trained
            .iter()
            .map(|c| Circle::new((progress_x(c, children), c.score), 4, TRAINED.filled())),
    )
    .map_err(err)?
    .label("trained candidate")
    .legend(box_mark(TRAINED.filled()));
    let reused: Vec<_> = r
        .candidates
        .iter()
        .filter(|c| c.duplicate_of.is_some())
        .collect();
    if !reused.is_empty() {
        ch.draw_series(reused.iter().map(|c| {
            Circle::new(
                (progress_x(c, children), c.score),
                6,
                REUSED.stroke_width(2),
            )
        }))
        .map_err(err)?
        .label("reused (architecture seen before)")
        .legend(box_mark(REUSED.stroke_width(2)));
    }
    Ok(())
}

/// A cross per generation with rejected children at height `y`, and their count written
/// `dy` above it.
fn draw_rejected(ch: &mut Chart, r: &RunReport, y: f64, dy: f64) -> Result<()> {
    if r.rejected.is_empty() {
        return Ok(());
    }
    ch.draw_series(
        r.rejected
            .iter()
            .map(|rj| Cross::new((rj.generation as f64 + 0.5, y), 5, REJECTED.stroke_width(2))),
    )
    .map_err(err)?
    .label("children rejected by the budgets (count)")
    .legend(line_mark(REJECTED, 2));
    ch.draw_series(r.rejected.iter().map(|rj| {
        Text::new(
            format!("{} rejected", rj.rejected.count),
            (rj.generation as f64 + 0.55, y + dy),
            (FONT, 11).into_font().color(&REJECTED),
        )
    }))
    .map_err(err)?;
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Resource {
    Flash,
    Ram,
    Latency,
}

/// A candidate's value on the x axis of the `what` scatter plot (KiB, or latency).
fn resource_value(c: &Candidate, what: Resource) -> Option<f64> {
    let kb = |b: u64| b as f64 / 1024.0;
    match what {
        Resource::Flash => Some(kb(c.flash_bytes)),
        Resource::Ram => Some(kb(c.ram_bytes)),
        Resource::Latency => latency_value(c),
    }
}

/// The x axis of a scatter plot: its description, the budget (if any), the Pareto front
/// (ids, cheapest first) and the figure's title.
struct Axis<'r> {
    desc: String,
    budget: Option<f64>,
    front: &'r [String],
    title: &'static str,
}

fn scatter_axis(r: &RunReport, what: Resource) -> Axis<'_> {
    let kb = |b: u64| b as f64 / 1024.0;
    let ms = r.latency.modelled || r.latency.instructions_per_mac.is_some();
    match what {
        Resource::Flash => Axis {
            desc: "estimated flash (KiB)".to_string(),
            budget: Some(kb(r.limits.max_flash_bytes)),
            front: &r.pareto.flash,
            title: "Score against flash",
        },
        Resource::Ram => Axis {
            desc: "estimated RAM (KiB)".to_string(),
            budget: Some(kb(r.limits.max_ram_bytes)),
            front: &r.pareto.ram,
            title: "Score against RAM",
        },
        Resource::Latency => Axis {
            desc: if ms {
                format!(
                    "estimated latency at {} MHz (ms)",
                    r.latency.clock_hz / 1_000_000
                )
            } else {
                "executed MACs".to_string()
            },
            budget: None,
            front: &r.pareto.latency,
            title: "Score against latency",
        },
    }
}

pub(super) fn scatter(r: &RunReport, id: &'static str, what: Resource) -> Result<Figure> {
    let axis = scatter_axis(r, what);
    let pts: Vec<(&Candidate, f64)> = r
        .candidates
        .iter()
        .filter(|c| c.duplicate_of.is_none())
        .filter_map(|c| Some((c, resource_value(c, what)?)))
        .collect();
    let (mut xlo, mut xhi) = range(pts.iter().map(|p| p.1).chain(axis.budget), 0.08);
    xlo = xlo.max(0.0);
    if xhi <= xlo {
        xhi = xlo + 1.0;
    }
    let (ylo, yhi) = range(pts.iter().map(|p| p.0.score), 0.1);
    let winner = r.winner.as_ref().map(|w| w.record.id.clone());
    let front_pts: Vec<(f64, f64)> = axis
        .front
        .iter()
        .filter_map(|id| pts.iter().find(|(c, _)| &c.id == id))
        .map(|(c, x)| (*x, c.score))
        .collect();
    let svg = svg_of((440, 340), |root| {
        let mut ch = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(xlo..xhi, ylo..yhi)
            .map_err(err)?;
        ch.configure_mesh()
            .x_desc(axis.desc.clone())
            .y_desc(format!("validation {}", r.metric))
            .x_labels(6)
            .label_style((FONT, 11))
            .draw()
            .map_err(err)?;
        if let Some(b) = axis.budget {
            labelled_line(&mut ch, vec![(b, ylo), (b, yhi)], BUDGET, "budget")?;
        }
        draw_front(&mut ch, &front_pts, xhi)?;
        draw_points(&mut ch, &pts, winner.as_ref())?;
        draw_legend(&mut ch, Some(SeriesLabelPosition::LowerRight), 11)
    })?;
    let caption = match what {
        Resource::Latency => format!(
            "x: {}. {} candidates on the Pareto front.",
            r.latency.description,
            axis.front.len()
        ),
        _ => format!(
            "Cost-model estimates; the vertical line is the budget. {} candidates on the Pareto front.",
            axis.front.len()
        ),
    };
    Ok(Figure {
        id,
        title: axis.title.into(),
        caption,
        svg,
    })
}

/// The front as a staircase up to `xhi`: each point holds its score until the next, cheaper
/// ones are worse.
fn draw_front(ch: &mut Chart, front_pts: &[(f64, f64)], xhi: f64) -> Result<()> {
    let Some(&(_, last)) = front_pts.last() else {
        return Ok(());
    };
    let mut stairs = Vec::new();
    for (i, &(x, y)) in front_pts.iter().enumerate() {
        if i > 0 {
            stairs.push((x, front_pts[i - 1].1));
        }
        stairs.push((x, y));
    }
    stairs.push((xhi, last));
    labelled_line(ch, stairs, PARETO, "Pareto front")
}

/// The candidates' points, the winner's in its own colour.
fn draw_points(ch: &mut Chart, pts: &[(&Candidate, f64)], winner: Option<&String>) -> Result<()> {
    ch.draw_series(pts.iter().map(|(c, x)| {
        let color = if Some(&c.id) == winner {
            WINNER
        } else {
            TRAINED
        };
        Circle::new((*x, c.score), 4, color.filled())
    }))
    .map_err(err)?
    .label("candidate")
    .legend(box_mark(TRAINED.filled()));
    if winner.is_some() {
        // Legend entry only (the winner's point is drawn above, in its colour).
        ch.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(err)?
            .label("winner")
            .legend(box_mark(WINNER.filled()));
    }
    Ok(())
}
