//! The ticket spinlock (Linux x86's `arch_spinlock_t` from 2.6.25 to 4.1).
//!
//! Two counters: `next` (the ticket dispenser) and `owner` (the ticket now
//! served). Locking takes a ticket with one atomic increment of `next` and
//! spins, with `pause`, until `owner` reaches it; unlocking increments
//! `owner`, handing the lock to the longest waiter. Waiters are served in
//! arrival order (FIFO), which is also the lock's weakness on an
//! oversubscribed host: if the next waiter's vCPU is descheduled, every
//! waiter behind it waits too.
//!
//! Locking acquires with Acquire ordering and unlocking releases with
//! Release. The uncontended path is one `lock xadd` and one load; unlock is
//! a plain store. This is the project's reference lock: the others are
//! measured against it.

use core::sync::atomic::{AtomicU32, Ordering};

#[cfg(all(test, not(loom)))]
use super::raw::RawSpinLock;
use super::raw::{ConstInit, SpinProtocol, SpinWait};
use super::word::AtomicWord;

/// The ticket protocol, generic over the atomic word so `loom` can check
/// the very code the kernel runs (see [`super::word`]).
pub(crate) struct Tickets<A = AtomicU32> {
    pub(super) next: A,
    pub(super) owner: A,
}

impl ConstInit for Tickets {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = Tickets {
        next: AtomicU32::new(0),
        owner: AtomicU32::new(0),
    };
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
    /// [`unlock`](SpinProtocol::unlock) of the previous holder.
    #[inline(always)]
    pub(crate) fn is_served(&self, ticket: u32) -> bool {
        self.owner.load(Ordering::Acquire) == ticket
    }
}

impl<A: AtomicWord> SpinProtocol for Tickets<A> {
    /// The ticket taken.
    type Pending = u32;

    #[inline(always)]
    fn lock_fast(&self) -> Result<(), u32> {
        let ticket = self.take_ticket();
        if self.is_served(ticket) {
            Ok(())
        } else {
            Err(ticket)
        }
    }

    #[inline(always)]
    fn lock_slow(&self, ticket: u32, wait: &mut impl SpinWait) {
        while !self.is_served(ticket) {
            A::relax();
            wait.round();
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
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

    #[inline(always)]
    fn unlock(&self) {
        // Only the holder writes `owner`, so a load + store is enough (a
        // plain `mov` on x86, like Linux's ticket unlock).
        let owner = self.owner.load(Ordering::Relaxed);
        self.owner.store(owner.wrapping_add(1), Ordering::Release);
    }

    fn is_locked(&self) -> bool {
        self.next.load(Ordering::Relaxed) != self.owner.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_models;
