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

/// A callback that holds its invoker until released (at most `HOLD`), then
/// records that it finished.
#[repr(C)]
struct Slow {
    rcu: RcuHead,
    started: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
}

const HOLD: Duration = Duration::from_millis(500);

unsafe fn slow_cb(head: *mut RcuHead) {
    // SAFETY: `head` is the first field of a boxed `Slow` (repr(C)).
    let slow = unsafe { Box::from_raw(head.cast::<Slow>()) };
    slow.started.store(true, Ordering::SeqCst);
    let until = std::time::Instant::now() + HOLD;
    while !slow.release.load(Ordering::SeqCst) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    slow.done.store(true, Ordering::SeqCst);
}

/// One CPU's tick has detached an old callback and is still running it
/// when `rcu_barrier` starts, while that CPU keeps queueing callbacks that
/// become ready behind it. The barrier may run those newer ones itself,
/// but must not return before the old one has finished.
#[test]
fn barrier_waits_for_a_callback_a_concurrent_invoker_is_running() {
    let flags = || Arc::new(AtomicBool::new(false));
    let (started, release, done, barrier_done) = (flags(), flags(), flags(), flags());
    let ran = Arc::new(AtomicUsize::new(0));
    let (cpu_tx, cpu_rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let slow = Box::into_raw(Box::new(Slow {
                rcu: RcuHead::new(),
                started: started.clone(),
                release: release.clone(),
                done: done.clone(),
            }));
            // SAFETY: a fresh, unqueued head owned by the callback from now on.
            unsafe { call_rcu(&raw mut (*slow).rcu, slow_cb) };
            synchronize_rcu();
            cpu_tx.send(cpu_id()).unwrap();
            // Not before the tick has it: this CPU's own call_rcu may run
            // ready callbacks too.
            while !started.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            // Callbacks queued behind the slow one, each made ready at once.
            while !barrier_done.load(Ordering::SeqCst) {
                defer_free(&ran);
                synchronize_rcu();
            }
        });
        let cpu = cpu_rx.recv().unwrap();
        // That CPU's tick (run here: any CPU may invoke any list).
        s.spawn(move || {
            platform::host::run_as_interrupt(|| RCU.invoke_ready(cpu, TICK_BATCH));
        });
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        rcu_barrier();
        let finished = done.load(Ordering::SeqCst);
        barrier_done.store(true, Ordering::SeqCst);
        release.store(true, Ordering::SeqCst);
        assert!(
            finished,
            "rcu_barrier returned while a callback queued before it was still running"
        );
    });
    rcu_barrier();
}
