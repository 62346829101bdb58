//! How a run ended, and how the runner reports it: a [`Status`] and the
//! serial output ([`Outcome`]), or why QEMU could not run at all
//! ([`RunError`]), each with the runner binary's exit status.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use pidlab_abi::console::is_failure_line;

use crate::{
    EXIT_KERNEL_FAILURE, EXIT_NO_QEMU, EXIT_RUNNER_ERROR, EXIT_SUCCESS, EXIT_TIMEOUT, QEMU_PACKAGE,
};

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The kernel reported success.
    Success,
    /// The kernel reported failure (panic, fault, bad parameter).
    KernelFailure,
    /// QEMU exited with a status the kernel never writes (0 after a triple
    /// fault with `-no-reboot`, a QEMU error, ...).
    UnexpectedExit(Option<i32>),
    /// Killed after the timeout.
    Timeout(Duration),
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    /// Everything the kernel wrote to the serial port.
    pub serial: String,
    /// What QEMU itself wrote to stderr.
    pub qemu_stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// The runner binary's exit status for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self.status {
            Status::Success => EXIT_SUCCESS,
            Status::KernelFailure | Status::UnexpectedExit(_) => EXIT_KERNEL_FAILURE,
            Status::Timeout(_) => EXIT_TIMEOUT,
        }
    }

    /// The kernel's own account of a failure: its panic or error lines.
    pub fn failure_message(&self) -> Option<String> {
        let lines: Vec<&str> = self.serial.lines().filter(|l| is_failure_line(l)).collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// The last `n` lines of serial output.
    pub fn serial_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.serial.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// One line saying how the run ended, for humans.
    pub fn summary(&self) -> String {
        match &self.status {
            Status::Success => format!("kernel reported success after {:.1?}", self.elapsed),
            Status::KernelFailure => format!(
                "kernel reported failure after {:.1?}{}",
                self.elapsed,
                self.failure_message()
                    .map(|m| format!(":\n{m}"))
                    .unwrap_or_default()
            ),
            Status::UnexpectedExit(code) => format!(
                "QEMU exited with status {} after {:.1?} without the kernel reporting \
                 (triple fault, reset, or a QEMU error){}",
                code.map_or("(signal)".to_string(), |c| c.to_string()),
                self.elapsed,
                if self.qemu_stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!("; QEMU said: {}", self.qemu_stderr.trim())
                }
            ),
            Status::Timeout(t) => format!(
                "timeout: the kernel did not finish within {} s; QEMU was killed",
                t.as_secs_f64()
            ),
        }
    }
}

/// Why QEMU could not be run at all.
#[derive(Debug)]
pub enum RunError {
    /// The QEMU binary is not installed.
    QemuMissing(String),
    /// The disk image is missing.
    NoImage(PathBuf),
    Io(String, io::Error),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::QemuMissing(_) => EXIT_NO_QEMU,
            _ => EXIT_RUNNER_ERROR,
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::QemuMissing(bin) => write!(
                f,
                "`{bin}` not found: install QEMU (Debian/Ubuntu: `apt-get install {QEMU_PACKAGE}`, \
                 or run `make setup`), or point PIDLAB_QEMU at it"
            ),
            RunError::NoImage(p) => write!(f, "disk image {} is missing; rebuild", p.display()),
            RunError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_status() {
        let o = |status| Outcome {
            status,
            serial: "x\n!!! KERNEL PANIC on cpu 0: boom\n".into(),
            qemu_stderr: String::new(),
            elapsed: Duration::ZERO,
        };
        assert_eq!(o(Status::Success).exit_code(), 0);
        assert_eq!(o(Status::KernelFailure).exit_code(), 1);
        assert_eq!(o(Status::UnexpectedExit(Some(0))).exit_code(), 1);
        assert_eq!(o(Status::Timeout(Duration::from_secs(1))).exit_code(), 124);
        assert!(o(Status::KernelFailure).summary().contains("boom"));
    }
}
