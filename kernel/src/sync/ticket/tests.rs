//! Host tests of the ticket lock and of what every kernel spinlock shares
//! (the kernel's lock is a ticket lock on the host unless a test says
//! otherwise): exactness, the FIFO bypass bound, the IRQ disciplines, the
//! debug checks and lock statistics. Every algorithm's own tests are in
//! `sync/tests.rs`.

use super::*;
use crate::platform::{self, irqs_enabled};
use crate::sync::debug::WaitBoundOverride;
use crate::sync::irq::{IrqLock, Plain};
use crate::sync::lockstat;
use crate::sync::{named_spin_lock, named_spin_lock_irq, named_spin_lock_irqsave};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Barrier, mpsc};

#[test]
fn counter_is_exact_under_contention() {
    let lock = Arc::new(named_spin_lock("test", 0u64));
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
fn irq_variants_are_exact_under_contention() {
    let a = Arc::new(named_spin_lock_irq("test_irq", 0u64));
    let b = Arc::new(named_spin_lock_irqsave("test_irqsave", 0u64));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (a, b) = (a.clone(), b.clone());
            std::thread::spawn(move || {
                for _ in 0..5_000 {
                    *a.lock() += 1;
                    let mut g = b.lock();
                    assert!(!irqs_enabled());
                    *g += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!((*a.lock(), *b.lock()), (20_000, 20_000));
}

#[test]
fn try_lock_fails_while_held() {
    let lock = named_spin_lock("test", ());
    let g = lock.lock();
    assert!(lock.try_lock().is_none());
    drop(g);
    assert!(lock.try_lock().is_some());
    assert!(!lock.is_locked());
}

#[test]
fn failed_irq_try_lock_restores_irqs() {
    let lock = named_spin_lock_irq("test_irq_try", ());
    let held = std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let lock = &lock;
        s.spawn(move || {
            let _g = lock.lock();
            tx.send(()).unwrap();
            done_rx.recv().unwrap();
        });
        rx.recv().unwrap();
        let held = lock.try_lock().is_some();
        done_tx.send(()).unwrap();
        held
    });
    assert!(!held);
    assert!(irqs_enabled());
}

#[test]
fn irq_disciplines() {
    let a = named_spin_lock_irq("irq", 1);
    {
        let _g = a.lock();
        assert!(!irqs_enabled());
    }
    assert!(irqs_enabled());
    let b = named_spin_lock_irqsave("irqsave", 2);
    let outer = platform::local_irq_save();
    {
        let _g = b.lock();
        assert!(!irqs_enabled());
    }
    assert!(!irqs_enabled(), "irqsave restores the saved (off) state");
    platform::local_irq_restore(outer);
    assert!(irqs_enabled());
}

/// The FIFO fairness bound: once a CPU holds a ticket, at most one
/// acquisition per other CPU gets in before it, and acquisitions happen in
/// exact ticket order.
#[test]
fn bypass_is_bounded_by_other_cpus() {
    const CPUS: u64 = 4;
    const ROUNDS: u64 = 5_000;
    let tickets = Tickets::UNLOCKED;
    let done = AtomicU64::new(0);
    let worst = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..CPUS {
            s.spawn(|| {
                for _ in 0..ROUNDS {
                    let ticket = tickets.take_ticket();
                    let before = done.load(Ordering::SeqCst);
                    tickets.lock_slow(ticket, &mut ());
                    let now = done.load(Ordering::Relaxed);
                    assert_eq!(now, u64::from(ticket), "served out of ticket order");
                    worst.fetch_max(now - before, Ordering::Relaxed);
                    done.store(now + 1, Ordering::Relaxed);
                    tickets.unlock();
                }
            });
        }
    });
    assert_eq!(done.load(Ordering::Relaxed), CPUS * ROUNDS);
    let worst = worst.load(Ordering::Relaxed);
    assert!(worst < CPUS, "a waiter was bypassed {worst} times");
}

#[test]
#[should_panic(expected = "lock test_recursive: recursive locking: cpu")]
fn recursive_lock_panics_with_name() {
    let lock = named_spin_lock("test_recursive", ());
    let _g = lock.lock();
    let _h = lock.lock();
}

#[test]
#[should_panic(expected = "lock test_recursive_irq_lock: recursive locking")]
fn recursive_irq_lock_panics_as_recursion() {
    let lock = named_spin_lock_irq("test_recursive_irq_lock", ());
    let _g = lock.lock();
    let _h = lock.lock();
}

#[test]
#[should_panic(expected = "lock test_recursive_irq: recursive locking")]
fn lock_taken_by_interrupt_on_holding_cpu_panics() {
    let lock = named_spin_lock_irqsave("test_recursive_irq", ());
    let _g = lock.lock();
    platform::host::run_as_interrupt(|| drop(lock.lock()));
}

/// A wait past the bound panics naming the lock and the holder's CPU.
#[test]
fn stuck_wait_panics_naming_lock_and_owner() {
    let lock = named_spin_lock("test_stuck", ());
    crate::sync::tests::assert_stuck_wait_names_the_holder(&lock, "test_stuck", 300);
}

#[test]
#[should_panic(expected = "lock test_irq_on: IRQ-safe lock held with IRQs enabled")]
fn irq_lock_held_with_irqs_on_panics_at_unlock() {
    let lock = named_spin_lock_irq("test_irq_on", ());
    let _g = lock.lock();
    platform::local_irq_enable();
}

#[test]
#[should_panic(expected = "lock test_irqsave_on: IRQ-safe lock held with IRQs enabled")]
fn irqsave_lock_held_with_irqs_on_panics_at_unlock() {
    let lock = named_spin_lock_irqsave("test_irqsave_on", ());
    let _g = lock.lock();
    platform::local_irq_enable();
}

#[test]
#[should_panic(expected = "lock test_irq_off: _irq lock taken with IRQs already off")]
fn irq_lock_taken_with_irqs_off_panics() {
    let lock = named_spin_lock_irq("test_irq_off", ());
    platform::local_irq_disable();
    let _g = lock.lock();
}

/// Statistics count acquisitions, contention, waits and holds by name, and
/// nothing while switched off.
#[test]
fn lockstat_counts_ticket_lock() {
    let _serial = lockstat::test_serial();
    let lock: lock_api::Mutex<IrqLock<RawSpinLock<Tickets>, Plain>, u64> =
        lock_api::Mutex::from_raw(IrqLock::new(RawSpinLock::named("test_stat_ticket")), 0);
    let was = lockstat::set_enabled(false);
    drop(lock.lock());
    lockstat::set_enabled(true);
    for _ in 0..10 {
        *lock.lock() += 1;
    }
    assert!(lock.try_lock().is_some());
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let g = lock.lock();
        s.spawn(|| {
            barrier.wait();
            *lock.lock() += 1;
        });
        barrier.wait();
        // SAFETY: only reads the ticket counters; the lock is not touched.
        let tickets = unsafe { lock.raw().inner().protocol() };
        // Hold on until the other thread has queued behind us.
        while tickets.next.load(Ordering::Relaxed) != tickets.owner.load(Ordering::Relaxed) + 2 {
            std::thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(g);
    });
    lockstat::set_enabled(false);
    drop(lock.lock());
    lockstat::set_enabled(was);
    let stats = lockstat::read("test_stat_ticket").unwrap();
    let c = stats.exclusive;
    assert_eq!(c.acquisitions, 13, "{c:?}");
    assert_eq!(c.contended, 1, "{c:?}");
    assert!(c.wait_cycles_max >= 10_000_000, "waited ~20 ms: {c:?}");
    assert_eq!(c.wait_cycles_total, c.wait_cycles_max);
    assert!(c.hold_cycles_max >= 10_000_000, "held ~20 ms: {c:?}");
    assert!(c.hold_cycles_total >= c.hold_cycles_max);
    assert_eq!(stats.shared, lockstat::LockCounters::default());
    lockstat::print_table();
    lockstat::reset();
    let zeroed = lockstat::read("test_stat_ticket").unwrap();
    assert_eq!(zeroed.exclusive, lockstat::LockCounters::default());
}
