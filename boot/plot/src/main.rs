//! `pidlab-plot OUT.png INPUT...`: reads the `threadspawn,...` rows a
//! benchmark run printed (a serial log or the CSV extracted from it) and
//! draws ops/s against workers, one line per strategy (and per `--smp`/
//! namespace depth when the inputs have several), with ±1 standard
//! deviation bars.
//!
//! Text needs a TrueType font; it is read at run time from
//! `PIDLAB_FONT` or the usual DejaVu path (Debian: `fonts-dejavu-core`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// One `threadspawn` row: the fields the plot needs.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    strategy: String,
    workers: u32,
    ns_depth: u32,
    ops_per_sec: f64,
    stdev: f64,
    cpus: Option<u32>,
}

/// Parses every `threadspawn,` data row of `text`, using its header row to
/// find the columns. Errors name the line.
fn parse_rows(text: &str) -> Result<Vec<Row>, String> {
    let mut columns: Option<Vec<&str>> = None;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with("threadspawn,") {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.get(1) == Some(&"strategy") {
            columns = Some(fields);
            continue;
        }
        let cols = columns
            .as_ref()
            .ok_or_else(|| format!("line {}: data row before the header row", n + 1))?;
        let get = |name: &str| -> Result<&str, String> {
            let i = cols
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| format!("header has no `{name}` column"))?;
            fields
                .get(i)
                .copied()
                .ok_or_else(|| format!("line {}: no `{name}` field", n + 1))
        };
        let num = |name: &str| -> Result<f64, String> {
            get(name)?
                .parse::<f64>()
                .map_err(|_| format!("line {}: `{name}` is not a number", n + 1))
        };
        rows.push(Row {
            strategy: get("strategy")?.to_string(),
            workers: num("workers")? as u32,
            ns_depth: num("ns_depth")? as u32,
            ops_per_sec: num("ops_per_sec")?,
            stdev: num("stdev")?,
            cpus: get("cpus").ok().and_then(|c| c.parse().ok()),
        });
    }
    Ok(rows)
}

fn series_key(r: &Row, many_cpus: bool, many_depths: bool) -> String {
    let mut key = r.strategy.clone();
    if many_cpus && let Some(c) = r.cpus {
        key.push_str(&format!(" (smp {c})"));
    }
    if many_depths {
        key.push_str(&format!(" depth {}", r.ns_depth));
    }
    key
}

fn load_font() -> Result<(), String> {
    let candidates: Vec<String> = std::env::var("PIDLAB_FONT")
        .into_iter()
        .chain(FONT_PATHS.iter().map(|s| s.to_string()))
        .collect();
    for path in &candidates {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            return register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{path} is not a usable TrueType font"));
        }
    }
    Err(format!(
        "no font found (tried {}); install fonts-dejavu-core or set PIDLAB_FONT",
        candidates.join(", ")
    ))
}

fn plot(rows: &[Row], out: &str, title: &str) -> Result<(), Box<dyn std::error::Error>> {
    let many_cpus = rows
        .iter()
        .filter_map(|r| r.cpus)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        > 1;
    let many_depths = rows
        .iter()
        .map(|r| r.ns_depth)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        > 1;
    let mut series: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        series
            .entry(series_key(r, many_cpus, many_depths))
            .or_default()
            .push(r);
    }
    let max_workers = rows.iter().map(|r| r.workers).max().unwrap_or(1);
    let max_ops = rows
        .iter()
        .map(|r| r.ops_per_sec + r.stdev)
        .fold(0.0, f64::max)
        * 1.1;

    let root = BitMapBackend::new(out, (1000, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0u32..max_workers + 1, 0f64..max_ops.max(1.0))?;
    chart
        .configure_mesh()
        .x_desc("workers (CPUs spawning and reaping)")
        .y_desc("spawn+reap ops/s")
        .draw()?;
    for (i, (name, points)) in series.iter_mut().enumerate() {
        points.sort_by_key(|r| r.workers);
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|r| (r.workers, r.ops_per_sec)),
                color.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|r| {
            ErrorBar::new_vertical(
                r.workers,
                r.ops_per_sec - r.stdev,
                r.ops_per_sec,
                r.ops_per_sec + r.stdev,
                color.filled(),
                8,
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args[0].starts_with('-') {
        eprintln!("usage: pidlab-plot OUT.png INPUT... (serial logs or CSV with threadspawn rows)");
        return ExitCode::from(2);
    }
    let mut rows = Vec::new();
    for input in &args[1..] {
        let text = match std::fs::read_to_string(input) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("pidlab-plot: {input}: {e}");
                return ExitCode::FAILURE;
            }
        };
        match parse_rows(&text) {
            Ok(r) => rows.extend(r),
            Err(e) => {
                eprintln!("pidlab-plot: {input}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if rows.is_empty() {
        eprintln!(
            "pidlab-plot: no threadspawn rows in {}",
            args[1..].join(", ")
        );
        return ExitCode::FAILURE;
    }
    if let Err(e) = load_font() {
        eprintln!("pidlab-plot: {e}");
        return ExitCode::FAILURE;
    }
    match plot(
        &rows,
        &args[0],
        "pidlab threadspawn: stock vs changed pid/exit paths",
    ) {
        Ok(()) => {
            println!("pidlab-plot: wrote {} ({} rows)", args[0], rows.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pidlab-plot: drawing {}: {e}", args[0]);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
boot noise
threadspawn,strategy,workers,ns_depth,ops_per_sec,stdev,samples,cpus
threadspawn,stock,1,0,1000,10,5,8
threadspawn,both,2,0,2500.5,20,5,8
other line
";

    #[test]
    fn rows_are_read_by_header_names() {
        let rows = parse_rows(LOG).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].strategy, "both");
        assert_eq!(rows[1].workers, 2);
        assert_eq!(rows[1].ops_per_sec, 2500.5);
        assert_eq!(rows[0].cpus, Some(8));
    }

    #[test]
    fn malformed_input_is_an_error_naming_the_line() {
        let e = parse_rows("threadspawn,stock,1,0,1,1\n").unwrap_err();
        assert!(e.contains("before the header"), "{e}");
        let e = parse_rows(
            "threadspawn,strategy,workers,ns_depth,ops_per_sec,stdev\nthreadspawn,stock,x,0,1,1\n",
        )
        .unwrap_err();
        assert!(e.contains("line 2") && e.contains("workers"), "{e}");
    }
}
