//! `pidlab-plot [--host-cpus N] OUT.png INPUT...`: reads the
//! `threadspawn,...` rows a benchmark run printed (serial logs or the CSV
//! extracted from them) and draws one column of panels per `--smp`: ops/s
//! against workers per strategy (±1 standard deviation), and below it
//! each strategy's paired ratio to stock with its interval (see `draw`).
//! Given the host's CPU count (`--host-cpus`, or bench.sh's
//! `settings.txt` among the inputs) it shades the worker counts whose
//! busy vCPUs outnumber the host's cores (see `host`).
//!
//! Text needs a TrueType font; it is read at run time from
//! `PIDLAB_FONT` or the usual DejaVu path (Debian: `fonts-dejavu-core`).

mod draw;
mod host;
mod palette;
mod ratio_axis;
mod rows;

use std::process::ExitCode;

use plotters::style::{FontStyle, register_font};

use host::host_cpus_in;
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

const USAGE: &str = "usage: pidlab-plot [--host-cpus N] OUT.png INPUT... \
(serial logs or CSV with threadspawn rows; bench.sh's settings.txt gives the host's CPUs)";

/// The command line: `--host-cpus N` (or `=N`) before the output.
struct Args {
    host_cpus: Option<u32>,
    out: String,
    inputs: Vec<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut host_cpus = None;
    let out = loop {
        let arg = args.next().ok_or("no output file")?;
        let value = match arg.strip_prefix("--host-cpus") {
            Some("") => args.next().ok_or("--host-cpus needs a count")?,
            Some(v) if v.starts_with('=') => v[1..].to_string(),
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
            _ => break arg,
        };
        match value.parse::<u32>() {
            Ok(n) if n > 0 => host_cpus = Some(n),
            _ => return Err(format!("--host-cpus {value}: not a CPU count")),
        }
    };
    let inputs: Vec<String> = args.collect();
    if inputs.is_empty() {
        return Err("no input".to_string());
    }
    Ok(Args {
        host_cpus,
        out,
        inputs,
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pidlab-plot: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut rows = Vec::new();
    // The host's CPUs: the option, else what the inputs say (they must agree).
    let mut recorded: Option<(u32, &str)> = None;
    for input in &args.inputs {
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
        match (host_cpus_in(&text), recorded) {
            (Some(n), Some((m, other))) if n != m && args.host_cpus.is_none() => {
                eprintln!("pidlab-plot: {other} says {m} host CPUs, {input} {n}: pass --host-cpus");
                return ExitCode::FAILURE;
            }
            (Some(n), None) => recorded = Some((n, input)),
            _ => {}
        }
    }
    let host_cpus = args.host_cpus.or(recorded.map(|(n, _)| n));
    if rows.is_empty() {
        eprintln!(
            "pidlab-plot: no threadspawn rows in {}",
            args.inputs.join(", ")
        );
        return ExitCode::FAILURE;
    }
    if let Err(e) = load_font() {
        eprintln!("pidlab-plot: {e}");
        return ExitCode::FAILURE;
    }
    let title = "pidlab threadspawn: stock vs changed pid/exit paths";
    match draw::plot(&rows, &args.out, title, host_cpus) {
        Ok(()) => {
            let shading = host_cpus
                .map_or(String::from("no host CPU count, nothing shaded"), |n| {
                    format!("host-bound: busy vCPUs over {n} host CPUs")
                });
            println!(
                "pidlab-plot: wrote {} ({} rows; {shading})",
                args.out,
                rows.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pidlab-plot: drawing {}: {e}", args.out);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Args, String> {
        parse_args(line.split_whitespace().map(str::to_string))
    }

    #[test]
    fn the_host_cpus_option_comes_before_the_output() {
        let a = args("out.png a.csv settings.txt").unwrap();
        assert_eq!((a.host_cpus, a.out.as_str()), (None, "out.png"));
        assert_eq!(a.inputs, ["a.csv", "settings.txt"]);
        assert_eq!(
            args("--host-cpus 2 out.png a.csv").unwrap().host_cpus,
            Some(2)
        );
        assert_eq!(
            args("--host-cpus=16 out.png a.csv").unwrap().host_cpus,
            Some(16)
        );
        for bad in [
            "--host-cpus 0 o a",
            "--host-cpus x o a",
            "--host-cpus",
            "-v o a",
            "out.png",
        ] {
            assert!(args(bad).is_err(), "{bad}");
        }
    }
}
