//! The byte every spinlock acquisition reads first: lock statistics on or
//! off, and the algorithm `lock=` chose.
//!
//! Keeping both in one byte is what makes the run-time choice free for the
//! reference lock: the ticket lock with statistics off is mode 0, so the
//! kernel's spinlock tests one byte against zero where a fixed ticket lock
//! tests the statistics switch, and takes the same number of branches.
//! Both parts change only at quiet moments: the algorithm once at boot,
//! before any CPU takes a spinlock; statistics between benchmark runs.

use core::sync::atomic::{AtomicU8, Ordering};

/// Statistics are being collected.
pub(crate) const STATS: u8 = 1;
/// The algorithm's number sits above the statistics bit.
const ALGO_SHIFT: u8 = 1;

static MODE: AtomicU8 = AtomicU8::new(0);

/// The mode now (one relaxed byte load).
#[inline(always)]
pub(crate) fn load() -> u8 {
    MODE.load(Ordering::Relaxed)
}

/// Whether `mode` has statistics on.
#[inline(always)]
pub(crate) fn stats(mode: u8) -> bool {
    mode & STATS != 0
}

/// The algorithm number in `mode`.
#[inline(always)]
pub(crate) fn algo(mode: u8) -> u8 {
    mode >> ALGO_SHIFT
}

/// `mode` with its algorithm number replaced by `algo`.
const fn with_algo(mode: u8, algo: u8) -> u8 {
    (mode & STATS) | (algo << ALGO_SHIFT)
}

/// Switches statistics; returns whether they were on.
pub(crate) fn set_stats(on: bool) -> bool {
    let old = if on {
        MODE.fetch_or(STATS, Ordering::Relaxed)
    } else {
        MODE.fetch_and(!STATS, Ordering::Relaxed)
    };
    stats(old)
}

/// Sets the algorithm number, keeping the statistics bit (at boot, when
/// nothing else writes the byte).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) fn set_algo(algo: u8) {
    let mode = MODE.load(Ordering::Relaxed);
    MODE.store(with_algo(mode, algo), Ordering::Relaxed);
}
