//! In-QEMU RCU cases: readers on every CPU against an updater that frees
//! what they read after `synchronize_rcu` or through `call_rcu`, and a
//! reader that never ends, which must be reported as a stall.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use crate::arch::{smp, time};
use crate::platform::{self, Parallel};
use crate::rcu::{
    RcuHead, call_rcu, completed_gps, pending_callbacks, rcu_all_qs, rcu_barrier, rcu_read_lock,
    set_stall_ms, synchronize_rcu,
};
use crate::task::sched::Cpus;

const ALIVE: u64 = 0xA11C_E5A1_1CE5_0001;
const DEAD: u64 = 0xDEAD_DEAD_DEAD_DEAD;

#[repr(C)]
struct Obj {
    rcu: RcuHead,
    magic: AtomicU64,
}

static CURRENT: AtomicPtr<Obj> = AtomicPtr::new(core::ptr::null_mut());
static FREED_BY_CALLBACK: AtomicU64 = AtomicU64::new(0);

fn new_obj() -> *mut Obj {
    Box::into_raw(Box::new(Obj {
        rcu: RcuHead::new(),
        magic: AtomicU64::new(ALIVE),
    }))
}

/// Poisons an object, then frees it: a reader that still sees it alive
/// after this ran was not waited for.
///
/// # Safety
/// `obj` came from `new_obj`, is unpublished, and no reader can reach it.
unsafe fn poison_and_free(obj: *mut Obj) {
    // SAFETY: per the contract.
    unsafe {
        (*obj).magic.store(DEAD, Ordering::SeqCst);
        drop(Box::from_raw(obj));
    }
}

unsafe fn free_cb(head: *mut RcuHead) {
    FREED_BY_CALLBACK.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `head` is the first field of an `Obj` queued by the updater
    // after unpublishing it.
    unsafe { poison_and_free(head.cast::<Obj>()) };
}

/// `rcu`: for 2 s, every CPU but 0 reads the published object in read-side
/// sections of varying length (checking it is alive throughout) while CPU 0
/// replaces it and frees the old one after `synchronize_rcu` or through
/// `call_rcu`. Then `rcu_barrier` runs every callback.
pub(crate) fn readers_and_updater() {
    const RUN_NS: u64 = 2_000_000_000;
    let n = smp::online();
    assert!(n >= 2, "rcu needs at least two CPUs");
    CURRENT.store(new_obj(), Ordering::SeqCst);
    let gps_before = completed_gps();
    let reads = AtomicU64::new(0);
    let (synced, queued) = (AtomicU64::new(0), AtomicU64::new(0));
    let stop = time::now_ns() + RUN_NS;
    let done = AtomicBool::new(false);
    Cpus.run(n, &|w| {
        if w == 0 {
            let mut i = 0u64;
            while time::now_ns() < stop {
                let old = CURRENT.swap(new_obj(), Ordering::SeqCst);
                if i % 2 == 0 {
                    synchronize_rcu();
                    // SAFETY: unpublished, and a grace period has passed.
                    unsafe { poison_and_free(old) };
                    synced.fetch_add(1, Ordering::Relaxed);
                } else {
                    // SAFETY: unpublished; the callback frees it after a GP.
                    unsafe { call_rcu(old.cast::<RcuHead>(), free_cb) };
                    queued.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
            done.store(true, Ordering::SeqCst);
            return;
        }
        let mut spin = (w as u64) * 7919;
        while !done.load(Ordering::SeqCst) {
            let g = rcu_read_lock();
            let obj = CURRENT.load(Ordering::SeqCst);
            spin = spin
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let until = time::now_ns() + (spin >> 33) % 50_000;
            loop {
                // SAFETY: read under rcu_read_lock: the object cannot be
                // freed before the section ends (what this case checks).
                let magic = unsafe { (*obj).magic.load(Ordering::SeqCst) };
                assert_eq!(magic, ALIVE, "cpu {w}: RCU reader saw a freed object");
                if time::now_ns() >= until {
                    break;
                }
                platform::cpu_relax();
            }
            drop(g);
            reads.fetch_add(1, Ordering::Relaxed);
            // cond_resched(): back-to-back sections leave the tick no room.
            rcu_all_qs();
        }
    });
    rcu_barrier();
    let last = CURRENT.swap(core::ptr::null_mut(), Ordering::SeqCst);
    synchronize_rcu();
    // SAFETY: unpublished and waited for.
    unsafe { poison_and_free(last) };
    let (synced, queued) = (
        synced.load(Ordering::Relaxed),
        queued.load(Ordering::Relaxed),
    );
    let freed = FREED_BY_CALLBACK.load(Ordering::Relaxed);
    println!(
        "selftest rcu: {n} cpus, {} read-side sections, {synced} synchronize_rcu, {queued} call_rcu ({freed} run), {} grace periods",
        reads.load(Ordering::Relaxed),
        completed_gps() - gps_before
    );
    assert_eq!(
        freed, queued,
        "rcu_barrier returned before every callback ran"
    );
    assert_eq!(pending_callbacks(), 0);
    assert!(synced > 0 && queued > 0 && reads.load(Ordering::Relaxed) > 0);
}

/// `rcu-stall`: CPU 1 enters a read-side section and never leaves it while
/// CPU 0 waits for a grace period; the stall check must fail the run,
/// naming CPU 1, within the (shortened) bound.
pub(crate) fn reader_that_never_ends() {
    assert!(smp::online() >= 2, "rcu-stall needs at least two CPUs");
    set_stall_ms(1000);
    let entered = AtomicBool::new(false);
    Cpus.run(2, &|w| {
        if w == 1 {
            let _g = rcu_read_lock();
            entered.store(true, Ordering::SeqCst);
            loop {
                platform::cpu_relax();
            }
        }
        while !entered.load(Ordering::SeqCst) {
            platform::cpu_relax();
        }
        synchronize_rcu();
        panic!("synchronize_rcu returned while a reader never ended");
    });
}
