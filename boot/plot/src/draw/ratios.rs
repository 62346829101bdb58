//! The ratio panel: each strategy's paired ratio to stock per worker
//! count, the median on its interval, on an axis scaled to the medians
//! ([`RatioAxis`]; an interval it cuts short ends in a caret), with 1.0x
//! and upstream's own gains as reference lines.

use plotters::prelude::*;

use super::{Area, Chart, Panel, whole};
use crate::ratio_axis::RatioAxis;
use crate::rows::Paired;

/// Upstream's own gains, drawn as labelled lines on the ratio panels
/// (docs/threadspawn.md, "What Linux measured"): the exit change's +15%
/// thread creation and the alloc change's 10-16%. The first label sits
/// above its line, the second below, so the two never overlap.
const UPSTREAM: [(f64, &str); 2] = [
    (1.15, "+15% exit change, upstream"),
    (1.10, "+10% alloc change, upstream (10-16%)"),
];

/// The grey of the reference lines and their labels.
const REFERENCE: RGBColor = RGBColor(110, 110, 110);

impl Panel<'_> {
    /// The paired ratios the panel draws: every strategy's but stock's
    /// (1.0 by definition), with each row's x position.
    fn paired(&self) -> Vec<RatioSeries> {
        // Side by side around each worker count, one slot per strategy.
        let slots = self.names.len().max(1) as f64;
        let mut out = Vec::new();
        for (pts, colour, dashed, _) in self.series() {
            if pts[0].strategy == "stock" {
                continue;
            }
            let slot = self
                .names
                .iter()
                .position(|n| *n == pts[0].strategy)
                .unwrap_or(0);
            let dx = (slot as f64 - (slots - 1.0) / 2.0) * 0.12 + if dashed { 0.04 } else { 0.0 };
            let points: Vec<(f64, Paired)> = pts
                .iter()
                .filter_map(|r| r.paired.map(|p| (r.workers as f64 + dx, p)))
                .collect();
            if !points.is_empty() {
                out.push(RatioSeries {
                    points,
                    colour,
                    dashed,
                });
            }
        }
        out
    }

    pub(super) fn ratios(
        &self,
        area: &Area<'_>,
        caption: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let series = self.paired();
        let all = || series.iter().flat_map(|s| s.points.iter().map(|(_, p)| p));
        let medians: Vec<f64> = all().map(|p| p.ratio).collect();
        let intervals: Vec<(f64, f64)> = all().map(|p| (p.lo, p.hi)).collect();
        let lines = UPSTREAM.map(|(y, _)| y);
        let axis = RatioAxis::choose(&medians, &intervals, &lines);
        // Say what a caret means, with the carets this panel draws.
        let shown: Vec<_> = all().map(|p| axis.show(p.lo, p.hi)).collect();
        let carets: String = [
            (shown.iter().any(|s| s.hi_clipped), '\u{25b2}'),
            (shown.iter().any(|s| s.lo_clipped), '\u{25bc}'),
        ]
        .iter()
        .filter(|(any, _)| *any)
        .map(|(_, c)| *c)
        .collect();
        let caption = if carets.is_empty() {
            caption.to_string()
        } else {
            format!("{caption}; {carets} interval goes on")
        };
        let mw = self.max_workers();
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..mw as f64 + 1.0, axis.view())?;
        self.shade_host_bound(&mut chart, axis.view(), false)?;
        chart
            .configure_mesh()
            .x_labels(mw as usize + 2)
            .x_label_formatter(&whole)
            .x_max_light_lines(0)
            .x_desc("workers")
            .y_desc("vs stock")
            .y_label_formatter(&|v| format!("{v:.2}x"))
            .draw()?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 1.0), (mw as f64 + 1.0, 1.0)],
            BLACK.stroke_width(1),
        )))?;
        draw_upstream(&mut chart, &series, &axis, mw as f64 + 1.0)?;
        // No legend: the colours are the ops/s panel's above, and a legend
        // box would sit where clipped intervals end.
        for RatioSeries {
            points,
            colour,
            dashed,
        } in series
        {
            let style = colour.stroke_width(2);
            let line = points.iter().map(|(x, p)| (*x, p.ratio));
            if dashed {
                chart.draw_series(DashedLineSeries::new(line, 8, 5, style))?;
            } else {
                chart.draw_series(LineSeries::new(line, style))?;
            }
            for (x, p) in &points {
                draw_interval(&mut chart, *x, p, &axis, colour)?;
            }
        }
        Ok(())
    }
}

/// One strategy's (and variant's) paired ratios, each at its x position.
struct RatioSeries {
    points: Vec<(f64, Paired)>,
    colour: RGBColor,
    dashed: bool,
}

/// Upstream's lines across the panel (to `x_end`), each labelled where
/// its label covers the least of the data: along its line, the leftmost
/// place that crosses the fewest intervals, then the fewest series lines.
/// Drawn before the data, on a light ground, so the data stays on top.
fn draw_upstream(
    chart: &mut Chart<'_, '_>,
    series: &[RatioSeries],
    axis: &RatioAxis,
    x_end: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let font = ("sans-serif", 13).into_font().color(&REFERENCE);
    let px = |chart: &Chart<'_, '_>, x: f64, y: f64| chart.backend_coord(&(x, y));
    // In pixels: every interval as drawn (x, top, bottom), and every
    // series line's segments.
    let mut bars = Vec::new();
    let mut segments = Vec::new();
    for s in series {
        for (x, p) in &s.points {
            let shown = axis.show(p.lo, p.hi);
            let (bx, top) = px(chart, *x, shown.hi);
            bars.push((bx, top, px(chart, *x, shown.lo).1));
        }
        for pair in s.points.windows(2) {
            let [(xa, a), (xb, b)] = pair else { continue };
            segments.push((px(chart, *xa, a.ratio), px(chart, *xb, b.ratio)));
        }
    }
    for (i, (y, label)) in UPSTREAM.iter().enumerate() {
        let ends = [(0.0, *y), (x_end, *y)];
        chart.draw_series(DashedLineSeries::new(ends, 6, 4, REFERENCE.stroke_width(1)))?;
        let (w, h) = chart.plotting_area().estimate_text_size(label, &font)?;
        let (w, h) = (w as i32, h as i32);
        let (left, line_y) = px(chart, 0.0, *y);
        let right = px(chart, x_end, *y).0;
        let top = if i == 0 { line_y - h - 3 } else { line_y + 3 };
        let inside =
            |x0: i32, (x, y): (i32, i32)| x >= x0 && x <= x0 + w && y >= top && y <= top + h;
        let cost = |x0: &i32| {
            let x0 = *x0;
            let crossed = bars
                .iter()
                .filter(|(bx, bt, bb)| {
                    *bx + 5 >= x0 && *bx - 5 <= x0 + w && *bb >= top && *bt <= top + h
                })
                .count();
            // A segment crosses the label when one of a few points along it is inside.
            let lines = segments
                .iter()
                .filter(|((xa, ya), (xb, yb))| {
                    (0..=16).any(|k| {
                        let at = |a: i32, b: i32| a + (b - a) * k / 16;
                        inside(x0, (at(*xa, *xb), at(*ya, *yb)))
                    })
                })
                .count();
            (crossed, lines)
        };
        let x0 = (left + 6..=(right - 6 - w).max(left + 6))
            .step_by(8)
            .min_by_key(cost)
            .unwrap_or(left + 6);
        // Offsets from the line's left end.
        let (dx, dy) = (x0 - left, top - line_y);
        let ground = Rectangle::new(
            [(dx - 2, dy - 1), (dx + w + 2, dy + h + 1)],
            WHITE.mix(0.8).filled(),
        );
        let text = Text::new(*label, (dx, dy), font.clone());
        chart.draw_series(std::iter::once(EmptyElement::at((0.0, *y)) + ground + text))?;
    }
    Ok(())
}

/// One median with its interval at `x`: a dot on a bar with a cap at each
/// end the axis shows, and at an end it cut short a caret pointing on.
fn draw_interval(
    chart: &mut Chart<'_, '_>,
    x: f64,
    p: &Paired,
    axis: &RatioAxis,
    colour: RGBColor,
) -> Result<(), Box<dyn std::error::Error>> {
    let shown = axis.show(p.lo, p.hi);
    let thin = colour.stroke_width(1);
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(x, shown.lo), (x, shown.hi)],
        thin,
    )))?;
    // Pixel offsets: y grows downwards.
    for (y, clipped, dir) in [
        (shown.lo, shown.lo_clipped, 1),
        (shown.hi, shown.hi_clipped, -1),
    ] {
        if clipped {
            let caret = Polygon::new(vec![(0, 9 * dir), (-4, 0), (4, 0)], colour.filled());
            chart.draw_series(std::iter::once(EmptyElement::at((x, y)) + caret))?;
        } else {
            let cap = PathElement::new(vec![(-4, 0), (4, 0)], thin);
            chart.draw_series(std::iter::once(EmptyElement::at((x, y)) + cap))?;
        }
    }
    chart.draw_series(std::iter::once(Circle::new(
        (x, p.ratio),
        4,
        colour.filled(),
    )))?;
    Ok(())
}
