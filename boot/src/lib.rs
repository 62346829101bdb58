//! The pidlab runner: boots the kernel's BIOS disk image under QEMU and judges
//! the run.
//!
//! `build.rs` makes the disk image from the kernel binary (an artifact
//! dependency built for `x86_64-unknown-none`). [`run`] starts
//! `qemu-system-x86_64` with the serial port on a pipe, passes the run-time
//! parameters through fw_cfg, and waits for the kernel to leave through the
//! isa-debug-exit device, killing QEMU if it takes longer than the timeout.
//! The same function backs `cargo run` and the in-QEMU tests, so what the
//! tests check is what users run. What both sides of QEMU must agree on
//! (file names, exit codes, accelerator names) lives in [`pidlab_abi`].

pub mod boots;
mod cli;
mod outcome;
pub mod profile;
mod qemu;

use std::path::PathBuf;
use std::time::Duration;

pub use pidlab_abi::Accel;
use pidlab_abi::debug_exit::ExitCode;

pub use cli::{Cli, USAGE, parse_args};
pub use outcome::{Outcome, RunError, Status};
pub use profile::ProfileOptions;
pub use qemu::{qemu_command, run};

/// The BIOS disk image `build.rs` made.
pub const BIOS_IMAGE: &str = env!("PIDLAB_BIOS_IMAGE");

/// Status QEMU exits with when the kernel reports success.
pub const QEMU_EXIT_SUCCESS: i32 = ExitCode::Success.qemu_status();
/// ... and failure.
pub const QEMU_EXIT_FAILURE: i32 = ExitCode::Failure.qemu_status();

/// Exit status of the runner binary when the kernel reported success.
pub const EXIT_SUCCESS: i32 = 0;
/// ... when the kernel failed (panic, fault, error, or an unexpected QEMU
/// status).
pub const EXIT_KERNEL_FAILURE: i32 = 1;
/// ... for a bad command line.
pub const EXIT_USAGE: i32 = 2;
/// ... when the run exceeded its timeout (as coreutils' `timeout`).
pub const EXIT_TIMEOUT: i32 = 124;
/// ... when QEMU is not installed (as a shell's "command not found").
pub const EXIT_NO_QEMU: i32 = 127;
/// ... when QEMU could not be started or watched for another reason.
pub const EXIT_RUNNER_ERROR: i32 = 3;

/// The Debian package that provides `qemu-system-x86_64`.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Number of virtual CPUs (`-smp`).
    pub smp: u32,
    /// Guest memory (`-m`), e.g. `1G`.
    pub mem: String,
    pub accel: Accel,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// `KEY=VALUE` words for the kernel.
    pub params: Vec<String>,
    /// Copy the serial output to our stdout as it arrives.
    pub echo: bool,
    /// The QEMU binary (`PIDLAB_QEMU` overrides the default).
    pub qemu: String,
    /// The disk image to boot.
    pub image: PathBuf,
    /// A pidctl script handed to the kernel (fw_cfg
    /// [`SCRIPT_FILE`](pidlab_abi::fw_cfg::SCRIPT_FILE)).
    pub script: Option<PathBuf>,
    /// How many times the runner binary boots the command (`--boots`);
    /// [`run`] itself boots once.
    pub boots: u32,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            smp: 8,
            mem: "1G".into(),
            accel: Accel::Tcg,
            timeout: Duration::from_secs(600),
            params: Vec::new(),
            echo: false,
            qemu: std::env::var("PIDLAB_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into()),
            image: PathBuf::from(BIOS_IMAGE),
            script: None,
            boots: 1,
        }
    }
}

/// The text handed to the kernel: the runner's own facts first (the
/// accelerator, and the host's core count for `lock=auto` unless the user
/// gave `host_cpus=`), then the user's parameters (`--script` implies
/// `bench=script`).
pub fn kernel_cmdline(config: &RunConfig) -> String {
    let mut words = vec![format!("{}={}", Accel::CMDLINE_KEY, config.accel.name())];
    if !config.params.iter().any(|p| p.starts_with("host_cpus=")) {
        words.push(format!("host_cpus={}", host_cpus()));
    }
    if config.script.is_some() && !config.params.iter().any(|p| p.starts_with("bench=")) {
        words.push("bench=script".into());
    }
    words.extend(config.params.iter().cloned());
    words.join(" ")
}

/// The cores this process may run on: what the guest's vCPU threads share.
pub fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether the kernel reads the serial console (`bench=shell`): then our
/// stdin goes to QEMU's.
pub fn is_interactive(config: &RunConfig) -> bool {
    config.params.iter().any(|p| p == "bench=shell")
}
