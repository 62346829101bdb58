//! The figure: one column of panels per `--smp` (CPU count), ops/s
//! against workers on top and each strategy's paired ratio to stock with
//! its interval below (when the rows carry paired ratios). A strategy has
//! one colour in every panel; a second namespace depth or placement in the
//! same inputs is drawn dashed. Axes read in k/M and `x`. The ratio
//! panel is [`ratios`]'s.

use std::collections::BTreeSet;

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::host::host_bound;
use crate::palette::{colour, strategies};
use crate::rows::Row;

mod ratios;

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

/// The ground of a worker count whose busy vCPUs outnumber the host's
/// cores ([`host_bound`]).
const HOST_BOUND: RGBColor = RGBColor(252, 236, 212);

/// Draws the figure into the PNG file `out`; with `host_cpus`, the
/// host-bound worker counts are shaded.
pub fn plot(
    rows: &[Row],
    out: &str,
    title: &str,
    host_cpus: Option<u32>,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(out, figure_size(rows)).into_drawing_area();
    draw(&root, rows, title, host_cpus)?;
    root.present()?;
    Ok(())
}

/// Draws the figure on `root`, which is [`figure_size`] large.
fn draw(
    root: &Area<'_>,
    rows: &[Row],
    title: &str,
    host_cpus: Option<u32>,
) -> Result<(), Box<dyn std::error::Error>> {
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
            host_cpus,
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
    host_cpus: Option<u32>,
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Axis ticks at whole worker counts only.
fn whole(x: &f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

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

    /// The worker counts with a host-bound row, ascending (none without
    /// the host's CPU count).
    fn host_bound_workers(&self) -> Vec<u32> {
        let Some(host) = self.host_cpus else {
            return Vec::new();
        };
        self.rows
            .iter()
            .filter(|r| host_bound(r, host))
            .map(|r| r.workers)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Shades each host-bound worker count, a worker wide, over `y`;
    /// `labelled` puts the shading in the legend. Drawn first, under the
    /// grid and the data.
    fn shade_host_bound(
        &self,
        chart: &mut Chart<'_, '_>,
        y: Range<f64>,
        labelled: bool,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let workers = self.host_bound_workers();
        let (Some(host), false) = (self.host_cpus, workers.is_empty()) else {
            return Ok(());
        };
        let x_end = self.max_workers() as f64 + 1.0;
        let bands = workers.iter().map(|&w| {
            let x = w as f64;
            Rectangle::new(
                [((x - 0.5).max(0.0), y.start), ((x + 0.5).min(x_end), y.end)],
                HOST_BOUND.filled(),
            )
        });
        let drawn = chart.draw_series(bands)?;
        if labelled {
            drawn
                .label(format!(
                    "host-bound: busy vCPUs > {host} host CPU{}",
                    if host == 1 { "" } else { "s" }
                ))
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 20, y + 6)], HOST_BOUND.filled())
                });
        }
        Ok(())
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
            .build_cartesian_2d(0f64..mw as f64 + 1.0, 0f64..max_ops.max(1.0))?;
        self.shade_host_bound(&mut chart, 0f64..max_ops.max(1.0), true)?;
        chart
            .configure_mesh()
            .x_labels(mw as usize + 2)
            .x_label_formatter(&whole)
            .x_max_light_lines(0)
            .x_desc("workers")
            .y_desc("ops/s")
            .y_label_formatter(&|v| human(*v))
            .draw()?;
        for (pts, colour, dashed, label) in self.series() {
            let line = pts.iter().map(|r| (r.workers as f64, r.ops_per_sec));
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
                    r.workers as f64,
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
    fn render(rows: &[Row], host_cpus: Option<u32>) -> Vec<u8> {
        let (w, h) = figure_size(rows);
        let mut rgb = vec![0; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            draw(&root, rows, "test", host_cpus).unwrap();
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
        plot(&rows, out.to_str().unwrap(), "test", Some(2)).unwrap();
        let png = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, after the signature and chunk header.
        assert_eq!(&png[16..24], [0, 0, 4, 216, 0, 0, 3, 202]);
        let rgb = render(&rows, None);
        assert!(
            rgb.chunks(3).any(|p| p != [255, 255, 255]),
            "something drawn"
        );
    }

    #[test]
    fn host_bound_worker_counts_are_those_whose_busy_vcpus_outnumber_the_host() {
        let rows = parse_rows(BENCH_CSV).unwrap();
        let smp8: Vec<&Row> = rows.iter().filter(|r| r.cpus == Some(8)).collect();
        let panel = |host_cpus| Panel {
            rows: &smp8,
            names: &[],
            variants: &[],
            many_depths: false,
            many_placements: false,
            host_cpus,
        };
        // placement=same: a worker's thread runs on its CPU.
        assert_eq!(panel(Some(2)).host_bound_workers(), [4, 8]);
        assert_eq!(panel(Some(4)).host_bound_workers(), [8]);
        assert!(panel(Some(8)).host_bound_workers().is_empty());
        assert!(panel(None).host_bound_workers().is_empty());
    }

    #[test]
    fn host_bound_worker_counts_are_shaded_when_the_host_is_known() {
        if !font() {
            return;
        }
        let rows = parse_rows(BENCH_CSV).unwrap();
        let shaded = |host| {
            let rgb = render(&rows, host);
            rgb.chunks(3)
                .filter(|p| *p == [HOST_BOUND.0, HOST_BOUND.1, HOST_BOUND.2])
                .count()
        };
        // Two bands (4 and 8 workers at --smp 8), in both panels.
        assert!(shaded(Some(2)) > 4 * 20 * 300, "{}", shaded(Some(2)));
        assert_eq!(shaded(None), 0);
        assert_eq!(shaded(Some(8)), 0);
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
