//! Host tests of the qrwlock: exclusion under std threads, writer
//! preference over task readers, interrupt readers getting past a waiting
//! writer, the IRQ discipline, the debug checks and the statistics.

use super::*;
use crate::platform::{host, irqs_enabled};
use crate::sync::debug::WaitBoundOverride;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Barrier, Mutex, mpsc};
use std::time::Duration;

/// Spins (yielding) until `cond` holds.
fn wait_until(cond: impl Fn() -> bool) {
    while !cond() {
        std::thread::yield_now();
    }
}

#[test]
fn writers_exclude_everyone_and_counts_are_exact() {
    let lock = named_rwlock_irq("test_rw_exact", (0u64, 0u64));
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..5_000 {
                    let mut g = lock.write();
                    assert!(!irqs_enabled());
                    g.0 += 1;
                    g.1 += 1;
                }
            });
        }
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..5_000 {
                    let g = lock.read();
                    assert_eq!(g.0, g.1, "a reader saw a half-done write");
                }
            });
        }
    });
    assert_eq!(*lock.read(), (15_000, 15_000));
    assert!(irqs_enabled());
}

#[test]
fn readers_share_the_lock() {
    let lock = named_rwlock_irq("test_rw_share", ());
    let both_in = Barrier::new(2);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let _g = lock.read();
                // Both readers must be inside at once to pass.
                both_in.wait();
            });
        }
    });
}

#[test]
fn write_lock_irq_disables_irqs_and_read_lock_does_not() {
    let lock = named_rwlock_irq("test_rw_irq", 0);
    {
        let _g = lock.read();
        assert!(irqs_enabled());
    }
    {
        let _g = lock.write();
        assert!(!irqs_enabled());
        assert!(lock.try_read().is_none());
        assert!(lock.is_locked_exclusive());
    }
    assert!(irqs_enabled());
    let r = lock.try_read().unwrap();
    assert!(lock.try_write().is_none());
    assert!(irqs_enabled(), "a failed try_write restores IRQs");
    drop(r);
    assert!(lock.try_write().is_some());
    assert!(irqs_enabled());
    assert!(!lock.is_locked());
}

/// A waiting writer holds back a new task-context reader: the writer gets
/// the lock before it.
#[test]
fn waiting_writer_holds_back_new_task_readers() {
    let lock = named_rwlock_irq("test_rw_fair", ());
    let order = Mutex::new(Vec::new());
    let first = lock.read();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _g = lock.write();
            order.lock().unwrap().push("writer");
        });
        // SAFETY: only reads the lock word.
        let raw = unsafe { lock.raw() };
        wait_until(|| raw.writer_waiting());
        s.spawn(|| {
            let _g = lock.read();
            order.lock().unwrap().push("reader");
        });
        // The new reader is turned away while the writer waits.
        std::thread::sleep(Duration::from_millis(30));
        assert!(order.lock().unwrap().is_empty());
        assert!(raw.writer_waiting());
        drop(first);
    });
    assert_eq!(*order.lock().unwrap(), ["writer", "reader"]);
}

/// `read_trylock` fails while a writer waits (it would otherwise starve the
/// writer like a task `read_lock` past it), and works again afterwards.
#[test]
fn read_trylock_does_not_pass_a_waiting_writer() {
    let lock = named_rwlock_irq("test_rw_tryread", 0);
    let first = lock.read();
    assert!(lock.try_read().is_some(), "readers share the lock");
    std::thread::scope(|s| {
        let writer = s.spawn(|| *lock.write() += 1);
        // SAFETY: only reads the lock word.
        let raw = unsafe { lock.raw() };
        wait_until(|| raw.writer_waiting());
        assert!(
            lock.try_read().is_none(),
            "read_trylock passed a waiting writer"
        );
        assert!(raw.writer_waiting());
        drop(first);
        writer.join().unwrap();
    });
    assert_eq!(lock.try_read().map(|g| *g), Some(1));
}

/// A failed unlock-time check (IRQs found on in a write hold) panics only
/// after the lock is released and IRQs restored.
#[test]
fn failed_write_unlock_check_releases_first() {
    let lock = named_rwlock_irq("test_rw_release_first", ());
    let err = catch_unwind(AssertUnwindSafe(|| {
        let _g = lock.write();
        platform::local_irq_enable();
    }))
    .unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("IRQ-safe lock held with IRQs enabled"),
        "{msg}"
    );
    assert!(!lock.is_locked() && irqs_enabled());
    drop(lock.write());
}

/// A reader in interrupt context gets in while a writer merely waits, both
/// on the CPU that holds a read lock (the interrupt hit a reader) and on
/// another CPU; waiting behind the writer would deadlock.
#[test]
fn interrupt_reader_passes_a_waiting_writer() {
    let lock = named_rwlock_irq("test_rw_irq_reader", 7);
    let task_reader = lock.read();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            *lock.write() += 1;
        });
        // SAFETY: only reads the lock word.
        let raw = unsafe { lock.raw() };
        wait_until(|| raw.writer_waiting());
        let seen = host::run_as_interrupt(|| *lock.read());
        assert_eq!(seen, 7);
        let elsewhere = s.spawn(|| host::run_as_interrupt(|| *lock.read()));
        assert_eq!(elsewhere.join().unwrap(), 7);
        assert!(raw.writer_waiting(), "the writer is still waiting");
        drop(task_reader);
        writer.join().unwrap();
    });
    assert_eq!(*lock.read(), 8);
}

/// An interrupt reader still waits for a writer that holds the lock.
#[test]
fn interrupt_reader_waits_for_a_holding_writer() {
    let lock = named_rwlock_irq("test_rw_irq_wait", 0);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let lock = &lock;
        let mut g = lock.write();
        let reader = s.spawn(move || {
            tx.send(()).unwrap();
            host::run_as_interrupt(|| *lock.read())
        });
        rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!reader.is_finished());
        *g = 5;
        drop(g);
        assert_eq!(reader.join().unwrap(), 5);
    });
}

#[test]
#[should_panic(expected = "lock test_rw_rewrite: recursive locking: cpu")]
fn write_after_write_panics_with_name() {
    let lock = named_rwlock_irq("test_rw_rewrite", ());
    let _g = lock.write();
    let _h = lock.write();
}

#[test]
#[should_panic(expected = "lock test_rw_reread: recursive locking: cpu")]
fn read_after_write_panics_with_name() {
    let lock = named_rwlock_irq("test_rw_reread", ());
    let _g = lock.write();
    let _h = lock.read();
}

#[test]
#[should_panic(expected = "lock test_rw_irqs_on: IRQ-safe lock held with IRQs enabled")]
fn write_held_with_irqs_on_panics_at_unlock() {
    let lock = named_rwlock_irq("test_rw_irqs_on", ());
    let _g = lock.write();
    platform::local_irq_enable();
}

#[test]
#[should_panic(expected = "lock test_rw_irqs_off: _irq lock taken with IRQs already off")]
fn write_lock_irq_with_irqs_off_panics() {
    let lock = named_rwlock_irq("test_rw_irqs_off", ());
    let _flags = platform::local_irq_save();
    let _g = lock.write();
}

/// A reader stuck behind a writer panics naming the writer's CPU; a writer
/// stuck behind readers says so.
#[test]
fn stuck_waits_name_the_holder() {
    let _bound = WaitBoundOverride::new("test_rw_stuck", 300);
    let _readers_bound = WaitBoundOverride::new("test_rw_stuck_readers", 300);
    let lock = named_rwlock_irq("test_rw_stuck", ());
    let (tx, rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let lock = &lock;
        s.spawn(move || {
            let _g = lock.write();
            tx.send(platform::cpu_id()).unwrap();
            release_rx.recv().unwrap();
        });
        let writer = rx.recv().unwrap();
        let err = catch_unwind(AssertUnwindSafe(|| drop(lock.read()))).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.starts_with("lock test_rw_stuck: cpu "), "{msg}");
        assert!(msg.ends_with(&format!("held by cpu {writer}")), "{msg}");
        release_tx.send(()).unwrap();
    });

    let lock = named_rwlock_irq("test_rw_stuck_readers", ());
    let _reader = lock.read();
    let msg = std::thread::scope(|s| {
        s.spawn(|| {
            let err = catch_unwind(AssertUnwindSafe(|| drop(lock.write()))).unwrap_err();
            err.downcast_ref::<String>().unwrap().clone()
        })
        .join()
        .unwrap()
    });
    assert!(msg.starts_with("lock test_rw_stuck_readers: cpu "), "{msg}");
    assert!(msg.ends_with("held by 1 reader(s)"), "{msg}");
}

#[test]
fn lockstat_counts_reads_and_writes_apart() {
    let _serial = lockstat::test_serial();
    let lock = named_rwlock_irq("test_stat_rw", 0u64);
    let was = lockstat::set_enabled(true);
    for _ in 0..4 {
        drop(lock.read());
    }
    for _ in 0..3 {
        *lock.write() += 1;
    }
    // One contended read: a reader waits ~20 ms for a writer (counted from
    // when it is seen trying, so a slow thread start cannot make it an
    // uncontended read).
    std::thread::scope(|s| {
        let g = lock.write();
        let reader = s.spawn(|| drop(lock.read()));
        // SAFETY: only reads the lock word.
        let raw = unsafe { lock.raw() };
        wait_until(|| raw.qrw.readers() == 1);
        std::thread::sleep(Duration::from_millis(20));
        drop(g);
        reader.join().unwrap();
    });
    lockstat::set_enabled(was);
    let stats = lockstat::read("test_stat_rw").unwrap();
    assert_eq!(stats.shared.acquisitions, 5, "{stats:?}");
    assert_eq!(stats.shared.contended, 1, "{stats:?}");
    assert!(stats.shared.wait_cycles_max >= 5_000_000, "{stats:?}");
    assert_eq!(stats.exclusive.acquisitions, 4, "{stats:?}");
    assert_eq!(stats.exclusive.contended, 0, "{stats:?}");
    assert!(stats.exclusive.hold_cycles_max >= 10_000_000, "{stats:?}");
    assert_eq!(stats.acquisitions(), 9);
}
