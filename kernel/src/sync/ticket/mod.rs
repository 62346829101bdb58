//! The ticket spinlock (Linux x86's `arch_spinlock_t` before qspinlock).
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
//! The uncontended fast path is one `lock xadd` and one load; everything
//! else (the wait-bound watchdog, recursion check, contention statistics)
//! lives on the out-of-line slow path, entered only when the ticket is not
//! served at once. The debug checks and statistics are described in
//! [`super::debug`] and [`super::lockstat`].
//!
//! The IRQ disciplines come from [`super::irq`]: [`SpinLock`],
//! [`SpinLockIrq`] and [`SpinLockIrqSave`] wrap this raw lock in an
//! [`IrqLock`] of their discipline, so a lock's type says how it is taken. Guards are `!Send`: a spinlock is
//! released on the CPU that took it.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};

use super::debug::{HolderCpu, Watchdog};
use super::irq::{Irq, IrqLock, IrqSave, Plain};
use super::lockstat::{self, HoldStart, LockKey, Mode};
use super::word::AtomicWord;

/// The ticket protocol itself, generic over the atomic word so `loom` can
/// check the very code the kernel runs (see [`super::word`]).
pub(crate) struct Tickets<A = AtomicU32> {
    next: A,
    owner: A,
}

impl Tickets {
    /// An unlocked ticket pair.
    pub(crate) const fn new() -> Self {
        Tickets {
            next: AtomicU32::new(0),
            owner: AtomicU32::new(0),
        }
    }
}

impl<A: AtomicWord> Tickets<A> {
    /// An unlocked ticket pair over any [`AtomicWord`] (loom models).
    #[cfg_attr(not(all(test, loom)), allow(dead_code))]
    pub(crate) fn with_words() -> Self {
        Tickets {
            next: A::with_value(0),
            owner: A::with_value(0),
        }
    }

    /// Takes the next ticket (`xadd` on the dispenser). Relaxed: the
    /// ordering comes from the Acquire load that sees the ticket served.
    #[inline(always)]
    pub(crate) fn take_ticket(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether `ticket` is being served; Acquire pairs with the Release in
    /// [`unlock`](Self::unlock) of the previous holder.
    #[inline(always)]
    pub(crate) fn is_served(&self, ticket: u32) -> bool {
        self.owner.load(Ordering::Acquire) == ticket
    }

    /// Spins until `ticket` is served, calling `on_spin` after each
    /// [`AtomicWord::relax`].
    #[inline(always)]
    pub(crate) fn wait(&self, ticket: u32, mut on_spin: impl FnMut()) {
        while !self.is_served(ticket) {
            A::relax();
            on_spin();
        }
    }

    /// Takes a ticket and waits for it, without checks or statistics (loom
    /// models).
    #[cfg_attr(not(all(test, loom)), allow(dead_code))]
    #[inline]
    pub(crate) fn lock(&self) {
        let ticket = self.take_ticket();
        self.wait(ticket, || {});
    }

    /// Takes a ticket only if it would be served at once.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        // `owner` never passes `next`, so if `next` still equals the owner
        // we read (even a stale one), the lock is free and ours. Acquire:
        // the lock is then ours because of the previous holder's Release
        // store to `owner`, and we must see its critical section (the CAS
        // on `next` reads a Relaxed ticket increment, which orders nothing).
        let owner = self.owner.load(Ordering::Acquire);
        self.next
            .compare_exchange(
                owner,
                owner.wrapping_add(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Serves the next ticket.
    #[inline(always)]
    pub(crate) fn unlock(&self) {
        // Only the holder writes `owner`, so a load + store is enough (a
        // plain `mov` on x86, like Linux's ticket unlock).
        let owner = self.owner.load(Ordering::Relaxed);
        self.owner.store(owner.wrapping_add(1), Ordering::Release);
    }

    /// Whether a ticket is out (held, or about to be).
    pub(crate) fn is_locked(&self) -> bool {
        self.next.load(Ordering::Relaxed) != self.owner.load(Ordering::Relaxed)
    }
}

/// The raw FIFO ticket lock, with a name for diagnostics and statistics.
pub struct RawTicketLock {
    tickets: Tickets,
    holder: HolderCpu,
    key: LockKey,
}

/// Guard state of a held ticket lock: the lockstat hold start, and `!Send`
/// (a spinlock is released on the CPU that took it).
pub struct Held {
    hold_start: HoldStart,
    _not_send: PhantomData<*const ()>,
}

impl RawTicketLock {
    /// An unlocked lock called `name`.
    pub const fn named(name: &'static str) -> Self {
        RawTicketLock {
            tickets: Tickets::new(),
            holder: HolderCpu::new(),
            key: LockKey::new(name),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.key.name()
    }

    /// `arch_spin_lock()` plus the debug and statistics hooks.
    #[inline]
    fn acquire(&self) -> Held {
        let ticket = self.tickets.take_ticket();
        if !self.tickets.is_served(ticket) {
            self.wait_slow(ticket);
        }
        self.acquired()
    }

    #[inline(always)]
    fn acquired(&self) -> Held {
        self.holder.set();
        Held {
            hold_start: lockstat::acquired(&self.key, Mode::Exclusive),
            _not_send: PhantomData,
        }
    }

    /// The contended path: recursion check, bounded wait, statistics.
    #[cold]
    #[inline(never)]
    fn wait_slow(&self, ticket: u32) {
        self.holder.check_recursion(self.key.name());
        let mut watchdog = Watchdog::start();
        self.tickets.wait(ticket, || {
            watchdog.tick(self.key.name(), || self.holder.get())
        });
        lockstat::contended(&self.key, Mode::Exclusive, watchdog.elapsed());
    }

    #[inline]
    fn try_acquire(&self) -> Option<Held> {
        self.tickets.try_lock().then(|| self.acquired())
    }

    /// `arch_spin_unlock()` plus the hooks.
    #[inline]
    fn release(&self, held: Held) {
        lockstat::released(&self.key, Mode::Exclusive, held.hold_start);
        self.holder.clear();
        self.tickets.unlock();
    }
}

// SAFETY: `acquire` returns only when this caller's ticket is served, and
// tickets are unique (fetch_add), so one holder at a time; the Acquire load
// in `acquire` pairs with the Release store in `release`. A panic in
// `acquire` (debug checks) happens before the lock is held.
unsafe impl lock_api::RawMutex for RawTicketLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawTicketLock::named("unnamed");
    type Guard = Held;

    /// `spin_lock()`.
    #[inline]
    fn lock(&self) -> Held {
        self.acquire()
    }

    /// `spin_trylock()`.
    #[inline]
    fn try_lock(&self) -> Option<Held> {
        self.try_acquire()
    }

    /// `spin_unlock()`.
    #[inline]
    unsafe fn unlock(&self, held: Held) {
        self.release(held);
    }

    fn is_locked(&self) -> bool {
        self.tickets.is_locked()
    }
}

impl super::irq::RawLockInfo for RawTicketLock {
    fn name(&self) -> &'static str {
        self.key.name()
    }

    fn check_recursion(&self) {
        self.holder.check_recursion(self.key.name());
    }
}

/// A ticket spinlock never taken from interrupt context.
pub(crate) type SpinLock<T> = lock_api::Mutex<IrqLock<RawTicketLock, Plain>, T>;
/// A ticket spinlock taken with `spin_lock_irq`.
pub(crate) type SpinLockIrq<T> = lock_api::Mutex<IrqLock<RawTicketLock, Irq>, T>;
/// A ticket spinlock taken with `spin_lock_irqsave`.
pub(crate) type SpinLockIrqSave<T> = lock_api::Mutex<IrqLock<RawTicketLock, IrqSave>, T>;

/// A named [`SpinLock`] (`DEFINE_SPINLOCK`).
pub(crate) const fn named_spin_lock<T>(name: &'static str, value: T) -> SpinLock<T> {
    lock_api::Mutex::from_raw(IrqLock::new(RawTicketLock::named(name)), value)
}

/// A named [`SpinLockIrq`].
pub(crate) const fn named_spin_lock_irq<T>(name: &'static str, value: T) -> SpinLockIrq<T> {
    lock_api::Mutex::from_raw(IrqLock::new(RawTicketLock::named(name)), value)
}

/// A named [`SpinLockIrqSave`].
pub(crate) const fn named_spin_lock_irqsave<T>(name: &'static str, value: T) -> SpinLockIrqSave<T> {
    lock_api::Mutex::from_raw(IrqLock::new(RawTicketLock::named(name)), value)
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_models;
