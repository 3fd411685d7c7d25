//! What `nas verify` measured: the winner's flash and RAM per kernel as the cost model
//! estimated them and as read from the ELF, against the budgets.

use super::axes::{
    category_label, draw_legend, err, labelled_bars, labelled_line, svg_of, Area, FONT,
};
use super::{Figure, BUDGET, ESTIMATE, MEASURED};
use crate::report::model::{RunReport, SavedKernel};
use anyhow::Result;
use plotters::prelude::*;

fn kib(b: u64) -> f64 {
    b as f64 / 1024.0
}

pub(super) fn verify(r: &RunReport) -> Result<Figure> {
    let v = r.verify.as_ref().expect("checked by the caller");
    let Some(first) = v.kernels.first() else {
        anyhow::bail!("verify.json in {} lists no kernel", r.run.display());
    };
    let svg = svg_of((900, 320), |root| {
        let panels = root.split_evenly((1, 2));
        for (pi, area) in panels.iter().enumerate() {
            verify_panel(area, &v.kernels, first, pi == 0)?;
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

/// Estimated and measured bars per kernel, and the budget (of the first kernel's limits), for
/// flash or for RAM.
fn verify_panel(
    area: &Area,
    kernels: &[SavedKernel],
    first: &SavedKernel,
    flash: bool,
) -> Result<()> {
    let (desc, budget) = if flash {
        ("flash (KiB)", kib(first.limits.max_flash_bytes))
    } else {
        ("RAM (KiB)", kib(first.limits.max_ram_bytes))
    };
    let vals: Vec<(f64, f64)> = kernels
        .iter()
        .map(|k| {
            if flash {
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
    let names: Vec<String> = kernels
        .iter()
        .map(|k| format!("{} kernel", k.lang))
        .collect();
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
        .x_label_formatter(&|x| category_label(&names, *x))
        .label_style((FONT, 11))
        .draw()
        .map_err(err)?;
    let bars = |left: f64, right: f64, value: fn(&(f64, f64)) -> f64| -> Vec<[(f64, f64); 2]> {
        vals.iter()
            .enumerate()
            .map(|(i, v)| [(i as f64 + left, 0.0), (i as f64 + right, value(v))])
            .collect()
    };
    labelled_bars(
        &mut ch,
        bars(0.1, 0.48, |v| v.0),
        ESTIMATE,
        "cost-model estimate",
    )?;
    labelled_bars(
        &mut ch,
        bars(0.52, 0.9, |v| v.1),
        MEASURED,
        "measured from the ELF",
    )?;
    let budget_line = vec![(0.0, budget), (n as f64, budget)];
    labelled_line(&mut ch, budget_line, BUDGET, "budget")?;
    draw_legend(&mut ch, Some(SeriesLabelPosition::LowerRight), 10)
}
