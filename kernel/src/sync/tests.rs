//! Host tests every algorithm must pass, each in its own lock type (the
//! kernel's dispatched lock runs the same code): exact counts under std
//! threads with IRQ-disabled takers, `try_lock`, FIFO order for the FIFO
//! algorithms, waits in interrupt context, and the watchdog naming the
//! holder of a lock waited on too long.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use super::debug::WaitBoundOverride;
use super::irq::{IrqLock, IrqSave, Plain};
use super::pvticket::PvTickets;
use super::qspinlock::QSpin;
use super::raw::{ConstInit, RawSpinLock, SpinProtocol};
use super::tas::Tas;
use super::ticket::Tickets;
use crate::platform::{self, host};

type Lock<P, D> = lock_api::Mutex<IrqLock<RawSpinLock<P>, D>, u64>;

fn new_lock<P: SpinProtocol + ConstInit, D: super::irq::IrqDiscipline>(
    name: &'static str,
) -> Lock<P, D> {
    lock_api::Mutex::from_raw(IrqLock::new(RawSpinLock::named(name)), 0)
}

/// 4 threads x 20,000 increments, half with IRQs on, half irqsave.
fn counts_are_exact<P: SpinProtocol + ConstInit + Send + 'static>() {
    let plain = Arc::new(new_lock::<P, Plain>("test_exact"));
    let irqsave = Arc::new(new_lock::<P, IrqSave>("test_exact_irqsave"));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (a, b) = (plain.clone(), irqsave.clone());
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    *a.lock() += 1;
                    let mut g = b.lock();
                    assert!(!platform::irqs_enabled());
                    *g += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!((*plain.lock(), *irqsave.lock()), (40_000, 40_000));
    assert!(!plain.is_locked() && !irqsave.is_locked());
}

fn try_lock_fails_while_held<P: SpinProtocol + ConstInit>() {
    let lock = new_lock::<P, Plain>("test_try");
    let g = lock.lock();
    assert!(lock.try_lock().is_none());
    drop(g);
    assert!(lock.try_lock().is_some());
    assert!(!lock.is_locked());
}

/// Waiters that arrive one after another are served in that order;
/// `arrived` tells from the lock's words that one more has queued.
fn waiters_are_served_in_order<P: SpinProtocol + ConstInit>(state: impl Fn(&P) -> u32) {
    const WAITERS: u32 = 4;
    let lock = new_lock::<P, Plain>("test_fifo");
    let order = std::sync::Mutex::new(Vec::new());
    // SAFETY: only reads the protocol's words.
    let words = || state(unsafe { lock.raw() }.inner().protocol());
    let held = lock.lock();
    std::thread::scope(|s| {
        for k in 0..WAITERS {
            let before = words();
            let (lock, order) = (&lock, &order);
            s.spawn(move || {
                let _g = lock.lock();
                order.lock().unwrap().push(k);
            });
            while words() == before {
                std::thread::yield_now();
            }
        }
        drop(held);
    });
    assert_eq!(*order.lock().unwrap(), (0..WAITERS).collect::<Vec<_>>());
}

/// A wait in interrupt context (IRQs off), then one in task context, on
/// one CPU, each for a lock another CPU holds: both end, counts exact.
/// (A wait nested inside another is modelled with loom.)
fn waits_in_interrupt_and_task_context<P: SpinProtocol + ConstInit>() {
    let (a, b) = (
        new_lock::<P, Plain>("test_task_ctx"),
        new_lock::<P, IrqSave>("test_irq_ctx"),
    );
    let (a, b) = (&a, &b);
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let ga = a.lock();
            let gb = b.lock();
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            drop(gb);
            drop(ga);
        });
        held_rx.recv().unwrap();
        let waiter = s.spawn(move || {
            // An interrupt that waits for B, then the task that waits for A.
            host::run_as_interrupt(|| *b.lock() += 1);
            *a.lock() += 1;
        });
        std::thread::sleep(std::time::Duration::from_millis(10));
        go_tx.send(()).unwrap();
        waiter.join().unwrap();
    });
    assert_eq!((*a.lock(), *b.lock()), (1, 1));
}

/// Holds `lock` (called `name`) on another thread and takes it here with
/// the watchdog's bound for `name` at `bound_ms`: the wait must panic
/// naming the lock, the bound and the holder's CPU.
pub(super) fn assert_stuck_wait_names_the_holder<R, T>(
    lock: &lock_api::Mutex<R, T>,
    name: &'static str,
    bound_ms: u64,
) where
    R: lock_api::RawMutex + Sync,
    T: Send,
{
    let _bound = WaitBoundOverride::new(name, bound_ms);
    let (tx, rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _g = lock.lock();
            tx.send(platform::cpu_id()).unwrap();
            release_rx.recv().unwrap();
        });
        let owner = rx.recv().unwrap();
        let err = catch_unwind(AssertUnwindSafe(|| drop(lock.lock()))).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.starts_with(&format!("lock {name}: cpu ")), "{msg}");
        assert!(
            msg.contains(&format!("waited more than {bound_ms} ms")),
            "{msg}"
        );
        assert!(msg.ends_with(&format!("held by cpu {owner}")), "{msg}");
        release_tx.send(()).unwrap();
    });
}

/// The watchdog covers the algorithm's wait (including a halt).
fn stuck_wait_names_the_holder<P: SpinProtocol + ConstInit>(name: &'static str) {
    assert_stuck_wait_names_the_holder(&new_lock::<P, Plain>(name), name, 200);
}

macro_rules! algorithm_tests {
    ($module:ident, $proto:ty, $stuck:literal) => {
        mod $module {
            use super::*;

            #[test]
            fn counts_are_exact() {
                super::counts_are_exact::<$proto>();
            }

            #[test]
            fn try_lock_fails_while_held() {
                super::try_lock_fails_while_held::<$proto>();
            }

            #[test]
            fn waits_in_interrupt_and_task_context() {
                super::waits_in_interrupt_and_task_context::<$proto>();
            }

            #[test]
            fn stuck_wait_names_the_holder() {
                super::stuck_wait_names_the_holder::<$proto>($stuck);
            }
        }
    };
}

algorithm_tests!(ticket, Tickets, "test_stuck_ticket");
algorithm_tests!(pv_ticket, PvTickets, "test_stuck_pv_ticket");
algorithm_tests!(qspinlock, QSpin, "test_stuck_qspinlock");
algorithm_tests!(tas, Tas, "test_stuck_tas");

#[test]
fn ticket_serves_in_order() {
    waiters_are_served_in_order::<Tickets>(|t| t.next.load(Ordering::Relaxed));
}

#[test]
fn pv_ticket_serves_in_order() {
    // A waiter that halts sets the slow-path flag in `next`; only a new
    // ticket means one more waiter has queued.
    waiters_are_served_in_order::<PvTickets>(|t| {
        t.next.load(Ordering::Relaxed) & !super::pvticket::SLOWPATH
    });
}

#[test]
fn qspinlock_serves_in_order() {
    waiters_are_served_in_order::<QSpin>(|q| q.val.load(Ordering::Relaxed) & !0xff);
}
