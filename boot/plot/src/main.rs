//! `pidlab-plot OUT.png INPUT...`: reads the `threadspawn,...` rows a
//! benchmark run printed (serial logs or the CSV extracted from them) and
//! draws one column of panels per `--smp`: ops/s against workers per
//! strategy (±1 standard deviation), and below it each strategy's paired
//! ratio to stock with its interval (see `draw`).
//!
//! Text needs a TrueType font; it is read at run time from
//! `PIDLAB_FONT` or the usual DejaVu path (Debian: `fonts-dejavu-core`).

mod draw;
mod palette;
mod ratio_axis;
mod rows;

use std::process::ExitCode;

use plotters::style::{FontStyle, register_font};

use rows::parse_rows;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

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
    match draw::plot(
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
