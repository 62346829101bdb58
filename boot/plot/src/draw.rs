//! The figure: one column of panels per `--smp` (CPU count), ops/s
//! against workers on top and each strategy's paired ratio to stock with
//! its interval below (when the rows carry paired ratios). A strategy has
//! one colour in every panel; a second namespace depth or placement in the
//! same inputs is drawn dashed. Axes read in k/M and `x`. The ratio axis
//! is scaled to the medians ([`RatioAxis`]): an interval reaching past it
//! ends in a caret. Upstream's own gains are dashed grey lines there, so
//! a reader sees at once whether a median reaches them.

use std::collections::BTreeSet;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::palette::{colour, strategies};
use crate::ratio_axis::RatioAxis;
use crate::rows::{Paired, Row};

/// Upstream's own gains, drawn as labelled lines on the ratio panels
/// (docs/threadspawn.md, "What Linux measured"): the exit change's +15%
/// thread creation and the alloc change's 10-16%. The first label sits
/// above its line, the second below, so the two never overlap.
const UPSTREAM: [(f64, &str); 2] = [
    (1.15, "+15% exit change, upstream"),
    (1.10, "+10% alloc change, upstream (10-16%)"),
];

const REFERENCE: RGBColor = RGBColor(110, 110, 110);

/// `1234567` as `1.23M`, `250000` as `250k`.
pub fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        let k = v / 1e3;
        if (k - k.round()).abs() < 0.05 {
            format!("{:.0}k", k)
        } else {
            format!("{:.1}k", k)
        }
    } else {
        format!("{v:.0}")
    }
}

/// The CPU counts the rows ran with: one column of panels each.
fn columns(rows: &[Row]) -> Vec<Option<u32>> {
    rows.iter()
        .map(|r| r.cpus)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The figure's size in pixels: 620 wide per column, 460 high per panel.
pub fn figure_size(rows: &[Row]) -> (u32, u32) {
    let panel_rows = if rows.iter().any(|r| r.paired.is_some()) {
        2
    } else {
        1
    };
    (620 * columns(rows).len() as u32, 460 * panel_rows + 50)
}

/// Draws the figure into the PNG file `out`.
pub fn plot(rows: &[Row], out: &str, title: &str) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(out, figure_size(rows)).into_drawing_area();
    draw(&root, rows, title)?;
    root.present()?;
    Ok(())
}

/// Draws the figure on `root`, which is [`figure_size`] large.
fn draw(root: &Area<'_>, rows: &[Row], title: &str) -> Result<(), Box<dyn std::error::Error>> {
    let cpus = columns(rows);
    let many_depths = rows
        .iter()
        .map(|r| r.ns_depth)
        .collect::<BTreeSet<_>>()
        .len()
        > 1;
    let many_placements = rows
        .iter()
        .map(|r| r.placement.clone())
        .collect::<BTreeSet<_>>()
        .len()
        > 1;
    let variants: Vec<String> = rows
        .iter()
        .map(|r| r.variant(many_depths, many_placements))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let with_ratios = rows.iter().any(|r| r.paired.is_some());
    let names = strategies(rows.iter().map(|r| r.strategy.as_str()));
    let panel_rows = if with_ratios { 2 } else { 1 };
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 24))?;
    let panels = root.split_evenly((panel_rows, cpus.len()));
    for (col, &c) in cpus.iter().enumerate() {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.cpus == c).collect();
        let smp = c.map_or(String::from("smp ?"), |c| format!("--smp {c}"));
        let ctx = Panel {
            rows: &mine,
            names: &names,
            variants: &variants,
            many_depths,
            many_placements,
        };
        ctx.ops(&panels[col], &format!("{smp}: spawn+reap ops/s"))?;
        if with_ratios {
            ctx.ratios(
                &panels[cpus.len() + col],
                &format!("{smp}: paired ratio to stock (median, interval)"),
            )?;
        }
    }
    Ok(())
}

/// What one column of panels draws.
struct Panel<'a> {
    rows: &'a [&'a Row],
    names: &'a [String],
    variants: &'a [String],
    many_depths: bool,
    many_placements: bool,
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

impl Panel<'_> {
    /// Each (strategy, variant) series, sorted by workers, with its
    /// colour, whether it is dashed, and its legend label.
    fn series(&self) -> Vec<(Vec<&Row>, RGBColor, bool, String)> {
        let mut out = Vec::new();
        for name in self.names {
            for (vi, v) in self.variants.iter().enumerate() {
                let mut pts: Vec<&Row> = self
                    .rows
                    .iter()
                    .copied()
                    .filter(|r| {
                        &r.strategy == name
                            && &r.variant(self.many_depths, self.many_placements) == v
                    })
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                pts.sort_by_key(|r| r.workers);
                let label = if v.is_empty() {
                    name.clone()
                } else {
                    format!("{name} ({v})")
                };
                out.push((pts, colour(name, self.names), vi > 0, label));
            }
        }
        out
    }

    fn max_workers(&self) -> u32 {
        self.rows.iter().map(|r| r.workers).max().unwrap_or(1)
    }

    fn ops(&self, area: &Area<'_>, caption: &str) -> Result<(), Box<dyn std::error::Error>> {
        let max_ops = self
            .rows
            .iter()
            .map(|r| r.ops_per_sec + r.stdev)
            .fold(0.0, f64::max)
            * 1.1;
        let mw = self.max_workers();
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0u32..mw + 1, 0f64..max_ops.max(1.0))?;
        chart
            .configure_mesh()
            .x_labels(mw as usize + 2)
            .x_desc("workers")
            .y_desc("ops/s")
            .y_label_formatter(&|v| human(*v))
            .draw()?;
        for (pts, colour, dashed, label) in self.series() {
            let line = pts.iter().map(|r| (r.workers, r.ops_per_sec));
            let style = colour.stroke_width(2);
            if dashed {
                chart.draw_series(DashedLineSeries::new(line, 8, 5, style))?
            } else {
                chart.draw_series(LineSeries::new(line, style))?
            }
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart.draw_series(pts.iter().map(|r| {
                ErrorBar::new_vertical(
                    r.workers,
                    r.ops_per_sec - r.stdev,
                    r.ops_per_sec,
                    r.ops_per_sec + r.stdev,
                    colour.filled(),
                    8,
                )
            }))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }

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

    fn ratios(&self, area: &Area<'_>, caption: &str) -> Result<(), Box<dyn std::error::Error>> {
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
        chart
            .configure_mesh()
            .x_labels(mw as usize + 2)
            .x_label_formatter(&|x| format!("{x:.0}"))
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

type RatioChart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Upstream's lines across the panel (to `x_end`), each labelled where
/// its label covers the least of the data: along its line, the leftmost
/// place that crosses the fewest intervals, then the fewest series lines.
/// Drawn before the data, on a light ground, so the data stays on top.
fn draw_upstream(
    chart: &mut RatioChart<'_, '_>,
    series: &[RatioSeries],
    axis: &RatioAxis,
    x_end: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let font = ("sans-serif", 13).into_font().color(&REFERENCE);
    let px = |chart: &RatioChart<'_, '_>, x: f64, y: f64| chart.backend_coord(&(x, y));
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
    chart: &mut RatioChart<'_, '_>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::parse_rows;

    /// Two `make bench` runs (`--smp 8` and `--smp 2`) as bench.sh saves
    /// them: at one worker under `--smp 8` one version's interval reaches 8x.
    const BENCH_CSV: &str = include_str!("../tests/threadspawn.csv");

    /// Whether a font could be registered; rendering tests skip (saying
    /// so) without one, as `make bench` skips the plot.
    fn font() -> bool {
        static FONT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        match FONT.get_or_init(crate::load_font) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("skipped: {e}");
                false
            }
        }
    }

    /// The figure of `rows` as RGB bytes.
    fn render(rows: &[Row]) -> Vec<u8> {
        let (w, h) = figure_size(rows);
        let mut rgb = vec![0; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            draw(&root, rows, "test").unwrap();
            root.present().unwrap();
        }
        rgb
    }

    #[test]
    fn the_bench_csv_renders_to_a_png_file() {
        if !font() {
            return;
        }
        let rows = parse_rows(BENCH_CSV).unwrap();
        assert_eq!(rows.len(), 24);
        assert_eq!(figure_size(&rows), (1240, 970), "two columns of two panels");
        let out = std::env::temp_dir().join(format!("pidlab-plot-test-{}.png", std::process::id()));
        plot(&rows, out.to_str().unwrap(), "test").unwrap();
        let png = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, after the signature and chunk header.
        assert_eq!(&png[16..24], [0, 0, 4, 216, 0, 0, 3, 202]);
        let rgb = render(&rows);
        assert!(
            rgb.chunks(3).any(|p| p != [255, 255, 255]),
            "something drawn"
        );
    }

    #[test]
    fn axes_read_in_k_and_m() {
        assert_eq!(human(500_000.0), "500k");
        assert_eq!(human(1_250_000.0), "1.25M");
        assert_eq!(human(12_500.0), "12.5k");
        assert_eq!(human(999.0), "999");
        assert_eq!(human(0.0), "0");
    }
}
