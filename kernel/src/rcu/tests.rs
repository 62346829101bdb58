//! Host tests of the grace-period machinery (std threads as CPUs).

use super::*;
use std::boxed::Box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc;
use std::time::Duration;

/// A heap object freed through `call_rcu`, counting its callback.
#[repr(C)]
struct Obj {
    rcu: RcuHead,
    ran: Arc<AtomicUsize>,
}

unsafe fn free_obj(head: *mut RcuHead) {
    // SAFETY: `head` is the first field of a boxed `Obj` (repr(C)).
    let obj = unsafe { Box::from_raw(head.cast::<Obj>()) };
    obj.ran.fetch_add(1, Ordering::SeqCst);
}

fn defer_free(ran: &Arc<AtomicUsize>) {
    let obj = Box::into_raw(Box::new(Obj {
        rcu: RcuHead::new(),
        ran: ran.clone(),
    }));
    // SAFETY: a fresh, unqueued head owned by the callback from now on.
    unsafe { call_rcu(&raw mut (*obj).rcu, free_obj) };
}

#[test]
fn barrier_runs_every_callback_queued_before_it() {
    let ran = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..500 {
                    defer_free(&ran);
                }
            });
        }
    });
    rcu_barrier();
    assert_eq!(ran.load(Ordering::SeqCst), 2000);
}

#[test]
fn synchronize_waits_for_a_reader_that_began_before_it() {
    let (began_tx, began_rx) = mpsc::channel();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let reader = std::thread::spawn(move || {
        let g = rcu_read_lock();
        began_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        d.store(true, Ordering::SeqCst);
        drop(g);
    });
    began_rx.recv().unwrap();
    synchronize_rcu();
    assert!(
        done.load(Ordering::SeqCst),
        "synchronize_rcu returned while a reader that began before it still ran"
    );
    reader.join().unwrap();
}

#[test]
fn a_callback_waits_for_readers_and_nesting_counts() {
    let ran = Arc::new(AtomicUsize::new(0));
    let (began_tx, began_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let outer = rcu_read_lock();
        let inner = rcu_read_lock();
        drop(inner);
        assert!(rcu_read_lock_held(), "the outer section is still open");
        began_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        drop(outer);
        assert!(!rcu_read_lock_held());
    });
    began_rx.recv().unwrap();
    defer_free(&ran);
    let r = ran.clone();
    let barrier = std::thread::spawn(move || {
        rcu_barrier();
        r.load(Ordering::SeqCst)
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ran.load(Ordering::SeqCst), 0, "callback ran under a reader");
    release_tx.send(()).unwrap();
    assert_eq!(barrier.join().unwrap(), 1);
    reader.join().unwrap();
}

#[test]
#[should_panic(expected = "inside rcu_read_lock()")]
fn waiting_for_a_grace_period_inside_a_reader_is_caught() {
    let _g = rcu_read_lock();
    synchronize_rcu();
}
