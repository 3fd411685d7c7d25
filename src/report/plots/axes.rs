//! What the figures share: drawing into an SVG string, axis ranges, category labels on an
//! axis, series with legend entries, and the legend box.

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// The font of every label.
pub(super) const FONT: &str = "sans-serif";

/// A chart with `f64` axes on the SVG backend, as every figure draws.
pub(super) type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A drawing area of the SVG backend.
pub(super) type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;

pub(super) fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot failed: {e:?}")
}

/// `[lo, hi]` widened so that points sit inside, never empty.
pub(super) fn range(values: impl IntoIterator<Item = f64>, pad: f64) -> (f64, f64) {
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

/// An SVG image of `size` pixels, on white, with what `draw` draws.
pub(super) fn svg_of(size: (u32, u32), draw: impl FnOnce(&Area) -> Result<()>) -> Result<String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(s)
}

/// The category whose slot `[i, i + 1)` has its centre at `x`, when `x` is a centre and there
/// are more than `i` categories.
pub(super) fn category_at(x: f64, count: usize) -> Option<usize> {
    let i = (x - 0.5).round();
    ((x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < count).then_some(i as usize)
}

/// The label of an axis position: the name of the category centred there, else nothing.
pub(super) fn category_label(names: &[String], x: f64) -> String {
    category_at(x, names.len()).map_or_else(String::new, |i| names[i].clone())
}

/// A legend entry: a short line in `color`, `width` pixels thick.
pub(super) fn line_mark(
    color: RGBColor,
    width: u32,
) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(width))
}

/// A legend entry: a small box in `style`.
pub(super) fn box_mark(style: ShapeStyle) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], style)
}

/// A 2-pixel line through `points` in `color`, with a legend entry.
pub(super) fn labelled_line(
    ch: &mut Chart,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    label: &str,
) -> Result<()> {
    ch.draw_series(LineSeries::new(points, color.stroke_width(2)))
        .map_err(err)?
        .label(label)
        .legend(line_mark(color, 2));
    Ok(())
}

/// Filled bars (each from one corner to the other) in `color`, with a legend entry.
pub(super) fn labelled_bars(
    ch: &mut Chart,
    bars: Vec<[(f64, f64); 2]>,
    color: RGBColor,
    label: &str,
) -> Result<()> {
    ch.draw_series(bars.into_iter().map(|b| Rectangle::new(b, color.filled())))
        .map_err(err)?
        .label(label)
        .legend(line_mark(color, 8));
    Ok(())
}

/// The legend box, on a translucent white background with a light border; `None` leaves the
/// position at plotters' default.
pub(super) fn draw_legend<'a, 'b: 'a>(
    ch: &mut Chart<'a, 'b>,
    position: Option<SeriesLabelPosition>,
    font_size: i32,
) -> Result<()> {
    let mut labels = ch.configure_series_labels();
    if let Some(p) = position {
        labels.position(p);
    }
    labels
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, font_size))
        .draw()
        .map_err(err)
}
