//! Locks: the subject of study as much as the pid code they protect.
//!
//! - Spinlock algorithms, each a protocol over atomic words that `loom`
//!   checks ([`ticket`], [`pvticket`], [`qspinlock`], [`tas`]), plugged
//!   into one raw lock ([`raw::RawSpinLock`]: name, watchdog, lockdebug,
//!   lockstat). The kernel's spinlocks run the one `lock=` chose at boot
//!   ([`choice`]).
//! - [`irq`]: the one IRQ mechanism. [`irq::IrqLock<L, D>`] puts discipline
//!   `D` (`spin_lock`, `_irq`, `_irqsave`) on any raw lock `L`, so a lock's
//!   type says how it is taken, and [`irq::IrqLock::of`] lets a lock whose
//!   discipline varies per call (`pidmap_lock`) hand out guards typed by
//!   theirs. A wrapper rather than per-call methods on every lock: the
//!   checks, the order of release and restore, and `try_lock`'s undo are
//!   written once, lock_api supplies the guards, and a lock cannot be taken
//!   with a discipline its type does not offer.
//! - [`rwlock`]: the qrwlock behind `tasklist_lock`.
//! - [`debug`]: the wait bound on every spin and the `lockdebug` checks;
//!   [`lockstat`]: per-name statistics behind a run-time switch.

pub(crate) mod choice;
pub(crate) mod debug;
pub(crate) mod irq;
pub(crate) mod lockstat;
mod mode;
pub(crate) mod pvticket;
pub(crate) mod qspinlock;
pub(crate) mod raw;
pub(crate) mod rwlock;
pub(crate) mod seqlock;
pub(crate) mod tas;
pub(crate) mod ticket;
pub(crate) mod word;

#[cfg(all(test, not(loom)))]
mod tests;

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

pub(crate) use rwlock::{RwLockIrq, RwLockIrqReadGuard, RwLockIrqWriteGuard, named_rwlock_irq};

use choice::DynSpin;
use irq::{Irq, IrqLock, IrqSave, Plain};
use raw::RawSpinLock;

/// The kernel's raw spinlock: the algorithm `lock=` chose at boot.
pub(crate) type RawSpin = RawSpinLock<DynSpin>;
/// `spinlock_t` taken with `spin_lock` (never from interrupt context).
pub(crate) type SpinLock<T> = lock_api::Mutex<IrqLock<RawSpin, Plain>, T>;
/// `spinlock_t` taken with `spin_lock_irq`.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) type SpinLockIrq<T> = lock_api::Mutex<IrqLock<RawSpin, Irq>, T>;
/// `spinlock_t` taken with `spin_lock_irqsave`.
pub(crate) type SpinLockIrqSave<T> = lock_api::Mutex<IrqLock<RawSpin, IrqSave>, T>;

/// A named [`SpinLock`] (`DEFINE_SPINLOCK`).
pub(crate) const fn named_spin_lock<T>(name: &'static str, value: T) -> SpinLock<T> {
    lock_api::Mutex::from_raw(IrqLock::new(RawSpin::named(name)), value)
}

/// A named [`SpinLockIrq`].
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) const fn named_spin_lock_irq<T>(name: &'static str, value: T) -> SpinLockIrq<T> {
    lock_api::Mutex::from_raw(IrqLock::new(RawSpin::named(name)), value)
}

/// A named [`SpinLockIrqSave`].
pub(crate) const fn named_spin_lock_irqsave<T>(name: &'static str, value: T) -> SpinLockIrqSave<T> {
    lock_api::Mutex::from_raw(IrqLock::new(RawSpin::named(name)), value)
}
