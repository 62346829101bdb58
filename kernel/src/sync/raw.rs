//! The raw spinlock every algorithm plugs into: a [`SpinProtocol`] plus a
//! name, the debug checks and lock statistics, as a `lock_api::RawMutex`.
//!
//! A protocol ([`super::ticket::Tickets`], [`super::tas::Tas`],
//! [`super::qspinlock::QSpin`], [`super::pvticket::PvTickets`], or the
//! boot-time choice among them, [`super::choice::DynSpin`]) is the part
//! `loom` checks: atomic words and the order of operations on them. It
//! splits an acquisition into an inlined fast path that either takes the
//! lock or says what it found, and an out-of-line slow path that waits. So
//! [`RawSpinLock`] adds nothing to the uncontended path beyond today's
//! ticket lock: the holder record (`lockdebug` only) and lockstat's switch.
//! Every wait runs under the lock watchdog through [`SpinWait`].

use core::marker::PhantomData;

use super::debug::{Holder, HolderCpu, Watchdog};
use super::irq::RawLockInfo;
use super::lockstat::{self, HoldStart, LockKey, Mode};
use super::mode;

/// What a waiting protocol reports while it waits: every spin round, and
/// every return from a halt (after which the clock is read at once).
pub(crate) trait SpinWait {
    fn round(&mut self);
    fn woke(&mut self);
}

/// Waiting without checks (loom models, tests of the bare protocols).
impl SpinWait for () {
    #[inline(always)]
    fn round(&mut self) {}
    #[inline(always)]
    fn woke(&mut self) {}
}

/// A mutual-exclusion protocol over atomic words.
pub(crate) trait SpinProtocol: Send + Sync {
    /// What a failed fast path hands its slow path (a ticket, say).
    type Pending: Copy;
    /// The uncontended attempt: `Ok` when the lock is now held.
    fn lock_fast(&self) -> Result<(), Self::Pending>;
    /// Waits until the lock is held, after `lock_fast` failed.
    fn lock_slow(&self, pending: Self::Pending, wait: &mut impl SpinWait);
    /// Takes the lock only if that needs no wait.
    fn try_lock(&self) -> bool;
    /// Releases the lock (the caller holds it).
    fn unlock(&self);
    /// Whether the lock is held (or about to be), for diagnostics.
    fn is_locked(&self) -> bool;

    /// The quick path: in `mode` (see [`super::mode`]) with statistics off
    /// (and, for the dispatching lock, the ticket lock or test-and-set),
    /// the fast path's result; `None` sends the acquisition down the
    /// general path. One test of the mode byte besides the protocol's own.
    #[inline(always)]
    fn lock_fast_quick(&self, mode: u8) -> Option<Result<(), Self::Pending>> {
        (!mode::stats(mode)).then(|| self.lock_fast())
    }

    /// The quick path's release: false (nothing done) if a lock taken in
    /// `mode` must be released by the general path.
    #[inline(always)]
    fn unlock_quick(&self, mode: u8) -> bool {
        let quick = !mode::stats(mode);
        if quick {
            self.unlock();
        }
        quick
    }

    /// [`lock_fast`](Self::lock_fast) in a `mode` already read.
    #[inline(always)]
    fn lock_fast_in(&self, _mode: u8) -> Result<(), Self::Pending> {
        self.lock_fast()
    }

    /// [`unlock`](Self::unlock) in the `mode` the lock was taken in.
    #[inline(always)]
    fn unlock_in(&self, _mode: u8) {
        self.unlock()
    }

    /// `lock_fast` then, if needed, `lock_slow`.
    #[inline]
    fn lock(&self, wait: &mut impl SpinWait) {
        if let Err(pending) = self.lock_fast() {
            self.lock_slow(pending, wait);
        }
    }
}

/// A protocol with a `const` unlocked value, for statics.
pub(crate) trait ConstInit {
    const UNLOCKED: Self;
}

/// The watchdog as a [`SpinWait`]: names the lock and its holder if a wait
/// passes the bound.
pub(crate) struct Bounded<F: Fn() -> Holder> {
    dog: Watchdog,
    name: &'static str,
    holder: F,
}

impl<F: Fn() -> Holder> Bounded<F> {
    /// Starts timing a wait (slow path only: reads the clock).
    pub(crate) fn start(name: &'static str, holder: F) -> Self {
        Bounded {
            dog: Watchdog::start(),
            name,
            holder,
        }
    }

    /// Cycles waited so far.
    pub(crate) fn elapsed(&self) -> u64 {
        self.dog.elapsed()
    }
}

impl<F: Fn() -> Holder> SpinWait for Bounded<F> {
    #[inline(always)]
    fn round(&mut self) {
        self.dog.tick(self.name, &self.holder);
    }

    fn woke(&mut self) {
        self.dog.check_now(self.name, &self.holder);
    }
}

/// A named spinlock running protocol `P`.
pub(crate) struct RawSpinLock<P> {
    proto: P,
    holder: HolderCpu,
    key: LockKey,
}

/// Guard state of a held [`RawSpinLock`]: the mode it was taken in, the
/// lockstat hold start, and `!Send` (a spinlock is released on the CPU that
/// took it).
pub(crate) struct Held {
    mode: u8,
    hold_start: HoldStart,
    _not_send: PhantomData<*const ()>,
}

impl<P: ConstInit> RawSpinLock<P> {
    /// An unlocked lock called `name`.
    pub(crate) const fn named(name: &'static str) -> Self {
        RawSpinLock {
            proto: P::UNLOCKED,
            holder: HolderCpu::new(),
            key: LockKey::new(name),
        }
    }
}

impl<P: SpinProtocol> RawSpinLock<P> {
    /// The protocol state (tests and benchmarks peek at it).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn protocol(&self) -> &P {
        &self.proto
    }

    #[inline(always)]
    fn acquired(&self, mode: u8) -> Held {
        self.holder.set();
        Held {
            mode,
            hold_start: lockstat::acquired_if(mode::stats(mode), &self.key, Mode::Exclusive),
            _not_send: PhantomData,
        }
    }

    /// An acquisition outside the quick path: statistics on, or (the
    /// dispatching lock) another algorithm than the ticket lock.
    #[inline(never)]
    fn lock_general(&self, mode: u8) -> Held {
        if let Err(pending) = self.proto.lock_fast_in(mode) {
            self.lock_slow(pending);
        }
        self.acquired(mode)
    }

    /// The contended path: recursion check, bounded wait, statistics.
    #[cold]
    #[inline(never)]
    fn lock_slow(&self, pending: P::Pending) {
        self.holder.check_recursion(self.key.name());
        let mut wait = Bounded::start(self.key.name(), || self.holder.get());
        self.proto.lock_slow(pending, &mut wait);
        lockstat::contended(&self.key, Mode::Exclusive, wait.elapsed());
    }
}

// SAFETY: `lock` returns only once the protocol has granted the lock to
// this caller, and every protocol grants it to one holder at a time with
// Acquire ordering against the previous holder's Release (each protocol's
// own module argues this; loom checks it). A debug panic in `lock` happens
// before anything is held.
unsafe impl<P: SpinProtocol + ConstInit> lock_api::RawMutex for RawSpinLock<P> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawSpinLock::named("unnamed");
    type Guard = Held;

    /// `spin_lock()`.
    #[inline]
    fn lock(&self) -> Held {
        let mode = mode::load();
        match self.proto.lock_fast_quick(mode) {
            Some(fast) => {
                if let Err(pending) = fast {
                    self.lock_slow(pending);
                }
                self.holder.set();
                Held {
                    mode,
                    hold_start: HoldStart::default(),
                    _not_send: PhantomData,
                }
            }
            None => self.lock_general(mode),
        }
    }

    /// `spin_trylock()`.
    #[inline]
    fn try_lock(&self) -> Option<Held> {
        self.proto.try_lock().then(|| self.acquired(mode::load()))
    }

    /// `spin_unlock()`.
    #[inline]
    unsafe fn unlock(&self, held: Held) {
        self.holder.clear();
        if !self.proto.unlock_quick(held.mode) {
            lockstat::released(&self.key, Mode::Exclusive, held.hold_start);
            self.proto.unlock_in(held.mode);
        }
    }

    fn is_locked(&self) -> bool {
        self.proto.is_locked()
    }
}

impl<P: SpinProtocol + ConstInit> RawLockInfo for RawSpinLock<P> {
    fn name(&self) -> &'static str {
        self.key.name()
    }

    fn check_recursion(&self) {
        self.holder.check_recursion(self.key.name());
    }
}
