//! Per-CPU counters of `alloc_pid` / `free_pid` calls and their
//! pidmap_lock acquisitions, cheap enough for the hot path: each CPU writes
//! only its own cache-line-aligned slot with a plain load and store (no
//! locked instruction), and readers sum the slots.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::platform::{self, MAX_CPUS};

/// Per-CPU pid operation counters (one writer per slot: its CPU).
#[repr(align(128))]
pub(super) struct CpuPidStats {
    pub(super) alloc_calls: AtomicU64,
    pub(super) alloc_failed: AtomicU64,
    pub(super) alloc_locks: AtomicU64,
    pub(super) alloc_repreloads: AtomicU64,
    pub(super) free_calls: AtomicU64,
    pub(super) free_locks: AtomicU64,
}

impl CpuPidStats {
    const fn new() -> Self {
        CpuPidStats {
            alloc_calls: AtomicU64::new(0),
            alloc_failed: AtomicU64::new(0),
            alloc_locks: AtomicU64::new(0),
            alloc_repreloads: AtomicU64::new(0),
            free_calls: AtomicU64::new(0),
            free_locks: AtomicU64::new(0),
        }
    }
}

pub(super) static PID_STATS: [CpuPidStats; MAX_CPUS] = [const { CpuPidStats::new() }; MAX_CPUS];

/// Adds to this CPU's counter: only this CPU writes its slot, so a plain
/// load and store (no locked instruction) is exact.
#[inline]
pub(super) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// Counters of `alloc_pid` and `free_pid` calls and their pidmap_lock
/// acquisitions, for one CPU or summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PidStats {
    /// `alloc_pid` calls.
    pub(crate) alloc_calls: u64,
    /// ... of which failed.
    pub(crate) alloc_failed: u64,
    /// pidmap_lock acquisitions by `alloc_pid`.
    pub(crate) alloc_locks: u64,
    /// Times `SingleLock` dropped the lock to preload again.
    pub(crate) alloc_repreloads: u64,
    /// `free_pid` calls.
    pub(crate) free_calls: u64,
    /// pidmap_lock acquisitions by `free_pid`.
    pub(crate) free_locks: u64,
}

impl PidStats {
    /// Counters accumulated between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &PidStats) -> PidStats {
        PidStats {
            alloc_calls: self.alloc_calls - earlier.alloc_calls,
            alloc_failed: self.alloc_failed - earlier.alloc_failed,
            alloc_locks: self.alloc_locks - earlier.alloc_locks,
            alloc_repreloads: self.alloc_repreloads - earlier.alloc_repreloads,
            free_calls: self.free_calls - earlier.free_calls,
            free_locks: self.free_locks - earlier.free_locks,
        }
    }

    fn add(&mut self, o: &PidStats) {
        self.alloc_calls += o.alloc_calls;
        self.alloc_failed += o.alloc_failed;
        self.alloc_locks += o.alloc_locks;
        self.alloc_repreloads += o.alloc_repreloads;
        self.free_calls += o.free_calls;
        self.free_locks += o.free_locks;
    }
}

/// CPU `cpu`'s counters (a consistent-enough snapshot; exact once that CPU
/// is idle). Out-of-range CPUs read as zero.
pub(crate) fn pid_stats_cpu(cpu: usize) -> PidStats {
    let Some(s) = PID_STATS.get(cpu) else {
        return PidStats::default();
    };
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
    PidStats {
        alloc_calls: r(&s.alloc_calls),
        alloc_failed: r(&s.alloc_failed),
        alloc_locks: r(&s.alloc_locks),
        alloc_repreloads: r(&s.alloc_repreloads),
        free_calls: r(&s.free_calls),
        free_locks: r(&s.free_locks),
    }
}

/// This CPU's counters.
pub(crate) fn pid_stats_this_cpu() -> PidStats {
    pid_stats_cpu(platform::cpu_id())
}

/// All CPUs' counters summed.
pub(crate) fn pid_stats_total() -> PidStats {
    let mut t = PidStats::default();
    for cpu in 0..MAX_CPUS {
        t.add(&pid_stats_cpu(cpu));
    }
    t
}
