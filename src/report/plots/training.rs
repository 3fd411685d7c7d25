//! The winner's training: loss, validation accuracy and learning rate by epoch.

use super::axes::{draw_legend, err, labelled_line, range, svg_of, Area, Chart, FONT};
use super::{Figure, LR, TRAIN_LOSS, VAL_ACC, VAL_LOSS};
use crate::report::model::Winner;
use crate::train::EpochLog;
use anyhow::Result;
use plotters::prelude::*;

/// The history the training figure shows: the delivered model's final training when it had
/// one, else the candidate's proxy training.
pub fn shown_history(w: &Winner) -> (&[EpochLog], &'static str, usize) {
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

pub(super) fn training(w: &Winner) -> Result<Figure> {
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
        loss_panel(&panels[0], h, loss_hi, xmax)?;
        let acc = epoch_chart(&panels[1], "validation accuracy", (0.0, 1.0), xmax)?;
        draw_epoch_line(acc, h, |e| e.val_accuracy, VAL_ACC)?;
        let rate = epoch_chart(&panels[2], "learning rate", (lrlo.max(0.0), lrhi), xmax)?;
        draw_epoch_line(rate, h, |e| e.learning_rate, LR)
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

/// A panel captioned `desc` with epochs `0.5..xmax` across and `lo..hi` up.
fn epoch_chart<'a, 'b>(
    area: &'a Area<'b>,
    desc: &str,
    (lo, hi): (f64, f64),
    xmax: f64,
) -> Result<Chart<'a, 'b>> {
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
    Ok(ch)
}

/// `value` of each epoch, as a point at the epoch's number.
fn epoch_points(h: &[EpochLog], value: impl Fn(&EpochLog) -> f64) -> Vec<(f64, f64)> {
    h.iter().map(|e| (e.epoch as f64, value(e))).collect()
}

/// The train and validation losses, with a legend.
fn loss_panel(area: &Area, h: &[EpochLog], loss_hi: f64, xmax: f64) -> Result<()> {
    let mut ch = epoch_chart(area, "loss", (0.0, loss_hi), xmax)?;
    labelled_line(
        &mut ch,
        epoch_points(h, |e| e.train_loss),
        TRAIN_LOSS,
        "train",
    )?;
    labelled_line(
        &mut ch,
        epoch_points(h, |e| e.val_loss),
        VAL_LOSS,
        "validation",
    )?;
    draw_legend(&mut ch, None, 10)
}

/// One unlabelled line of `value` by epoch.
fn draw_epoch_line(
    mut ch: Chart,
    h: &[EpochLog],
    value: impl Fn(&EpochLog) -> f64,
    color: RGBColor,
) -> Result<()> {
    ch.draw_series(LineSeries::new(
        epoch_points(h, value),
        color.stroke_width(2),
    ))
    .map_err(err)?;
    Ok(())
}
