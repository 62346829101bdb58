//! loom models of the queued spinlock ([`QSpin`] over loom's atomics, its
//! queue nodes per model thread): mutual exclusion through the pending bit
//! and through the MCS queue (loom's `UnsafeCell` flags any overlap), and
//! a wait nested on a second node (an interrupt on a queued CPU). A waiter
//! never woken would spin until loom gives up, which fails the model. Run
//! by `make test-loom`.

use super::{CpuQNodes, QSpin};
use crate::sync::loom_model;
use crate::sync::raw::SpinWait;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::AtomicU32;
use loom::thread;

type LoomQSpin = QSpin<AtomicU32>;

/// A lock, a counter it guards, and each model thread's queue nodes.
struct Shared {
    lock: LoomQSpin,
    count: UnsafeCell<u32>,
    nodes: Vec<CpuQNodes<AtomicU32>>,
}

fn new_shared(cpus: usize) -> Arc<Shared> {
    Arc::new(Shared {
        lock: LoomQSpin::with_words(),
        count: UnsafeCell::new(0),
        nodes: (0..cpus).map(|_| CpuQNodes::with_words()).collect(),
    })
}

fn lock(s: &Shared, cpu: usize) {
    if let Err(val) = s.lock.lock_fast() {
        s.lock.lock_slow_on(val, &s.nodes, cpu, &mut ());
    }
}

fn bump(s: &Shared, cpu: usize) {
    lock(s, cpu);
    // SAFETY: the lock is held (which is what loom checks).
    s.count.with_mut(|v| unsafe { *v += 1 });
    s.lock.unlock();
}

fn count(s: &Shared) -> u32 {
    // SAFETY: every other thread has been joined.
    s.count.with(|v| unsafe { *v })
}

/// Two CPUs: the fast path and the pending-bit path.
#[test]
fn qspinlock_two_cpus_exclude_each_other() {
    loom_model(|| {
        let s = new_shared(2);
        let other = {
            let s = s.clone();
            thread::spawn(move || bump(&s, 1))
        };
        bump(&s, 0);
        other.join().unwrap();
        assert_eq!(count(&s), 2);
        assert!(!s.lock.is_locked());
    });
}

/// The MCS queue with two threads: CPU 1 queues (its node is head and
/// tail) while CPU 0 holds the lock; CPU 0 unlocks and queues again at
/// once, behind CPU 1 or after it has taken the lock. Either way each gets
/// in once, the queue head is handed on, and the word ends clean (no tail
/// left behind). (The pending waiter plus two queued ones take a third
/// thread, which makes the model too large to finish.)
#[test]
fn qspinlock_queue_hands_off() {
    loom_model(|| {
        let s = new_shared(2);
        lock(&s, 0);
        let queued = {
            let s = s.clone();
            thread::spawn(move || {
                s.lock.queue(&s.nodes, 1, &mut ());
                // SAFETY: the lock is held.
                s.count.with_mut(|v| unsafe { *v += 1 });
                s.lock.unlock();
            })
        };
        s.lock.unlock();
        s.lock.queue(&s.nodes, 0, &mut ());
        // SAFETY: the lock is held.
        s.count.with_mut(|v| unsafe { *v += 1 });
        s.lock.unlock();
        queued.join().unwrap();
        assert_eq!(count(&s), 2);
        assert!(!s.lock.is_locked(), "tail or pending left in the word");
    });
}

/// An interrupt: runs once, at the first spin round of the wait it hits.
struct Interrupt<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> SpinWait for Interrupt<F> {
    fn round(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }

    fn woke(&mut self) {}
}

/// CPU 1 queues on lock A (its node 0) while CPU 0 holds A; an interrupt
/// on CPU 1 then waits for lock B, also held by CPU 0, on its node 1. Both
/// waits end, each lock admits one holder at a time, and CPU 1's node
/// count is back to 0.
#[test]
fn qspinlock_nested_wait_uses_the_next_node() {
    loom_model(|| {
        let a = new_shared(2);
        let b = Arc::new((LoomQSpin::with_words(), UnsafeCell::new(0u32)));
        lock(&a, 0);
        b.0.lock_fast().unwrap();
        let waiter = {
            let (a, b) = (a.clone(), b.clone());
            thread::spawn(move || {
                let nested = || {
                    b.0.queue(&a.nodes, 1, &mut ());
                    // SAFETY: lock B is held.
                    b.1.with_mut(|v| unsafe { *v += 1 });
                    b.0.unlock();
                };
                a.lock.queue(&a.nodes, 1, &mut Interrupt(Some(nested)));
                // SAFETY: lock A is held.
                a.count.with_mut(|v| unsafe { *v += 1 });
                a.lock.unlock();
            })
        };
        // SAFETY: lock B is held.
        b.1.with_mut(|v| unsafe { *v += 1 });
        b.0.unlock();
        a.lock.unlock();
        waiter.join().unwrap();
        assert_eq!(count(&a), 1);
        // SAFETY: every other thread has been joined.
        assert!(b.1.with(|v| unsafe { *v }) >= 1);
        assert!(!a.lock.is_locked() && !b.0.is_locked());
        assert_eq!(
            a.nodes[1].count.load(core::sync::atomic::Ordering::Relaxed),
            0
        );
    });
}
