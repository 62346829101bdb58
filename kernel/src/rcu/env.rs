//! What the RCU machine runs on: its atomic words, its two locks, and how
//! readers are seen, behind one trait ([`RcuEnv`]).
//!
//! The grace-period machine and the callback lists ([`super::tree`]) are
//! written once over this trait. [`KernelEnv`] is what the kernel and the
//! host tests run: `core` atomics, the kernel's IRQ-saving spinlocks, and
//! a static instance built at compile time ([`KernelEnv::new_rcu`]). The
//! loom models instantiate the same machine with loom's atomics and locks,
//! so loom explores the code the kernel runs.

use core::ops::DerefMut;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, compiler_fence};

use super::cblist::CbList;
use super::tree::{GpState, Rcu, RcuData};
use crate::platform::{self, MAX_CPUS};
use crate::sync::word::{AtomicWord, forward_atomic};
use crate::sync::{SpinLockIrqSave, named_spin_lock_irqsave};

/// A 64-bit atomic word (grace-period numbers, the pending-CPU mask).
pub(crate) trait Word64: Send + Sync {
    fn load(&self, order: Ordering) -> u64;
    fn store(&self, v: u64, order: Ordering);
    fn swap(&self, v: u64, order: Ordering) -> u64;
    fn fetch_and(&self, v: u64, order: Ordering) -> u64;
    fn compare_exchange(&self, cur: u64, new: u64, ok: Ordering, err: Ordering)
    -> Result<u64, u64>;
}

/// Implements [`Word64`] for the atomic type `$ty`.
macro_rules! impl_word64 {
    ($ty:ty) => {
        impl Word64 for $ty {
            forward_atomic!($ty, u64 {
                load load,
                store store,
                rmw swap,
                rmw fetch_and,
                cas compare_exchange,
            });
        }
    };
}

impl_word64!(AtomicU64);
#[cfg(all(test, loom))]
impl_word64!(loom::sync::atomic::AtomicU64);

/// A lock around a `T` (the callback lists, the grace-period lock).
pub(crate) trait RcuLock<T>: Sync {
    type Guard<'a>: DerefMut<Target = T>
    where
        Self: 'a;
    fn lock(&self) -> Self::Guard<'_>;
}

/// The kernel's locks (lock_api mutexes over its raw spinlocks).
impl<R: lock_api::RawMutex + Sync, T: Send> RcuLock<T> for lock_api::Mutex<R, T> {
    type Guard<'a>
        = lock_api::MutexGuard<'a, R, T>
    where
        Self: 'a;
    #[inline]
    fn lock(&self) -> Self::Guard<'_> {
        lock_api::Mutex::lock(self)
    }
}

/// What the RCU machine needs from the machine it runs on.
pub(crate) trait RcuEnv: Sized + 'static {
    /// A CPU's read-side nesting count; its `relax` is the spin-wait hint
    /// of the machine's waits.
    type Word: AtomicWord;
    type Word64: Word64;
    /// The lock around each CPU's callback list; taken from interrupt
    /// context (the tick) too.
    type ListLock: RcuLock<CbList>;
    /// Serialises starting and ending grace periods.
    type GpLock: RcuLock<()>;

    /// Whether waiters find quiescent states by reading other CPUs'
    /// nesting counts (the host, which has no ticks), so readers must
    /// update theirs with sequentially consistent atomics. Without it a
    /// reader's count is a plain per-CPU store that only its own CPU's tick
    /// reads.
    const OBSERVE_READERS: bool;

    /// CPUs running now.
    fn cpus_online() -> usize;

    /// A clock for the stall check (cycles).
    fn cycles() -> u64;

    /// Orders this CPU's earlier accesses before its later sequentially
    /// consistent loads of other words: between a reader's increment and
    /// its reads, and between an updater's unpublishing and a waiter's
    /// look at readers. The single total order of SeqCst accesses already
    /// gives that (and x86's `lock`ed instructions are full barriers), so
    /// the kernel emits nothing; loom models SeqCst accesses as acquire and
    /// release only, so its environment issues a SeqCst fence.
    fn sc_fence();
}

/// The kernel's environment: `core` atomics and IRQ-saving spinlocks.
pub(crate) enum KernelEnv {}

impl RcuEnv for KernelEnv {
    type Word = AtomicU32;
    type Word64 = AtomicU64;
    type ListLock = SpinLockIrqSave<CbList>;
    type GpLock = SpinLockIrqSave<()>;

    const OBSERVE_READERS: bool = cfg!(not(target_os = "none"));

    #[inline]
    fn cpus_online() -> usize {
        platform::cpus_online()
    }

    #[inline]
    fn cycles() -> u64 {
        platform::cycles()
    }

    #[inline(always)]
    fn sc_fence() {
        compiler_fence(Ordering::SeqCst);
    }
}

impl KernelEnv {
    /// The kernel's RCU state, built at compile time for a static.
    pub(crate) const fn new_rcu() -> Rcu<KernelEnv, MAX_CPUS> {
        Rcu {
            cpus: [const {
                RcuData {
                    nesting: AtomicU32::new(0),
                    // Watched: every CPU starts outside idle.
                    dynticks: AtomicU32::new(1),
                    cbs: named_spin_lock_irqsave("rcu_cblist", CbList::new()),
                }
            }; MAX_CPUS],
            gp: GpState {
                started: AtomicU64::new(0),
                completed: AtomicU64::new(0),
                wanted: AtomicU64::new(0),
                pending: AtomicU64::new(0),
                started_at: AtomicU64::new(0),
            },
            gp_lock: named_spin_lock_irqsave("rcu_gp", ()),
        }
    }
}
