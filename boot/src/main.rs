//! `cargo run -- [options] [KEY=VALUE ...]`: boot the pidlab kernel under QEMU.

use std::process::ExitCode;

use pidlab_boot::{Cli, EXIT_USAGE, USAGE, parse_args, run};

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Cli::Run(config)) => config,
        Ok(Cli::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("pidlab: {e}");
            return ExitCode::from(EXIT_USAGE as u8);
        }
    };
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
            eprintln!("pidlab: {}", outcome.summary());
            ExitCode::from(outcome.exit_code() as u8)
        }
        Err(e) => {
            eprintln!("pidlab: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
