//! Test-and-test-and-set: what x86 Linux falls back to in a guest without
//! paravirt spinlocks (`virt_spin_lock()`, since 4.8 with "locking/
//! qspinlock/x86: Fix performance regression under unaccelerated VMs").
//!
//! One word, 0 when free. Locking swings it from 0 to 1 with a
//! compare-exchange; a waiter reads until it sees 0 and only then tries
//! the compare-exchange again, so waiting spins on a shared cache line
//! instead of bouncing it. No order among waiters: whoever runs when the
//! lock falls free takes it. That is its virtue on an oversubscribed host,
//! where a FIFO lock hands the lock to a waiter whose vCPU may not be
//! running, and its vice on real cores, where a waiter can starve.
//!
//! Linux keeps this word in the qspinlock's layout (the locked byte); here
//! it is a word of its own, unlocked with a plain Release store of 0.

use core::sync::atomic::{AtomicU32, Ordering};

use super::raw::{ConstInit, SpinProtocol, SpinWait};
use super::word::AtomicWord;

pub(crate) struct Tas<A = AtomicU32> {
    val: A,
}

impl ConstInit for Tas {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = Tas {
        val: AtomicU32::new(0),
    };
}

impl<A: AtomicWord> Tas<A> {
    /// An unlocked lock over any [`AtomicWord`] (loom models).
    #[cfg_attr(not(all(test, loom)), allow(dead_code))]
    pub(crate) fn with_words() -> Self {
        Tas {
            val: A::with_value(0),
        }
    }

    #[inline(always)]
    fn swing(&self) -> bool {
        self.val
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }
}

impl<A: AtomicWord> SpinProtocol for Tas<A> {
    type Pending = ();

    #[inline(always)]
    fn lock_fast(&self) -> Result<(), ()> {
        if self.swing() { Ok(()) } else { Err(()) }
    }

    #[inline]
    fn lock_slow(&self, _: (), wait: &mut impl SpinWait) {
        loop {
            if self.val.load(Ordering::Relaxed) == 0 && self.swing() {
                return;
            }
            A::relax();
            wait.round();
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.swing()
    }

    #[inline(always)]
    fn unlock(&self) {
        self.val.store(0, Ordering::Release);
    }

    fn is_locked(&self) -> bool {
        self.val.load(Ordering::Relaxed) != 0
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::sync::loom_model;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    /// Two threads, each takes the lock once: one at a time.
    #[test]
    fn tas_mutual_exclusion() {
        loom_model(|| {
            let s = Arc::new((
                Tas::<loom::sync::atomic::AtomicU32>::with_words(),
                UnsafeCell::new(0u32),
            ));
            let bump = |s: &(Tas<loom::sync::atomic::AtomicU32>, UnsafeCell<u32>)| {
                s.0.lock(&mut ());
                // SAFETY: the lock is held (which is what loom checks).
                s.1.with_mut(|v| unsafe { *v += 1 });
                s.0.unlock();
            };
            let other = {
                let s = s.clone();
                thread::spawn(move || bump(&s))
            };
            bump(&s);
            other.join().unwrap();
            // SAFETY: every other thread has been joined.
            assert_eq!(s.1.with(|v| unsafe { *v }), 2);
            assert!(!s.0.is_locked());
        });
    }
}
