//! `cargo run -- [options] [KEY=VALUE ...]`: boot the pidlab kernel under QEMU.

use std::path::Path;
use std::process::ExitCode;

use pidlab_boot::profile::{self, ProfileOptions};
use pidlab_boot::{Cli, EXIT_RUNNER_ERROR, EXIT_SUCCESS, EXIT_USAGE, USAGE, parse_args, run};

fn main() -> ExitCode {
    let (config, profile) = match parse_args(std::env::args().skip(1)) {
        Ok(Cli::Run(config, profile)) => (config, profile),
        Ok(Cli::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("pidlab: {e}");
            return ExitCode::from(EXIT_USAGE as u8);
        }
    };
    if let Some(log) = &profile.log {
        return ExitCode::from(report_log(log, &profile) as u8);
    }
    if config.boots > 1 {
        return ExitCode::from(boot_many(&config, &profile) as u8);
    }
    eprintln!(
        "pidlab: booting {} with {} -smp {} -m {} -accel {} (timeout {} s)",
        config.image.display(),
        config.qemu,
        config.smp,
        config.mem,
        config.accel.name(),
        config.timeout.as_secs_f64()
    );
    match run(&config) {
        Ok(outcome) => {
            let mut code = outcome.exit_code();
            let rows = profile::folded::has_profile_rows(&outcome.serial);
            if (rows || profile.dir.is_some())
                && !report_profile(&outcome.serial, &profile)
                && profile.dir.is_some()
                && code == EXIT_SUCCESS
            {
                // The kernel did its part; the flame graphs asked for are missing.
                code = EXIT_RUNNER_ERROR;
            }
            eprintln!("pidlab: {}", outcome.summary());
            ExitCode::from(code as u8)
        }
        Err(e) => {
            eprintln!("pidlab: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Prints the profile's tables (stdout) and warnings (stderr), writes the
/// files asked for; false if there is no report.
fn report_profile(serial: &str, opts: &ProfileOptions) -> bool {
    match profile::analyze(serial, opts) {
        Ok(report) => {
            print!("{}", report.text);
            for w in &report.warnings {
                eprintln!("pidlab: profile: {w}");
            }
            if let Some(dir) = &opts.dir {
                eprintln!(
                    "pidlab: profile: {} files (folded stacks, flame graphs) in {}",
                    report.files.len(),
                    dir.display()
                );
            }
            true
        }
        Err(e) => {
            eprintln!("pidlab: profile: {e}");
            false
        }
    }
}

/// `--profile-log`: the report of a saved run.
fn report_log(log: &Path, opts: &ProfileOptions) -> i32 {
    match std::fs::read(log) {
        Ok(bytes) if report_profile(&String::from_utf8_lossy(&bytes), opts) => EXIT_SUCCESS,
        Ok(_) => EXIT_RUNNER_ERROR,
        Err(e) => {
            eprintln!("pidlab: {}: {e}", log.display());
            EXIT_RUNNER_ERROR
        }
    }
}

/// `--boots N`: boots the command N times (stopping at the first that does
/// not succeed), then prints Linux's comparisons across the boots.
fn boot_many(config: &pidlab_boot::RunConfig, profile: &ProfileOptions) -> i32 {
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    let mut layouts = Vec::new();
    let mut rounds = Vec::new();
    for i in 1..=config.boots {
        eprintln!(
            "pidlab: boot {i} of {}: {} -smp {} -accel {} (timeout {} s)",
            config.boots,
            config.qemu,
            config.smp,
            config.accel.name(),
            config.timeout.as_secs_f64()
        );
        match run(config) {
            Ok(outcome) => {
                if profile::folded::has_profile_rows(&outcome.serial) {
                    report_profile(&outcome.serial, profile);
                }
                eprintln!("pidlab: boot {i}: {}", outcome.summary());
                let code = outcome.exit_code();
                if code != EXIT_SUCCESS {
                    return code;
                }
                rows.push(pidlab_boot::boots::linux_rows(&outcome.serial));
                lines.push(pidlab_boot::boots::line_medians(&outcome.serial));
                layouts.push(pidlab_boot::boots::layout(&outcome.serial));
                rounds.push(pidlab_boot::boots::round_ratios(&outcome.serial));
            }
            Err(e) => {
                eprintln!("pidlab: boot {i}: {e}");
                return e.exit_code();
            }
        }
    }
    print!("{}", pidlab_boot::boots::summary(&rows, &lines, &rounds));
    print!("{}", pidlab_boot::boots::line_summary(&lines));
    print!("{}", pidlab_boot::boots::layout_summary(&layouts));
    EXIT_SUCCESS
}
