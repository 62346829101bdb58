//! loom models of the ticket protocol ([`Tickets`] over loom's atomics):
//! mutual exclusion (loom's `UnsafeCell` flags any overlapping access) and
//! FIFO hand-off (the lock is taken in ticket order). Run by
//! `make test-loom`.

use super::Tickets;
use crate::sync::loom_model;
use crate::sync::raw::SpinProtocol;
use core::sync::atomic::Ordering;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::AtomicU32;
use loom::thread;

type LoomTickets = Tickets<AtomicU32>;

#[test]
fn ticket_mutual_exclusion() {
    loom_model(|| {
        let shared = Arc::new((LoomTickets::with_words(), UnsafeCell::new(0u32)));
        let bump = |s: &(LoomTickets, UnsafeCell<u32>)| {
            s.0.lock(&mut ());
            // SAFETY: the ticket lock is held (which is what loom checks).
            s.1.with_mut(|v| unsafe { *v += 1 });
            s.0.unlock();
        };
        let other = {
            let s = shared.clone();
            thread::spawn(move || bump(&s))
        };
        bump(&shared);
        other.join().unwrap();
        assert!(!shared.0.is_locked());
        // SAFETY: every other thread has been joined.
        assert_eq!(shared.1.with(|v| unsafe { *v }), 2);
    });
}

/// The lock is held (ticket 0); another thread queues (ticket 1); then the
/// holder queues again behind it (ticket 2) and unlocks. The waiter must be
/// served before the holder's second ticket. Two threads keep the model
/// exhaustive within seconds: spin-waits with a third thread explode loom's
/// state space.
#[test]
fn ticket_hands_off_in_ticket_order() {
    loom_model(|| {
        let shared = Arc::new((
            LoomTickets::with_words(),
            UnsafeCell::new(Vec::new()),
            AtomicU32::new(0),
        ));
        shared.0.lock(&mut ());
        let waiter = {
            let s = shared.clone();
            thread::spawn(move || {
                let ticket = s.0.take_ticket();
                s.2.store(1, Ordering::Release);
                s.0.lock_slow(ticket, &mut ());
                // SAFETY: the ticket lock is held.
                s.1.with_mut(|log| unsafe { (*log).push(ticket) });
                s.0.unlock();
            })
        };
        // A try_lock while held must fail and leave no ticket behind.
        assert!(!shared.0.try_lock());
        while shared.2.load(Ordering::Acquire) == 0 {
            thread::yield_now();
        }
        let mine = shared.0.take_ticket();
        shared.0.unlock();
        shared.0.lock_slow(mine, &mut ());
        // SAFETY: the ticket lock is held.
        shared.1.with_mut(|log| unsafe { (*log).push(mine) });
        shared.0.unlock();
        waiter.join().unwrap();
        // SAFETY: every other thread has been joined.
        let log = shared.1.with(|log| unsafe { (*log).clone() });
        assert_eq!(log, [1, 2], "served out of ticket order");
        assert!(shared.0.try_lock());
    });
}

/// A `try_lock` that succeeds after another thread's unlock must see that
/// thread's critical section: its read of `owner` has to synchronise with
/// the unlock's Release store (loom flags the data race otherwise). The
/// main thread first waits, without synchronising, until the unlock is
/// visible, so the model always reaches that case.
#[test]
fn ticket_try_lock_sees_the_previous_holder() {
    loom_model(|| {
        let shared = Arc::new((LoomTickets::with_words(), UnsafeCell::new(0u32)));
        let holder = {
            let s = shared.clone();
            thread::spawn(move || {
                s.0.lock(&mut ());
                // SAFETY: the ticket lock is held (which is what loom checks).
                s.1.with_mut(|v| unsafe { *v = 1 });
                s.0.unlock();
            })
        };
        while shared.0.owner.load(Ordering::Relaxed) == 0 {
            thread::yield_now();
        }
        assert!(shared.0.try_lock(), "the lock is free");
        // SAFETY: the ticket lock is held.
        assert_eq!(shared.1.with(|v| unsafe { *v }), 1);
        shared.0.unlock();
        holder.join().unwrap();
    });
}
