//! The in-QEMU test harness.
//!
//! A test boots the one kernel image with the parameters it needs (usually
//! `test=...` to pick in-kernel cases, or `bench=...`), and the harness
//! judges the run by QEMU's exit status and the serial output. Every boot has
//! a timeout (300 s unless the test says otherwise; `PIDLAB_TEST_TIMEOUT_SCALE`
//! multiplies it): a hung kernel is killed and reported, it never hangs
//! `cargo test`. No test asserts on the host's speed: a boot takes 3 to 25 s
//! on our 2-core hosts, and every timeout is at least 10x what its boot
//! takes there, so a host 10x slower still passes (a hang costs minutes). When an expectation fails, the panic message
//! carries how the run ended and the tail of the serial log.

use std::time::Duration;

pub use pidlab_boot::{Outcome, RunConfig, Status};

pub mod pidctl_cases;
pub mod pidctl_model;

/// Default per-boot timeout: 10x the longest boot that uses it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Serial lines shown when an expectation fails.
const TAIL_LINES: usize = 40;

/// A boot to be run.
#[must_use]
pub struct Boot {
    config: RunConfig,
}

impl Default for Boot {
    fn default() -> Self {
        Self::new()
    }
}

impl Boot {
    /// One CPU, the default memory, the default timeout, no parameters.
    pub fn new() -> Self {
        Boot {
            config: RunConfig {
                smp: 1,
                timeout: scaled(DEFAULT_TIMEOUT),
                echo: std::env::var_os("PIDLAB_TEST_ECHO").is_some(),
                ..RunConfig::default()
            },
        }
    }

    pub fn smp(mut self, cpus: u32) -> Self {
        self.config.smp = cpus;
        self
    }

    /// Runs all vCPUs round-robin on one host thread (`--accel
    /// tcg-single`): for tests of lock semantics at more vCPUs than host
    /// cores, where multi-threaded TCG makes ticket-lock hand-offs wait for
    /// the host to reschedule a preempted waiter.
    pub fn tcg_single(mut self) -> Self {
        self.config.accel = pidlab_boot::Accel::TcgSingle;
        self
    }

    pub fn mem(mut self, mem: &str) -> Self {
        self.config.mem = mem.into();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = scaled(timeout);
        self
    }

    /// Adds `KEY=VALUE` parameters (whitespace-separated).
    pub fn params(mut self, params: &str) -> Self {
        self.config
            .params
            .extend(params.split_whitespace().map(String::from));
        self
    }

    /// Boots and waits. Panics only if QEMU cannot be started at all.
    /// Hands the kernel a pidctl script (`--script`), written to a file
    /// under the system's temporary directory.
    pub fn script(mut self, text: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "pidlab-script-{}-{}.pidctl",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("write the script");
        self.config.params.push("bench=script".into());
        self.config.script = Some(path);
        self
    }

    /// Boots. Unless the parameters pick a benchmark, `bench=none` is
    /// added: the kernel's default is the (long) threadspawn benchmark.
    pub fn run(mut self) -> Run {
        if !self.config.params.iter().any(|p| p.starts_with("bench=")) {
            self.config.params.push("bench=none".into());
        }
        let outcome =
            pidlab_boot::run(&self.config).unwrap_or_else(|e| panic!("could not run QEMU: {e}"));
        Run {
            params: self.config.params.join(" "),
            outcome,
        }
    }
}

fn scaled(t: Duration) -> Duration {
    let scale = std::env::var("PIDLAB_TEST_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    t.mul_f64(scale)
}

/// A finished boot, with assertions that explain themselves.
pub struct Run {
    params: String,
    pub outcome: Outcome,
}

impl Run {
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\n  parameters: {}\n  outcome: {}\n  --- last {TAIL_LINES} serial lines ---\n{}\n  ---",
            self.params,
            self.outcome.summary(),
            self.outcome.serial_tail(TAIL_LINES)
        )
    }

    pub fn serial(&self) -> &str {
        &self.outcome.serial
    }

    /// The number the serial output prints right after the first
    /// `prefix` (e.g. `"no timer tick for "` in `... for 5012 ms`); fails
    /// the test, with the serial tail, when there is none.
    pub fn number_after(&self, prefix: &str) -> u64 {
        self.serial()
            .split(prefix)
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| self.fail(&format!("expected a number after `{prefix}`")))
    }

    /// The kernel reported success.
    pub fn expect_success(&self) -> &Self {
        if self.outcome.status != Status::Success {
            self.fail("expected the kernel to report success");
        }
        self
    }

    /// The kernel reported failure, and its failure message contains
    /// `needle`.
    pub fn expect_failure_with(&self, needle: &str) -> &Self {
        if self.outcome.status != Status::KernelFailure {
            self.fail(&format!("expected a kernel failure mentioning {needle:?}"));
        }
        match self.outcome.failure_message() {
            Some(m) if m.contains(needle) => self,
            _ => self.fail(&format!("the failure message does not mention {needle:?}")),
        }
    }

    /// The run was killed by the timeout.
    pub fn expect_timeout(&self) -> &Self {
        if !matches!(self.outcome.status, Status::Timeout(_)) {
            self.fail("expected a timeout");
        }
        self
    }

    /// The serial output contains `needle`.
    pub fn expect_serial(&self, needle: &str) -> &Self {
        if !self.outcome.serial.contains(needle) {
            self.fail(&format!("serial output lacks {needle:?}"));
        }
        self
    }

    /// The first serial line starting with `prefix`.
    pub fn line(&self, prefix: &str) -> &str {
        self.outcome
            .serial
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| self.fail(&format!("no serial line starts with {prefix:?}")))
    }
}
