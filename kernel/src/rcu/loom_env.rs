//! The loom models' environment for RCU: the machine of [`super::tree`]
//! on loom's atomics and mutexes, two CPUs, waiters that observe readers
//! (as on the host; [`LoomTickEnv`]: readers are plain per-CPU counts no
//! waiter looks at, as in the kernel), and objects that remember being
//! freed.
//!
//! A model's threads stand for CPUs and name theirs in every call. Freeing
//! an object is a write to a loom `UnsafeCell` that every reader reads
//! when it uses the object, so loom reports any use not ordered before the
//! free; objects stay allocated until the model drops them, so a bug shows
//! up as a report, not as memory corruption.
//!
//! Each round of a wait yields to loom's scheduler (loom's `AtomicWord`
//! relaxes by yielding), after which loom runs another thread first. So a
//! model that needs a waiter to carry on while the other CPU stands still
//! calls the steps of one round itself, and a callback that must still be
//! running while the other CPU waits yields a few times (a slow callback).

use loom::cell::UnsafeCell;
use loom::sync::Mutex;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::boxed::Box;

use super::cblist::{CbList, RcuHead};
use super::env::{RcuEnv, RcuLock};
use super::tree::{GpState, Rcu, RcuData};

/// CPUs in the models.
pub(crate) const CPUS: usize = 2;

/// The RCU machine the models run.
pub(crate) type LoomRcu = Rcu<LoomEnv, CPUS>;

impl<T: Send> RcuLock<T> for Mutex<T> {
    type Guard<'a>
        = loom::sync::MutexGuard<'a, T>
    where
        Self: 'a;
    fn lock(&self) -> Self::Guard<'_> {
        Mutex::lock(self).unwrap()
    }
}

/// Implements [`RcuEnv`] on loom's atomics and mutexes for `$env`: every
/// CPU online, no clock.
macro_rules! loom_env {
    ($env:ident, observe_readers: $observe:expr) => {
        impl RcuEnv for $env {
            type Word = AtomicU32;
            type Word64 = AtomicU64;
            type ListLock = Mutex<CbList>;
            type GpLock = Mutex<()>;

            const OBSERVE_READERS: bool = $observe;

            fn cpus_online() -> usize {
                CPUS
            }

            fn cycles() -> u64 {
                0
            }

            fn sc_fence() {
                fence(Ordering::SeqCst);
            }
        }

        impl $env {
            /// A fresh RCU state: no GP started, no callbacks.
            pub(crate) fn new_rcu() -> Rcu<$env, CPUS> {
                new_rcu()
            }
        }
    };
}

/// Waiters observe readers, as on the host.
pub(crate) enum LoomEnv {}
loom_env!(LoomEnv, observe_readers: true);

/// Only a CPU's own ticks and quiescent states see its readers, as in the
/// kernel: what the idle (EQS) models need, since a waiter's look at a
/// reader would otherwise cover for a misordered EQS exit.
pub(crate) enum LoomTickEnv {}
loom_env!(LoomTickEnv, observe_readers: false);

/// A fresh RCU state: no GP started, no callbacks, every CPU watched.
fn new_rcu<E>() -> Rcu<E, CPUS>
where
    E: RcuEnv<Word = AtomicU32, Word64 = AtomicU64, ListLock = Mutex<CbList>, GpLock = Mutex<()>>,
{
    Rcu {
        cpus: core::array::from_fn(|_| RcuData {
            nesting: AtomicU32::new(0),
            dynticks: AtomicU32::new(1),
            cbs: Mutex::new(CbList::new()),
        }),
        gp: GpState {
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            wanted: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            started_at: AtomicU64::new(0),
        },
        gp_lock: Mutex::new(()),
    }
}

/// An object freed through `call_rcu`.
#[repr(C)]
pub(crate) struct Obj {
    rcu: RcuHead,
    freed: UnsafeCell<bool>,
    /// What the callback queues before it frees this object (a callback
    /// may queue more, as one freeing a tree node frees its children): the
    /// RCU state, the CPU the callback runs on, and the object.
    then: Option<(*const LoomRcu, usize, *mut Obj)>,
    /// How many times the callback yields to the other CPU before it
    /// frees the object: a callback that takes a while.
    slow: u32,
}

/// Yields of a slow callback: enough for the other CPU to get through a
/// grace-period wait and a look at the lists in between.
const SLOW_YIELDS: u32 = 3;

impl Obj {
    /// A new live object, leaked until [`destroy`](Self::destroy).
    pub(crate) fn new() -> *mut Obj {
        Box::into_raw(Box::new(Obj {
            rcu: RcuHead::new(),
            freed: UnsafeCell::new(false),
            then: None,
            slow: 0,
        }))
    }

    /// An object whose callback, run on `cpu`, queues `next` first and
    /// then takes a while.
    pub(crate) fn new_slow_queueing(rcu: &LoomRcu, cpu: usize, next: *mut Obj) -> *mut Obj {
        let obj = Self::new();
        // SAFETY: a fresh object, private to the caller.
        unsafe {
            (*obj).then = Some((rcu, cpu, next));
            (*obj).slow = SLOW_YIELDS;
        }
        obj
    }

    /// Uses the object: it must not have been freed, and loom checks the
    /// free is not racing with this read.
    pub(crate) fn touch(&self) {
        assert!(!self.is_freed(), "a reader used a freed object");
    }

    /// Whether the object's callback has run (a checked read, so it must
    /// be ordered after the callback's write or loom reports it).
    pub(crate) fn is_freed(&self) -> bool {
        // SAFETY: a read through loom's checked cell.
        self.freed.with(|f| unsafe { *f })
    }

    /// Frees the object (marks it so: the memory stays until
    /// [`destroy`](Self::destroy)); loom checks no use races with this.
    pub(crate) fn free(&self) {
        // SAFETY: a write through loom's checked cell.
        self.freed.with_mut(|f| unsafe { *f = true });
    }

    /// Queues the object's callback on `cpu`.
    ///
    /// # Safety
    /// `obj` came from [`new`](Self::new), is unpublished and not queued.
    pub(crate) unsafe fn call_rcu(obj: *mut Obj, rcu: &LoomRcu, cpu: usize) {
        // SAFETY: the head is unqueued and stays allocated until the model
        // destroys the object, after every callback ran.
        unsafe { rcu.call_rcu(cpu, &raw mut (*obj).rcu, Self::free_cb) };
    }

    /// The callback: queues what it was asked to, takes its time, then
    /// marks the object freed.
    ///
    /// # Safety
    /// `head` is the first field of an `Obj`, queued by [`call_rcu`](Self::call_rcu).
    unsafe fn free_cb(head: *mut RcuHead) {
        let obj = head.cast::<Obj>();
        // SAFETY: per the contract; `then` was set before the object was
        // queued, and its RCU state outlives every callback.
        unsafe {
            if let Some((rcu, cpu, next)) = (*obj).then {
                Self::call_rcu(next, &*rcu, cpu);
            }
            for _ in 0..(*obj).slow {
                loom::thread::yield_now();
            }
            (*obj).free();
        }
    }

    /// Frees the object's memory.
    ///
    /// # Safety
    /// `obj` came from [`new`](Self::new), and no thread or callback will
    /// touch it again.
    pub(crate) unsafe fn destroy(obj: *mut Obj) {
        // SAFETY: per the contract.
        drop(unsafe { Box::from_raw(obj) });
    }
}
