//! loom models of the RCU machine ([`super::tree`] over loom's atomics and
//! mutexes, `loom_env`), two CPUs each: a reader against a grace period, a
//! callback queued as a grace period starts, a waiter's look at a reader
//! racing the next grace period, `rcu_barrier` against a concurrent
//! invoker, and an idle CPU's extended quiescent state against a grace
//! period. Each says which mistake it catches. Run by `make test-loom`.

use core::sync::atomic::Ordering;
use loom::sync::Arc;
use loom::sync::atomic::AtomicPtr;
use loom::thread;

use super::env::RcuEnv;
use super::loom_env::{CPUS, LoomEnv, LoomRcu, LoomTickEnv, Obj};
use super::tree::Rcu;
use crate::sync::loom_model;

/// A published object and the RCU state it is protected by.
fn published() -> (Arc<LoomRcu>, *mut Obj, Arc<AtomicPtr<Obj>>) {
    let obj = Obj::new();
    (
        Arc::new(LoomEnv::new_rcu()),
        obj,
        Arc::new(AtomicPtr::new(obj)),
    )
}

/// One read-side section on `cpu` that uses what `slot` points at.
fn read<E: RcuEnv>(rcu: &Rcu<E, CPUS>, cpu: usize, slot: &AtomicPtr<Obj>) {
    rcu.read_lock(cpu);
    let p = slot.load(Ordering::Acquire);
    // SAFETY: read in a read-side section: a live object or null.
    if let Some(obj) = unsafe { p.as_ref() } {
        obj.touch();
    }
    rcu.read_unlock(cpu);
}

/// `synchronize_rcu` must wait for a reader that may have seen the object,
/// even when it arrives while a GP is already running and the reader's CPU
/// has reported for that one: it needs the next GP. Catches a waiter that
/// settles for the running GP (`gp_needed_now` without its `+ 1`), and a
/// waiter that clears a CPU without looking at its nesting count.
#[test]
fn synchronize_waits_for_a_reader_that_may_have_seen_the_object() {
    loom_model(|| {
        let (rcu, obj, slot) = published();
        rcu.gp_needed_now();
        rcu.start_gp_if_needed();
        let reader = {
            let (rcu, slot) = (rcu.clone(), slot.clone());
            thread::spawn(move || {
                rcu.quiescent_state(1);
                read(&rcu, 1, &slot);
            })
        };
        let old = slot.swap(core::ptr::null_mut(), Ordering::AcqRel);
        rcu.synchronize(0, &mut ());
        // SAFETY: `old` is the object, unpublished, and a GP has passed.
        unsafe { (*old).free() };
        reader.join().unwrap();
        // SAFETY: every thread has ended.
        unsafe { Obj::destroy(obj) };
    });
}

/// CPU 1 starts a GP (its `synchronize_rcu`) while CPU 0, having just
/// reported a quiescent state, reads the object in a section, unpublishes
/// it and queues its callback. The callback must wait for a GP that CPU 0
/// has not reported yet, however the start and the queueing interleave,
/// even when CPU 1 then runs CPU 0's ready callbacks (as `rcu_barrier`
/// may). Catches a GP that asks the CPUs (`pending`) before it numbers
/// itself (`started`): a CPU can report for it, and a callback can see the
/// old number, in between.
#[test]
fn a_callback_queued_as_a_gp_starts_waits_for_a_later_one() {
    loom_model(|| {
        let (rcu, obj, slot) = published();
        rcu.gp_needed_now();
        let starter = {
            let rcu = rcu.clone();
            thread::spawn(move || {
                rcu.synchronize(1, &mut ());
                rcu.invoke_ready(0, u64::MAX);
            })
        };
        rcu.quiescent_state(0);
        rcu.read_lock(0);
        let p = slot.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: unpublished just now, queued once.
        unsafe { Obj::call_rcu(p, &rcu, 0) };
        // SAFETY: this section began before the unpublish.
        unsafe { (*p).touch() };
        rcu.read_unlock(0);
        starter.join().unwrap();
        rcu.barrier(0, &mut ());
        // SAFETY: the barrier ran the callback; every thread has ended.
        unsafe {
            assert!((*obj).is_freed());
            Obj::destroy(obj);
        }
    });
}

/// A GP is running. CPU 1 passes a context switch, looks at CPU 0 (one
/// round of a waiter's loop) and passes another; CPU 0 passes a quiescent
/// state, then in one section reads the object, unpublishes it, queues its
/// callback and takes a tick (which runs ready callbacks) before using the
/// object. A look that saw CPU 0 outside a section during one GP must not
/// clear CPU 0's bit in the next, which started after CPU 0 entered this
/// section. Catches `force_quiescent_states` checking and clearing outside
/// the GP lock, against whatever GP is running then. (CPU 1 calls it
/// directly: a waiter's loop yields to loom's scheduler each round, after
/// which loom runs the other CPU first.)
#[test]
fn a_waiters_look_at_a_reader_counts_for_its_own_gp_only() {
    loom_model(|| {
        let (rcu, obj, slot) = published();
        rcu.gp_needed_now();
        rcu.start_gp_if_needed();
        let waiter = {
            let rcu = rcu.clone();
            thread::spawn(move || {
                rcu.quiescent_state(1);
                rcu.force_quiescent_states();
                rcu.quiescent_state(1);
            })
        };
        rcu.quiescent_state(0);
        rcu.read_lock(0);
        let p = slot.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: unpublished just now, queued once.
        unsafe { Obj::call_rcu(p, &rcu, 0) };
        rcu.tick(0, u64::MAX);
        // SAFETY: this section began before the unpublish.
        unsafe { (*p).touch() };
        rcu.read_unlock(0);
        waiter.join().unwrap();
        rcu.barrier(0, &mut ());
        // SAFETY: the barrier ran the callback; every thread has ended.
        unsafe {
            assert!((*obj).is_freed());
            Obj::destroy(obj);
        }
    });
}

/// CPU 0's tick detaches its oldest ready callback and runs it; that
/// callback queues another on CPU 0 and takes a while. Meanwhile CPU 1's
/// `rcu_barrier` must not return before the first callback has finished,
/// though it may run the newer ones itself and so reach the number of
/// callbacks queued before it. Catches two invokers working one list at
/// once.
#[test]
fn barrier_waits_for_a_callback_a_concurrent_invoker_is_running() {
    loom_model(|| {
        let rcu = Arc::new(LoomEnv::new_rcu());
        let (queued_late, second) = (Obj::new(), Obj::new());
        let first = Obj::new_slow_queueing(&rcu, 0, queued_late);
        // SAFETY: fresh objects, each queued once.
        unsafe {
            Obj::call_rcu(first, &rcu, 0);
            Obj::call_rcu(second, &rcu, 0);
        }
        rcu.synchronize(0, &mut ());
        let tick = {
            let rcu = rcu.clone();
            thread::spawn(move || rcu.tick(0, 1))
        };
        rcu.barrier(1, &mut ());
        // SAFETY: the barrier says every callback queued before it ran.
        unsafe {
            assert!((*first).is_freed(), "rcu_barrier returned first");
            assert!((*second).is_freed());
        }
        tick.join().unwrap();
        rcu.barrier(1, &mut ());
        // SAFETY: every callback ran and every thread has ended.
        unsafe {
            for obj in [first, second, queued_late] {
                Obj::destroy(obj);
            }
        }
    });
}

/// CPU 1 idles in an extended quiescent state for good; CPU 0's
/// `synchronize_rcu` must return all the same (no tick will ever report
/// CPU 1). Catches a GP start that does not count an idle CPU quiescent.
#[test]
fn a_grace_period_does_not_wait_for_an_idle_cpu() {
    loom_model(|| {
        let rcu = LoomTickEnv::new_rcu();
        rcu.eqs_enter(1);
        rcu.synchronize(0, &mut ());
    });
}

/// CPU 1 idles (an EQS), wakes, reads the object in a section and idles
/// again, while CPU 0 unpublishes the object, waits for a GP and frees it.
/// Readers are plain per-CPU counts here, as in the kernel, so only the
/// dynticks counter stands between the free and the read: a GP start that
/// found CPU 1 idle must come before its section, one that found it awake
/// must wait for its next idle. Catches an EQS exit not ordered before the
/// reads that follow it (no full barrier after its increment), and an EQS
/// entry that looks at `pending` before its increment (a GP starting in
/// between waits for CPU 1 forever).
#[test]
fn a_reader_right_after_an_idle_exit_is_waited_for() {
    loom_model(|| {
        let rcu = Arc::new(LoomTickEnv::new_rcu());
        let obj = Obj::new();
        let slot = Arc::new(AtomicPtr::new(obj));
        rcu.eqs_enter(1);
        let cpu1 = {
            let (rcu, slot) = (rcu.clone(), slot.clone());
            thread::spawn(move || {
                rcu.eqs_exit(1);
                read(&rcu, 1, &slot);
                rcu.eqs_enter(1);
            })
        };
        let old = slot.swap(core::ptr::null_mut(), Ordering::AcqRel);
        rcu.synchronize(0, &mut ());
        // SAFETY: `old` is the object, unpublished, and a GP has passed.
        unsafe { (*old).free() };
        cpu1.join().unwrap();
        // SAFETY: every thread has ended.
        unsafe { Obj::destroy(obj) };
    });
}
