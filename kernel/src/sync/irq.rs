//! IRQ disciplines: `spin_lock`, `spin_lock_irq` and `spin_lock_irqsave`
//! for any raw lock, written once.
//!
//! A discipline ([`Plain`], [`Irq`], [`IrqSave`]) says what happens to the
//! local interrupt flag around a hold. [`IrqLock<L, D>`] applies discipline
//! `D` to any raw lock `L` (hermit-sync's `RawInterruptMutex`, generalised
//! over the discipline) and is itself a `lock_api::RawMutex`, so a lock
//! built on it carries its discipline in its type. A lock whose discipline
//! is chosen per call (Linux changed `pidmap_lock`'s between versions) views
//! its raw lock through [`IrqLock::of`] and holds a [`RawGuard<L, D>`],
//! whose type still says how it must be released.
//!
//! The lockdebug checks run here and nowhere else: `_irq` asserts IF=1 at
//! lock (its unlock would enable IRQs behind a caller that had them off);
//! every IRQ-disabling discipline asserts IF=0 at unlock. A failed unlock
//! check releases the lock and restores the flag before it panics.

use core::marker::PhantomData;
use core::mem::ManuallyDrop;

use super::debug;
use crate::platform::{self, IrqFlags};

/// What a raw lock tells its IRQ wrapper for the debug checks.
pub(crate) trait RawLockInfo: lock_api::RawMutex {
    /// The lock's name, for messages.
    fn name(&self) -> &'static str;
    /// Panics if this CPU already holds the lock (lockdebug), which is the
    /// better diagnosis when IRQs are found off at an `_irq` lock.
    fn check_recursion(&self);
}

/// How a lock treats the local interrupt flag while it is held.
pub(crate) trait IrqDiscipline: 'static {
    /// What the lock keeps from lock to unlock.
    type Saved: Copy;
    /// Whether IRQs are off for the whole hold (checked at unlock).
    const IRQS_OFF: bool;
    /// Whether the caller must have IRQs on (checked at lock).
    const NEEDS_IRQS_ON: bool;
    /// Runs before the raw lock is taken.
    fn enter() -> Self::Saved;
    /// Runs after the raw lock is released.
    fn exit(saved: Self::Saved);
}

/// `spin_lock`: IRQs untouched. Only for locks no interrupt handler takes.
pub(crate) enum Plain {}

/// `spin_lock_irq`: IRQs off for the hold, on again after; the caller knows
/// they were on.
pub(crate) enum Irq {}

/// `spin_lock_irqsave`: IRQs off for the hold, then as they were.
pub(crate) enum IrqSave {}

impl IrqDiscipline for Plain {
    type Saved = ();
    const IRQS_OFF: bool = false;
    const NEEDS_IRQS_ON: bool = false;
    #[inline(always)]
    fn enter() {}
    #[inline(always)]
    fn exit(_: ()) {}
}

impl IrqDiscipline for Irq {
    type Saved = ();
    const IRQS_OFF: bool = true;
    const NEEDS_IRQS_ON: bool = true;
    #[inline(always)]
    fn enter() {
        platform::local_irq_disable();
    }
    #[inline(always)]
    fn exit(_: ()) {
        platform::local_irq_enable();
    }
}

impl IrqDiscipline for IrqSave {
    type Saved = IrqFlags;
    const IRQS_OFF: bool = true;
    const NEEDS_IRQS_ON: bool = false;
    #[inline(always)]
    fn enter() -> IrqFlags {
        platform::local_irq_save()
    }
    #[inline(always)]
    fn exit(flags: IrqFlags) {
        platform::local_irq_restore(flags);
    }
}

/// Starts a hold under discipline `D`: the lock-time check, then the flag.
/// Also used by the rwlock's `write_lock_irq`.
#[inline(always)]
pub(crate) fn enter<D: IrqDiscipline>(name: &str, check_recursion: impl FnOnce()) -> D::Saved {
    if D::NEEDS_IRQS_ON && debug::LOCKDEBUG && !platform::irqs_enabled() {
        debug::irqs_off_at_irq_lock(name, check_recursion);
    }
    D::enter()
}

/// Whether the hold kept discipline `D` so far (IF=0 where it must be);
/// read before releasing, reported by [`exit`] after.
#[inline(always)]
pub(crate) fn held_correctly<D: IrqDiscipline>() -> bool {
    !(D::IRQS_OFF && debug::LOCKDEBUG && platform::irqs_enabled())
}

/// Ends a hold whose raw lock is already released: restores the flag, then
/// panics if [`held_correctly`] said the hold broke the discipline.
#[inline(always)]
pub(crate) fn exit<D: IrqDiscipline>(saved: D::Saved, correct: bool, name: &str) {
    D::exit(saved);
    if !correct {
        debug::irqs_on_while_held(name);
    }
}

/// Raw lock `L` taken with discipline `D`.
#[repr(transparent)]
pub(crate) struct IrqLock<L, D> {
    raw: L,
    _discipline: PhantomData<fn() -> D>,
}

/// Guard state of an [`IrqLock`]: the raw lock's, and what the discipline
/// saved.
pub(crate) struct IrqHeld<G, S> {
    held: G,
    saved: S,
}

impl<L, D> IrqLock<L, D> {
    /// Wraps `raw`.
    pub(crate) const fn new(raw: L) -> Self {
        IrqLock {
            raw,
            _discipline: PhantomData,
        }
    }

    /// `raw` seen as taken with discipline `D`, for locks whose discipline
    /// is chosen per call.
    #[inline(always)]
    pub(crate) fn of(raw: &L) -> &Self {
        // SAFETY: `IrqLock<L, D>` is `repr(transparent)` over `L` (the
        // other field is a zero-sized marker), so the pointer cast keeps
        // layout, alignment and validity; the lifetime is `raw`'s.
        unsafe { &*(raw as *const L as *const Self) }
    }

    /// The raw lock (tests peek at its state).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn inner(&self) -> &L {
        &self.raw
    }
}

impl<L: RawLockInfo, D: IrqDiscipline> IrqLock<L, D> {
    /// Takes the lock, returning a guard that releases it on drop.
    #[inline]
    pub(crate) fn lock_guard(&self) -> RawGuard<'_, L, D> {
        RawGuard {
            lock: self,
            held: ManuallyDrop::new(lock_api::RawMutex::lock(self)),
        }
    }
}

// SAFETY: mutual exclusion is `L`'s; the discipline only changes the
// interrupt flag before the raw lock is taken and after it is released, and
// a failed check panics only once both are done (or, at lock, before
// anything is held).
unsafe impl<L: RawLockInfo, D: IrqDiscipline> lock_api::RawMutex for IrqLock<L, D> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = IrqLock::new(L::INIT);
    type Guard = IrqHeld<L::Guard, D::Saved>;

    #[inline]
    fn lock(&self) -> Self::Guard {
        let saved = enter::<D>(self.raw.name(), || self.raw.check_recursion());
        IrqHeld {
            held: self.raw.lock(),
            saved,
        }
    }

    #[inline]
    fn try_lock(&self) -> Option<Self::Guard> {
        let saved = enter::<D>(self.raw.name(), || self.raw.check_recursion());
        match self.raw.try_lock() {
            Some(held) => Some(IrqHeld { held, saved }),
            None => {
                D::exit(saved);
                None
            }
        }
    }

    #[inline]
    unsafe fn unlock(&self, guard: Self::Guard) {
        let correct = held_correctly::<D>();
        // SAFETY: the caller passes the state of this CPU's hold.
        unsafe { self.raw.unlock(guard.held) };
        exit::<D>(guard.saved, correct, self.raw.name());
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }
}

/// A held raw lock with discipline `D`, released when dropped; for locks
/// that guard data kept elsewhere (the guard itself is the proof).
#[must_use = "dropping the guard releases the lock at once"]
pub(crate) struct RawGuard<'a, L: RawLockInfo, D: IrqDiscipline> {
    lock: &'a IrqLock<L, D>,
    held: ManuallyDrop<IrqHeld<L::Guard, D::Saved>>,
}

impl<L: RawLockInfo, D: IrqDiscipline> Drop for RawGuard<'_, L, D> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: taken once, here; the state is this guard's hold.
        unsafe {
            let held = ManuallyDrop::take(&mut self.held);
            lock_api::RawMutex::unlock(self.lock, held);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::{RawSpin, named_spin_lock_irq, named_spin_lock_irqsave};
    use lock_api::RawMutex;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    #[test]
    fn per_call_guards_follow_their_discipline() {
        let raw = RawSpin::named("test_per_call");
        {
            let _g = IrqLock::<_, Plain>::of(&raw).lock_guard();
            assert!(platform::irqs_enabled() && raw.is_locked());
        }
        {
            let _g = IrqLock::<_, Irq>::of(&raw).lock_guard();
            assert!(!platform::irqs_enabled() && raw.is_locked());
        }
        assert!(platform::irqs_enabled() && !raw.is_locked());
        let outer = platform::local_irq_save();
        {
            let _g = IrqLock::<_, IrqSave>::of(&raw).lock_guard();
            assert!(raw.is_locked());
        }
        assert!(
            !platform::irqs_enabled(),
            "irqsave restores the saved (off) state"
        );
        platform::local_irq_restore(outer);
        assert!(!raw.is_locked());
    }

    /// A failed unlock-time check panics only after the lock is released
    /// and the flag restored, as lock_api's contract asks of an unwinding
    /// unlock.
    #[test]
    fn failed_unlock_check_releases_first() {
        fn unlock_panics(hold: impl FnOnce()) {
            let err = catch_unwind(AssertUnwindSafe(hold)).unwrap_err();
            let msg = err.downcast_ref::<String>().unwrap();
            assert!(
                msg.contains("IRQ-safe lock held with IRQs enabled"),
                "{msg}"
            );
        }
        let save = named_spin_lock_irqsave("test_release_first", ());
        unlock_panics(|| {
            let _g = save.lock();
            platform::local_irq_enable();
        });
        assert!(!save.is_locked() && platform::irqs_enabled());
        let irq = named_spin_lock_irq("test_release_first_irq", ());
        unlock_panics(|| {
            let _g = irq.lock();
            platform::local_irq_enable();
        });
        assert!(!irq.is_locked() && platform::irqs_enabled());
        drop(save.lock());
        drop(irq.lock());
    }
}
