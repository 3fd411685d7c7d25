//! The winner's confusion matrix as a heat map, true classes down and predictions across.

use super::axes::{category_at, category_label, err, svg_of, Chart, FONT};
use super::Figure;
use crate::report::model::{RunReport, Winner};
use anyhow::Result;
use plotters::prelude::*;

/// The heat map's colour for a share in `[0, 1]`: light to dark blue (never pure white, so
/// that empty cells stay visible as cells).
pub fn heat(share: f64) -> RGBColor {
    let t = share.clamp(0.0, 1.0);
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
    RGBColor(lerp(0xf4, 0x08), lerp(0xf8, 0x30), lerp(0xfd, 0x6b))
}

/// One cell of the matrix: true class, predicted class, count, and share of the row.
type Cell = (usize, usize, usize, f64);

pub(super) fn confusion(r: &RunReport, w: &Winner) -> Result<Figure> {
    let (m, which) = match &w.test {
        Some(t) if w.test_float32.is_some() => (&t.confusion, "test split (int8, as deployed)"),
        Some(t) => (&t.confusion, "test split"),
        None => (&w.record.val.confusion, "validation fold"),
    };
    let k = m.len();
    let names = class_names(r, k);
    let side = (360 + 28 * k as u32).min(1000);
    let svg = svg_of((side + 140, side), |root| {
        let mut ch = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(110)
            .y_label_area_size(130)
            .build_cartesian_2d(0f64..k.max(1) as f64, 0f64..k.max(1) as f64)
            .map_err(err)?;
        // Row 0 at the top.
        let ylabel = |y: &f64| {
            category_at(*y, names.len())
                .map_or_else(String::new, |i| names[names.len() - 1 - i].clone())
        };
        ch.configure_mesh()
            .disable_mesh()
            .x_labels(2 * k + 1)
            .y_labels(2 * k + 1)
            .x_label_formatter(&|x| category_label(&names, *x))
            .y_label_formatter(&ylabel)
            .x_desc("predicted")
            .y_desc("true")
            .label_style((FONT, 11))
            .x_label_style((FONT, 11).into_font().transform(FontTransform::Rotate90))
            .draw()
            .map_err(err)?;
        draw_cells(&mut ch, &cells(m), k)
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

/// The names of the `k` classes: the dataset's, else `class i`.
fn class_names(r: &RunReport, k: usize) -> Vec<String> {
    (0..k)
        .map(|i| {
            r.class_names
                .as_ref()
                .and_then(|n| n.get(i).cloned())
                .unwrap_or_else(|| format!("class {i}"))
        })
        .collect()
}

/// Every cell of `m`, row by row.
fn cells(m: &[Vec<usize>]) -> Vec<Cell> {
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
    cells
}

/// The cells of a `k` × `k` matrix, coloured by share, with their counts written in when
/// there are at most 25 classes.
fn draw_cells(ch: &mut Chart, cells: &[Cell], k: usize) -> Result<()> {
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
}
