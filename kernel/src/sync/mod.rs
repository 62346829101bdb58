//! Locks: the subject of study as much as the pid code they protect.
//!
//! - [`ticket`]: the FIFO ticket spinlock, a `lock_api::RawMutex`.
//! - [`irq`]: the one IRQ mechanism. [`irq::IrqLock<L, D>`] puts discipline
//!   `D` (`spin_lock`, `_irq`, `_irqsave`) on any raw lock `L`, so a lock's
//!   type says how it is taken, and [`irq::IrqLock::of`] lets a lock whose
//!   discipline varies per call (`pidmap_lock`) hand out guards typed by
//!   theirs. A wrapper rather than per-call methods on every lock: the
//!   checks, the order of release and restore, and `try_lock`'s undo are
//!   written once, lock_api supplies the guards, and a lock cannot be taken
//!   with the wrong discipline because its type offers no other.
//! - [`rwlock`]: the qrwlock behind `tasklist_lock`, whose writers always
//!   take it `write_lock_irq` and whose readers may run in interrupt context.
//! - [`debug`]: the wait bound on every spin (always on, slow path only) and
//!   the fast-path checks compiled in with the `lockdebug` feature.
//! - [`lockstat`]: per-name statistics behind a run-time switch.
//!
//! The lock protocols are written once over [`word::AtomicWord`], so `loom`
//! model checks (`make test-loom`) run the code the kernel runs.

pub mod debug;
pub(crate) mod irq;
pub mod lockstat;
pub mod rwlock;
pub mod ticket;
mod word;

/// Runs a loom model with a preemption bound (default 3, or
/// `LOOM_MAX_PREEMPTIONS`), which keeps the models exhaustive over the
/// interleavings that matter while finishing in seconds.
#[cfg(all(test, loom))]
fn loom_model(f: impl Fn() + Sync + Send + 'static) {
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
pub(crate) use ticket::{
    RawTicketLock, SpinLock, SpinLockIrqSave, named_spin_lock, named_spin_lock_irq,
    named_spin_lock_irqsave,
};
