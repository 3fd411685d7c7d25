//! The report's figures, drawn with plotters into SVG strings (no fonts needed: the SVG backend
//! writes `<text>` elements that the browser renders).
//!
//! Every series has its own colour (the constants below), so that a reader of the SVG — the
//! tests — can find each series by colour and count its points: scatter points are `<circle>`s
//! filled (or, for reused candidates, stroked) with the series colour, lines are `<polyline>`s
//! stroked with it, bars are `<rect>`s filled with it.

use super::model::{latency_value, Candidate, RunReport, Winner};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

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

const FONT: &str = "sans-serif";

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot failed: {e:?}")
}

/// `[lo, hi]` widened so that points sit inside, never empty.
fn range(values: impl IntoIterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).abs().max(hi.abs() * 0.05).max(1e-9);
    (lo - pad * span, hi + pad * span)
}

fn svg_of(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(s)
}

/// All figures of a report, in page order; the winner's and the verify figures only when the
/// run has them.
pub fn figures(r: &RunReport) -> Result<Vec<Figure>> {
    let mut out = vec![progress(r)?];
    for (id, what) in [
        ("fig-pareto-flash", Resource::Flash),
        ("fig-pareto-ram", Resource::Ram),
        ("fig-pareto-latency", Resource::Latency),
    ] {
        out.push(scatter(r, id, what)?);
    }
    if let Some(w) = &r.winner {
        out.push(layers(w)?);
        out.push(arena(w)?);
        out.push(training(w)?);
        out.push(confusion(r, w)?);
    }
    if r.verify.is_some() {
        out.push(verify(r)?);
    }
    Ok(out)
}

/// x position of a candidate in the progress plot: its generation, spread by index.
pub fn progress_x(c: &Candidate, children: usize) -> f64 {
    c.generation as f64 + c.index as f64 / (children.max(1) as f64 + 1.0)
}

fn progress(r: &RunReport) -> Result<Figure> {
    let children = r.children;
    let (ylo, yhi) = range(r.candidates.iter().map(|c| c.score), 0.1);
    // Head room above the points for the legend.
    let yhi = yhi + 0.45 * (yhi - ylo);
    let xmax = r.generations.max(1) as f64 + 1.0;
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
            .x_labels(r.generations.max(1) + 2)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        // The parent line: the initial parent, then each generation's parent.
        let mut line: Vec<(f64, f64)> = Vec::new();
        for p in &r.parents {
            line.push((p.generation as f64 - 0.5, p.score));
            line.push((p.generation as f64 + 0.5, p.score));
        }
        if !line.is_empty() {
            ch.draw_series(LineSeries::new(line, PARENT.stroke_width(2)))
                .map_err(err)?
                .label("parent of the generation")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], PARENT.stroke_width(2))
                });
        }
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
        .legend(|(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], TRAINED.filled()));
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
            .legend(|(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], REUSED.stroke_width(2)));
        }
        if !r.rejected.is_empty() {
            let y = ylo + 0.04 * (yhi - ylo);
            ch.draw_series(r.rejected.iter().map(|rj| {
                Cross::new((rj.generation as f64 + 0.5, y), 5, REJECTED.stroke_width(2))
            }))
            .map_err(err)?
            .label("children rejected by the budgets (count)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], REJECTED.stroke_width(2)));
            ch.draw_series(r.rejected.iter().map(|rj| {
                Text::new(
                    format!("{} rejected", rj.count),
                    (rj.generation as f64 + 0.55, y + 0.04 * (yhi - ylo)),
                    (FONT, 11).into_font().color(&REJECTED),
                )
            }))
            .map_err(err)?;
        }
        ch.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .draw()
            .map_err(err)?;
        Ok(())
    })?;
    Ok(Figure {
        id: "fig-progress",
        title: "Search progress".into(),
        caption: format!(
            "Every candidate's validation {} by generation (index spread within a generation); \
             the line is each generation's parent. {} candidates, {} reused, {} rejected by the budgets.",
            r.metric,
            r.candidates.len(),
            r.candidates.iter().filter(|c| c.duplicate_of.is_some()).count(),
            r.rejected.iter().map(|x| x.count).sum::<usize>()
        ),
        svg,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Resource {
    Flash,
    Ram,
    Latency,
}

fn scatter(r: &RunReport, id: &'static str, what: Resource) -> Result<Figure> {
    let kb = |b: u64| b as f64 / 1024.0;
    let value = |c: &Candidate| -> Option<f64> {
        match what {
            Resource::Flash => Some(kb(c.flash_bytes)),
            Resource::Ram => Some(kb(c.ram_bytes)),
            Resource::Latency => latency_value(c),
        }
    };
    let ms = r.latency.modelled || r.latency.instructions_per_mac.is_some();
    let (xdesc, budget, front, title) = match what {
        Resource::Flash => (
            "estimated flash (KiB)".to_string(),
            Some(kb(r.limits.max_flash_bytes)),
            &r.pareto.flash,
            "Score against flash",
        ),
        Resource::Ram => (
            "estimated RAM (KiB)".to_string(),
            Some(kb(r.limits.max_ram_bytes)),
            &r.pareto.ram,
            "Score against RAM",
        ),
        Resource::Latency => (
            if ms {
                format!(
                    "estimated latency at {} MHz (ms)",
                    r.latency.clock_hz / 1_000_000
                )
            } else {
                "executed MACs".to_string()
            },
            None,
            &r.pareto.latency,
            "Score against latency",
        ),
    };
    let pts: Vec<(&Candidate, f64)> = r
        .candidates
        .iter()
        .filter(|c| c.duplicate_of.is_none())
        .filter_map(|c| Some((c, value(c)?)))
        .collect();
    let (mut xlo, mut xhi) = range(pts.iter().map(|p| p.1).chain(budget), 0.08);
    xlo = xlo.max(0.0);
    if xhi <= xlo {
        xhi = xlo + 1.0;
    }
    let (ylo, yhi) = range(pts.iter().map(|p| p.0.score), 0.1);
    let winner = r.winner.as_ref().map(|w| w.record.id.clone());
    let front_pts: Vec<(f64, f64)> = front
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
            .x_desc(xdesc.clone())
            .y_desc(format!("validation {}", r.metric))
            .x_labels(6)
            .label_style((FONT, 11))
            .draw()
            .map_err(err)?;
        if let Some(b) = budget {
            ch.draw_series(LineSeries::new(
                vec![(b, ylo), (b, yhi)],
                BUDGET.stroke_width(2),
            ))
            .map_err(err)?
            .label("budget")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BUDGET.stroke_width(2)));
        }
        // The front as a staircase: each point holds its score until the next, cheaper ones
        // are worse.
        if !front_pts.is_empty() {
            let mut stairs = Vec::new();
            for (i, &(x, y)) in front_pts.iter().enumerate() {
                if i > 0 {
                    stairs.push((x, front_pts[i - 1].1));
                }
                stairs.push((x, y));
            }
            stairs.push((xhi, front_pts[front_pts.len() - 1].1));
            ch.draw_series(LineSeries::new(stairs, PARETO.stroke_width(2)))
                .map_err(err)?
                .label("Pareto front")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], PARETO.stroke_width(2))
                });
        }
        ch.draw_series(pts.iter().map(|(c, x)| {
            let color = if Some(&c.id) == winner.as_ref() {
                WINNER
            } else {
                TRAINED
            };
            Circle::new((*x, c.score), 4, color.filled())
        }))
        .map_err(err)?
        .label("candidate")
        .legend(|(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], TRAINED.filled()));
        if winner.is_some() {
            // Legend entry only (the winner's point is drawn above, in its colour).
            ch.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .map_err(err)?
                .label("winner")
                .legend(|(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], WINNER.filled()));
        }
        ch.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 11))
            .draw()
            .map_err(err)?;
        Ok(())
    })?;
    let caption = match what {
        Resource::Latency => format!(
            "x: {}. {} candidates on the Pareto front.",
            r.latency.description,
            front.len()
        ),
        _ => format!(
            "Cost-model estimates; the vertical line is the budget. {} candidates on the Pareto front.",
            front.len()
        ),
    };
    Ok(Figure {
        id,
        title: title.into(),
        caption,
        svg,
    })
}

fn layers(w: &Winner) -> Result<Figure> {
    let n = w.layers.len();
    let svg = svg_of((900, 300), |root| {
        let panels = root.split_evenly((1, 3));
        let series: [(&str, RGBColor, Vec<f64>); 3] = [
            (
                "executed MACs (K)",
                MACS,
                w.layers
                    .iter()
                    .map(|l| l.executed_macs as f64 / 1e3)
                    .collect(),
            ),
            (
                "parameters (deployed)",
                PARAMS,
                w.layers.iter().map(|l| l.params as f64).collect(),
            ),
            (
                "flash (KiB)",
                FLASH,
                w.layers
                    .iter()
                    .map(|l| l.flash_bytes as f64 / 1024.0)
                    .collect(),
            ),
        ];
        for (area, (desc, color, vals)) in panels.iter().zip(series) {
            let top = vals.iter().cloned().fold(0.0, f64::max).max(1e-9) * 1.1;
            let names: Vec<String> = w.layers.iter().map(|l| l.name.clone()).collect();
            let mut ch = ChartBuilder::on(area)
                .margin(8)
                .caption(desc, (FONT, 13))
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..n as f64, 0f64..top)
                .map_err(err)?;
            ch.configure_mesh()
                .disable_x_mesh()
                .x_labels(n.max(1) * 2 + 1)
                .x_label_formatter(&|x| {
                    let i = (x - 0.5).round();
                    if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                        names[i as usize].clone()
                    } else {
                        String::new()
                    }
                })
                .label_style((FONT, 10))
                .draw()
                .map_err(err)?;
            ch.draw_series(vals.iter().enumerate().map(|(i, &v)| {
                Rectangle::new(
                    [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, v)],
                    color.filled(),
                )
            }))
            .map_err(err)?;
        }
        Ok(())
    })?;
    Ok(Figure {
        id: "fig-layers",
        title: "The winner, layer by layer".into(),
        caption: "MACs the kernel executes, parameters it stores (BatchNorm folded) and flash \
                  (float32 weights plus the target's per-layer code estimate)."
            .into(),
        svg,
    })
}

fn arena(w: &Winner) -> Result<Figure> {
    let n = w.arena.len();
    let top = (w.arena_bytes.max(1) as f64 / 1024.0) * 1.05;
    let names: Vec<String> = w.arena.iter().map(|a| a.layer.clone()).collect();
    let svg = svg_of((900, 320), |root| {
        let mut ch = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n.max(1) as f64, 0f64..top)
            .map_err(err)?;
        ch.configure_mesh()
            .disable_x_mesh()
            .x_labels(n.max(1) * 2 + 1)
            .x_label_formatter(&|x| {
                let i = (x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                    names[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_desc("arena offset (KiB)")
            .label_style((FONT, 11))
            .draw()
            .map_err(err)?;
        let kib = |b: u64| b as f64 / 1024.0;
        let inputs: Vec<_> = w
            .arena
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.input.map(|r| (i, r)))
            .collect();
        ch.draw_series(inputs.iter().map(|&(i, (off, len))| {
            Rectangle::new(
                [
                    (i as f64 + 0.08, kib(off)),
                    (i as f64 + 0.46, kib(off + len)),
                ],
                ARENA_IN.filled(),
            )
        }))
        .map_err(err)?
        .label("input buffer (read)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], ARENA_IN.stroke_width(8)));
        let outputs: Vec<_> = w
            .arena
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.output.map(|r| (i, r)))
            .collect();
        ch.draw_series(outputs.iter().map(|&(i, (off, len))| {
            Rectangle::new(
                [
                    (i as f64 + 0.54, kib(off)),
                    (i as f64 + 0.92, kib(off + len)),
                ],
                ARENA_OUT.filled(),
            )
        }))
        .map_err(err)?
        .label("output buffer (written)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], ARENA_OUT.stroke_width(8)));
        ch.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 11))
            .draw()
            .map_err(err)?;
        Ok(())
    })?;
    Ok(Figure {
        id: "fig-arena",
        title: "The arena over the layer sequence".into(),
        caption: format!(
            "Where each layer's input and output live in the one static arena of {} B \
             (the caller's input and the logits are outside it).",
            w.arena_bytes
        ),
        svg,
    })
}

/// The history the training figure shows: the delivered model's final training when it had
/// one, else the candidate's proxy training.
pub fn shown_history(w: &Winner) -> (&[crate::train::EpochLog], &'static str, usize) {
    match &w.final_training {
        Some(f) => (
            &f.history,
            "final training of the delivered model",
            f.best_epoch,
        ),
        None => (
            &w.record.history,
            "proxy training of the candidate",
            w.record.best_epoch,
        ),
    }
}

fn training(w: &Winner) -> Result<Figure> {
    let (h, which, best_epoch) = shown_history(w);
    let xmax = h.len().max(1) as f64 + 0.5;
    let svg = svg_of((900, 300), |root| {
        let panels = root.split_evenly((1, 3));
        let loss_hi = h
            .iter()
            .flat_map(|e| [e.train_loss, e.val_loss])
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            .max(1e-6)
            * 1.1;
        let lr: Vec<f64> = h.iter().map(|e| e.learning_rate).collect();
        let (lrlo, lrhi) = range(lr.iter().cloned(), 0.1);
        let panels_spec: [(&str, f64, f64); 3] = [
            ("loss", 0.0, loss_hi),
            ("validation accuracy", 0.0, 1.0),
            ("learning rate", lrlo.max(0.0), lrhi),
        ];
        for (p, (area, (desc, lo, hi))) in panels.iter().zip(panels_spec).enumerate() {
            let mut ch = ChartBuilder::on(area)
                .margin(8)
                .caption(desc, (FONT, 13))
                .x_label_area_size(30)
                .y_label_area_size(55)
                .build_cartesian_2d(0.5..xmax, lo..hi)
                .map_err(err)?;
            ch.configure_mesh()
                .x_desc("epoch")
                .label_style((FONT, 10))
                .draw()
                .map_err(err)?;
            let line = |f: &dyn Fn(&crate::train::EpochLog) -> f64| -> Vec<(f64, f64)> {
                h.iter().map(|e| (e.epoch as f64, f(e))).collect()
            };
            match p {
                0 => {
                    ch.draw_series(LineSeries::new(
                        line(&|e| e.train_loss),
                        TRAIN_LOSS.stroke_width(2),
                    ))
                    .map_err(err)?
                    .label("train")
                    .legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], TRAIN_LOSS.stroke_width(2))
                    });
                    ch.draw_series(LineSeries::new(
                        line(&|e| e.val_loss),
                        VAL_LOSS.stroke_width(2),
                    ))
                    .map_err(err)?
                    .label("validation")
                    .legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], VAL_LOSS.stroke_width(2))
                    });
                    ch.configure_series_labels()
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK.mix(0.3))
                        .label_font((FONT, 10))
                        .draw()
                        .map_err(err)?;
                }
                1 => {
                    ch.draw_series(LineSeries::new(
                        line(&|e| e.val_accuracy),
                        VAL_ACC.stroke_width(2),
                    ))
                    .map_err(err)?;
                }
                _ => {
                    ch.draw_series(LineSeries::new(
                        line(&|e| e.learning_rate),
                        LR.stroke_width(2),
                    ))
                    .map_err(err)?;
                }
            }
        }
        Ok(())
    })?;
    Ok(Figure {
        id: "fig-training",
        title: "The winner's training".into(),
        caption: format!(
            "The {which}: {} epochs (best at epoch {}); losses are mean cross-entropy.",
            h.len(),
            best_epoch + 1
        ),
        svg,
    })
}

/// The heat map's colour for a share in `[0, 1]`: light to dark blue (never pure white, so
/// that empty cells stay visible as cells).
pub fn heat(share: f64) -> RGBColor {
    let t = share.clamp(0.0, 1.0);
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
    RGBColor(lerp(0xf4, 0x08), lerp(0xf8, 0x30), lerp(0xfd, 0x6b))
}

fn confusion(r: &RunReport, w: &Winner) -> Result<Figure> {
    let (m, which) = match &w.test {
        Some(t) => (&t.confusion, "test split"),
        None => (&w.record.val.confusion, "validation fold"),
    };
    let k = m.len();
    let names: Vec<String> = (0..k)
        .map(|i| {
            r.class_names
                .as_ref()
                .and_then(|n| n.get(i).cloned())
                .unwrap_or_else(|| format!("class {i}"))
        })
        .collect();
    let side = (360 + 28 * k as u32).min(1000);
    let svg = svg_of((side + 140, side), |root| {
        let mut ch = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(110)
            .y_label_area_size(130)
            .build_cartesian_2d(0f64..k.max(1) as f64, 0f64..k.max(1) as f64)
            .map_err(err)?;
        let label = |x: &f64| {
            let i = (x - 0.5).round();
            if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        };
        let ylabel = |y: &f64| {
            let i = (y - 0.5).round();
            if (y - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                // Row 0 at the top.
                names[names.len() - 1 - i as usize].clone()
            } else {
                String::new()
            }
        };
        ch.configure_mesh()
            .disable_mesh()
            .x_labels(2 * k + 1)
            .y_labels(2 * k + 1)
            .x_label_formatter(&label)
            .y_label_formatter(&ylabel)
            .x_desc("predicted")
            .y_desc("true")
            .label_style((FONT, 11))
            .x_label_style((FONT, 11).into_font().transform(FontTransform::Rotate90))
            .draw()
            .map_err(err)?;
        let mut cells = Vec::new();
        for (t, row) in m.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (p, &n) in row.iter().enumerate() {
                let share = if total == 0 {
                    0.0
                } else {
                    n as f64 / total as f64
                };
                cells.push((t, p, n, share));
            }
        }
        let y_of = |t: usize| (k - 1 - t) as f64;
        ch.draw_series(cells.iter().map(|&(t, p, _, share)| {
            Rectangle::new(
                [(p as f64, y_of(t)), (p as f64 + 1.0, y_of(t) + 1.0)],
                heat(share).filled(),
            )
        }))
        .map_err(err)?;
        if k <= 25 {
            ch.draw_series(cells.iter().filter(|c| c.2 > 0).map(|&(t, p, n, share)| {
                let color = if share > 0.5 { WHITE } else { BLACK };
                Text::new(
                    n.to_string(),
                    (p as f64 + 0.3, y_of(t) + 0.65),
                    (FONT, 10).into_font().color(&color),
                )
            }))
            .map_err(err)?;
        }
        Ok(())
    })?;
    Ok(Figure {
        id: "fig-confusion",
        title: "Confusion matrix".into(),
        caption: format!(
            "The winner on the {which}: rows are the true class, columns the prediction; colour is \
             the share of the row{}.",
            if r.class_names.is_none() {
                " (class names unknown: the dataset has no classes.json)"
            } else {
                ""
            }
        ),
        svg,
    })
}

fn verify(r: &RunReport) -> Result<Figure> {
    let v = r.verify.as_ref().expect("checked by the caller");
    let kernels: Vec<_> = v.kernels.iter().map(|k| (k.lang.clone(), k)).collect();
    let Some(first) = v.kernels.first() else {
        anyhow::bail!("verify.json in {} lists no kernel", r.run.display());
    };
    let kib = |b: u64| b as f64 / 1024.0;
    let svg = svg_of((900, 320), |root| {
        let panels = root.split_evenly((1, 2));
        for (pi, area) in panels.iter().enumerate() {
            let (desc, budget) = if pi == 0 {
                ("flash (KiB)", kib(first.limits.max_flash_bytes))
            } else {
                ("RAM (KiB)", kib(first.limits.max_ram_bytes))
            };
            let vals: Vec<(f64, f64)> = kernels
                .iter()
                .map(|(_, k)| {
                    if pi == 0 {
                        (kib(k.estimate.flash_bytes), kib(k.measured.flash_bytes))
                    } else {
                        (kib(k.estimate.ram_bytes), kib(k.measured.ram_bytes))
                    }
                })
                .collect();
            let top = vals
                .iter()
                .flat_map(|(a, b)| [*a, *b])
                .fold(budget, f64::max)
                * 1.1;
            let n = kernels.len();
            let names: Vec<String> = kernels.iter().map(|(l, _)| format!("{l} kernel")).collect();
            let mut ch = ChartBuilder::on(area)
                .margin(10)
                .caption(desc, (FONT, 13))
                .x_label_area_size(30)
                .y_label_area_size(55)
                .build_cartesian_2d(0f64..n as f64, 0f64..top)
                .map_err(err)?;
            ch.configure_mesh()
                .disable_x_mesh()
                .x_labels(2 * n + 1)
                .x_label_formatter(&|x| {
                    let i = (x - 0.5).round();
                    if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                        names[i as usize].clone()
                    } else {
                        String::new()
                    }
                })
                .label_style((FONT, 11))
                .draw()
                .map_err(err)?;
            ch.draw_series(vals.iter().enumerate().map(|(i, (e, _))| {
                Rectangle::new(
                    [(i as f64 + 0.1, 0.0), (i as f64 + 0.48, *e)],
                    ESTIMATE.filled(),
                )
            }))
            .map_err(err)?
            .label("cost-model estimate")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], ESTIMATE.stroke_width(8)));
            ch.draw_series(vals.iter().enumerate().map(|(i, (_, m))| {
                Rectangle::new(
                    [(i as f64 + 0.52, 0.0), (i as f64 + 0.9, *m)],
                    MEASURED.filled(),
                )
            }))
            .map_err(err)?
            .label("measured from the ELF")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], MEASURED.stroke_width(8)));
            ch.draw_series(LineSeries::new(
                vec![(0.0, budget), (n as f64, budget)],
                BUDGET.stroke_width(2),
            ))
            .map_err(err)?
            .label("budget")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BUDGET.stroke_width(2)));
            ch.configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FONT, 10))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    })?;
    Ok(Figure {
        id: "fig-verify",
        title: "Measured by nas verify".into(),
        caption: format!(
            "The winner's footprint as the cost model estimated it and as read from the \
             cross-compiled ELF for {}{}.",
            first.target,
            first.emulation.as_ref().map_or(String::new(), |e| format!(
                "; under QEMU {} of {} samples bit-exact, {} instructions per inference",
                e.bit_exact, e.samples, e.instructions_per_inference
            ))
        ),
        svg,
    })
}
