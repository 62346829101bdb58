//! Per-CPU counters of the process paths (forks, failed forks, releases)
//! and of the tasks each CPU started running.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::platform::{MAX_CPUS, cpu_id};

/// Process-path counters (of one CPU, or summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcStats {
    /// `copy_process` calls that succeeded.
    pub(crate) forks: u64,
    /// `copy_process` calls that failed.
    pub(crate) fork_failures: u64,
    /// `release_task` calls.
    pub(crate) releases: u64,
    /// Tasks (of any kind) that ran on the CPU.
    pub(crate) ran: u64,
}

#[repr(align(128))]
struct CpuCounters {
    forks: AtomicU64,
    fork_failures: AtomicU64,
    releases: AtomicU64,
    ran: AtomicU64,
}

static COUNTERS: [CpuCounters; MAX_CPUS] = [const {
    CpuCounters {
        forks: AtomicU64::new(0),
        fork_failures: AtomicU64::new(0),
        releases: AtomicU64::new(0),
        ran: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// Adds one with a plain load and store: only this CPU writes its slot.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
pub(super) fn count_fork(ok: bool) {
    let c = &COUNTERS[cpu_id()];
    bump(if ok { &c.forks } else { &c.fork_failures });
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
pub(super) fn count_release() {
    bump(&COUNTERS[cpu_id()].releases);
}

/// A new task's first instructions on this CPU (IRQs off, so the plain
/// add is not interrupted by another task start on this CPU).
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the scheduler
pub(super) fn count_ran() {
    bump(&COUNTERS[cpu_id()].ran);
}

/// CPU `cpu`'s counters.
pub(crate) fn proc_stats_cpu(cpu: usize) -> ProcStats {
    let c = &COUNTERS[cpu];
    ProcStats {
        forks: c.forks.load(Ordering::Relaxed),
        fork_failures: c.fork_failures.load(Ordering::Relaxed),
        releases: c.releases.load(Ordering::Relaxed),
        ran: c.ran.load(Ordering::Relaxed),
    }
}

/// The counters summed over CPUs.
pub(crate) fn proc_stats() -> ProcStats {
    (0..MAX_CPUS)
        .map(proc_stats_cpu)
        .fold(ProcStats::default(), |a, s| ProcStats {
            forks: a.forks + s.forks,
            fork_failures: a.fork_failures + s.fork_failures,
            releases: a.releases + s.releases,
            ran: a.ran + s.ran,
        })
}
