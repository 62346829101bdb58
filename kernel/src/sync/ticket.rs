//! The ticket spinlock (Linux x86's lock before qspinlock).
//!
//! Two counters: `next` (the ticket dispenser) and `owner` (the ticket now
//! served). `lock` takes a ticket with one atomic increment of `next` and
//! spins, with `pause`, until `owner` reaches it; `unlock` increments
//! `owner`, handing the lock to the longest waiter. Waiters are served in
//! arrival order (FIFO), which is also the lock's weakness on an
//! oversubscribed host: if the next waiter's vCPU is descheduled, every
//! waiter behind it waits too.
//!
//! Lock acquires with Acquire ordering and releases with Release ordering.
//! The IRQ disciplines are separate raw types, so a lock's type says how it
//! must be taken: the guard of an IRQ-disabling lock carries the saved
//! interrupt state and is `!Send` (it must be released on the CPU that took
//! it).

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::platform::{self, IrqFlags};

/// The raw FIFO ticket lock, with a name for diagnostics.
pub struct RawTicketLock {
    next: AtomicU32,
    owner: AtomicU32,
    name: &'static str,
}

/// Guard state that pins the guard to the CPU that took the lock.
pub struct NoSend(PhantomData<*const ()>);

const NO_SEND: NoSend = NoSend(PhantomData);

impl RawTicketLock {
    /// An unlocked lock called `name`.
    pub const fn named(name: &'static str) -> Self {
        RawTicketLock {
            next: AtomicU32::new(0),
            owner: AtomicU32::new(0),
            name,
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    #[inline]
    fn acquire(&self) {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        while self.owner.load(Ordering::Acquire) != ticket {
            platform::cpu_relax();
        }
    }

    #[inline]
    fn try_acquire(&self) -> bool {
        let owner = self.owner.load(Ordering::Relaxed);
        // Take a ticket only if it would be served at once.
        self.next
            .compare_exchange(
                owner,
                owner.wrapping_add(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    #[inline]
    fn release(&self) {
        // Only the holder writes `owner`, so a load + store is enough.
        let owner = self.owner.load(Ordering::Relaxed);
        self.owner.store(owner.wrapping_add(1), Ordering::Release);
    }

    #[inline]
    fn locked(&self) -> bool {
        self.next.load(Ordering::Relaxed) != self.owner.load(Ordering::Relaxed)
    }
}

// SAFETY: `acquire` returns only when this caller's ticket is served, and
// tickets are unique (fetch_add), so one holder at a time; the Acquire load
// in `acquire` pairs with the Release store in `release`.
unsafe impl lock_api::RawMutex for RawTicketLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawTicketLock::named("unnamed");
    type Guard = NoSend;

    fn lock(&self) -> NoSend {
        self.acquire();
        NO_SEND
    }

    fn try_lock(&self) -> Option<NoSend> {
        self.try_acquire().then_some(NO_SEND)
    }

    unsafe fn unlock(&self, _guard: NoSend) {
        self.release();
    }

    fn is_locked(&self) -> bool {
        self.locked()
    }
}

/// `spin_lock_irq`: disables interrupts, then locks; unlocking re-enables
/// them. For locks taken only where interrupts are known to be on.
pub struct RawTicketLockIrq(RawTicketLock);

impl RawTicketLockIrq {
    pub const fn named(name: &'static str) -> Self {
        RawTicketLockIrq(RawTicketLock::named(name))
    }

    pub fn name(&self) -> &'static str {
        self.0.name
    }
}

// SAFETY: mutual exclusion comes from the inner ticket lock.
unsafe impl lock_api::RawMutex for RawTicketLockIrq {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawTicketLockIrq::named("unnamed");
    type Guard = NoSend;

    fn lock(&self) -> NoSend {
        platform::local_irq_disable();
        self.0.acquire();
        NO_SEND
    }

    fn try_lock(&self) -> Option<NoSend> {
        platform::local_irq_disable();
        if self.0.try_acquire() {
            Some(NO_SEND)
        } else {
            platform::local_irq_enable();
            None
        }
    }

    unsafe fn unlock(&self, _guard: NoSend) {
        self.0.release();
        platform::local_irq_enable();
    }

    fn is_locked(&self) -> bool {
        self.0.locked()
    }
}

/// Saved interrupt state held by an irqsave guard (`!Send`).
pub struct SavedIrq(IrqFlags, PhantomData<*const ()>);

/// `spin_lock_irqsave`: saves the interrupt state, disables interrupts,
/// locks; unlocking restores the saved state.
pub struct RawTicketLockIrqSave(RawTicketLock);

impl RawTicketLockIrqSave {
    pub const fn named(name: &'static str) -> Self {
        RawTicketLockIrqSave(RawTicketLock::named(name))
    }

    pub fn name(&self) -> &'static str {
        self.0.name
    }
}

// SAFETY: mutual exclusion comes from the inner ticket lock.
unsafe impl lock_api::RawMutex for RawTicketLockIrqSave {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawTicketLockIrqSave::named("unnamed");
    type Guard = SavedIrq;

    fn lock(&self) -> SavedIrq {
        let flags = platform::local_irq_save();
        self.0.acquire();
        SavedIrq(flags, PhantomData)
    }

    fn try_lock(&self) -> Option<SavedIrq> {
        let flags = platform::local_irq_save();
        if self.0.try_acquire() {
            Some(SavedIrq(flags, PhantomData))
        } else {
            platform::local_irq_restore(flags);
            None
        }
    }

    unsafe fn unlock(&self, guard: SavedIrq) {
        self.0.release();
        platform::local_irq_restore(guard.0);
    }

    fn is_locked(&self) -> bool {
        self.0.locked()
    }
}

/// A ticket spinlock never taken from interrupt context.
pub type SpinLock<T> = lock_api::Mutex<RawTicketLock, T>;
/// A ticket spinlock taken with `spin_lock_irq`.
pub type SpinLockIrq<T> = lock_api::Mutex<RawTicketLockIrq, T>;
/// A ticket spinlock taken with `spin_lock_irqsave`.
pub type SpinLockIrqSave<T> = lock_api::Mutex<RawTicketLockIrqSave, T>;

/// A named [`SpinLock`].
pub const fn spin_lock<T>(name: &'static str, value: T) -> SpinLock<T> {
    lock_api::Mutex::from_raw(RawTicketLock::named(name), value)
}

/// A named [`SpinLockIrq`].
pub const fn spin_lock_irq<T>(name: &'static str, value: T) -> SpinLockIrq<T> {
    lock_api::Mutex::from_raw(RawTicketLockIrq::named(name), value)
}

/// A named [`SpinLockIrqSave`].
pub const fn spin_lock_irqsave<T>(name: &'static str, value: T) -> SpinLockIrqSave<T> {
    lock_api::Mutex::from_raw(RawTicketLockIrqSave::named(name), value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::irqs_enabled;
    use std::sync::Arc;

    #[test]
    fn counter_is_exact_under_contention() {
        let lock = Arc::new(spin_lock("test", 0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        *l.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 80_000);
    }

    #[test]
    fn try_lock_fails_while_held() {
        let lock = spin_lock("test", ());
        let g = lock.lock();
        assert!(lock.try_lock().is_none());
        drop(g);
        assert!(lock.try_lock().is_some());
    }

    #[test]
    fn irq_disciplines() {
        let a = spin_lock_irq("irq", 1);
        {
            let _g = a.lock();
            assert!(!irqs_enabled());
        }
        assert!(irqs_enabled());
        let b = spin_lock_irqsave("irqsave", 2);
        let outer = platform::local_irq_save();
        {
            let _g = b.lock();
            assert!(!irqs_enabled());
        }
        assert!(!irqs_enabled(), "irqsave restores the saved (off) state");
        platform::local_irq_restore(outer);
        assert!(irqs_enabled());
    }
}
