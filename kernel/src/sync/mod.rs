//! Locks: the subject of study as much as the pid code they protect.
//!
//! - [`ticket`]: the FIFO ticket spinlock behind `pidmap_lock` and the other
//!   spinlocks, as a `lock_api::RawMutex`, in three disciplines carried by
//!   the type: [`SpinLock`] (never taken from interrupt context),
//!   [`SpinLockIrq`] (`spin_lock_irq`: the caller knows IRQs are on) and
//!   [`SpinLockIrqSave`] (`spin_lock_irqsave`).
//! - [`rwlock`]: the qrwlock behind `tasklist_lock`, as a
//!   `lock_api::RawRwLock` whose writers always disable IRQs
//!   ([`RwLockIrq`], [`write_lock_irq`]) and whose readers may run in
//!   interrupt context and are let past a merely waiting writer there.
//! - [`debug`]: the checks every lock runs. The wait bound (a stuck wait
//!   panics naming the lock and its holder) is always on and costs only the
//!   slow path; the checks that cost the fast path (holder CPU recording for
//!   recursion detection, IF assertions) are compiled in by the `lockdebug`
//!   cargo feature and in unit tests, so a benchmark build pays nothing.
//! - [`lockstat`]: per-name statistics behind a run-time switch, one relaxed
//!   load per acquisition when off.
//!
//! The lock protocols are written once over [`word::AtomicWord`], so `loom`
//! model checks (`make test-loom`) run the code the kernel runs.

pub mod debug;
pub mod lockstat;
pub mod rwlock;
pub mod seqlock;
pub mod ticket;
pub(crate) mod word;

/// Runs a loom model with a preemption bound (default 3, or
/// `LOOM_MAX_PREEMPTIONS`), which keeps the models exhaustive over the
/// interleavings that matter while finishing in seconds.
#[cfg(all(test, loom))]
pub(crate) fn loom_model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    // Spin-waits yield to loom's scheduler on every round, so a waiting
    // thread adds branches each time it is scheduled; the default (1,000)
    // is too small for three threads contending.
    builder.max_branches = 100_000;
    builder.check(f);
}

pub use rwlock::{
    RawRwLockIrq, RwLockIrq, RwLockIrqReadGuard, RwLockIrqWriteGuard, named_rwlock_irq,
};
pub use ticket::{
    RawTicketLock, RawTicketLockIrq, RawTicketLockIrqSave, SpinLock, SpinLockIrq, SpinLockIrqSave,
    named_spin_lock, named_spin_lock_irq, named_spin_lock_irqsave,
};
