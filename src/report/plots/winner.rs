//! The winner's structure: executed MACs, parameters and flash per layer, and where each
//! layer's input and output lie in the static arena.

use super::axes::{category_label, draw_legend, err, labelled_bars, svg_of, Area, FONT};
use super::{Figure, ARENA_IN, ARENA_OUT, FLASH, MACS, PARAMS};
use crate::report::model::Winner;
use anyhow::Result;
use plotters::prelude::*;

pub(super) fn layers(w: &Winner) -> Result<Figure> {
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
                "flash of the constants (KiB)",
                FLASH,
                w.layers
                    .iter()
                    .map(|l| l.flash_bytes as f64 / 1024.0)
                    .collect(),
            ),
        ];
        for (area, (desc, color, vals)) in panels.iter().zip(series) {
            layer_panel(area, w, desc, color, &vals)?;
        }
        Ok(())
    })?;
    Ok(Figure {
        id: "fig-layers",
        title: "The winner, layer by layer".into(),
        caption: format!(
            "MACs the kernel executes, parameters it stores (BatchNorm folded) and the flash of \
             each layer's constants in {}; the kernel's code, {} B by the \
             target's code-size model, is not counted per layer.",
            match w.cost.dtype {
                crate::net::Dtype::F32 => "float32 (weights and biases)",
                crate::net::Dtype::Int8 =>
                    "int8 (weights, rows padded to words, and the per-channel bias and requantization)",
            },
            w.cost.code_bytes
        ),
        svg,
    })
}

/// One bar per layer of `vals` in `color`, captioned `desc`.
fn layer_panel(area: &Area, w: &Winner, desc: &str, color: RGBColor, vals: &[f64]) -> Result<()> {
    let n = w.layers.len();
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
        .x_label_formatter(&|x| category_label(&names, *x))
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
    Ok(())
}

pub(super) fn arena(w: &Winner) -> Result<Figure> {
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
            .x_label_formatter(&|x| category_label(&names, *x))
            .y_desc("arena offset (KiB)")
            .label_style((FONT, 11))
            .draw()
            .map_err(err)?;
        let inputs = buffer_bars(w, |a| a.input, (0.08, 0.46));
        labelled_bars(&mut ch, inputs, ARENA_IN, "input buffer (read)")?;
        let outputs = buffer_bars(w, |a| a.output, (0.54, 0.92));
        labelled_bars(&mut ch, outputs, ARENA_OUT, "output buffer (written)")?;
        draw_legend(&mut ch, Some(SeriesLabelPosition::UpperRight), 11)
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

/// A bar per layer whose `region` (offset, length) lies in the arena: from `left` to `right`
/// within the layer's slot, from the region's start to its end (KiB).
fn buffer_bars(
    w: &Winner,
    region: impl Fn(&crate::report::model::ArenaUse) -> Option<(u64, u64)>,
    (left, right): (f64, f64),
) -> Vec<[(f64, f64); 2]> {
    let kib = |b: u64| b as f64 / 1024.0;
    w.arena
        .iter()
        .enumerate()
        .filter_map(|(i, a)| region(a).map(|r| (i, r)))
        .map(|(i, (off, len))| {
            [
                (i as f64 + left, kib(off)),
                (i as f64 + right, kib(off + len)),
            ]
        })
        .collect()
}
