//! A thread group's shared state (Linux's `sighand_struct` and
//! `signal_struct` folded into one): `sighand->siglock`, the
//! `sig->stats_lock` seqlock over the counters dead threads fold into, and
//! the list of the group's tasks (`thread_head`, under `tasklist_lock`).
//!
//! `copy_process` takes the parent's siglock inside `tasklist_lock` while
//! it attaches the child; `release_task`'s `__exit_signal` takes the dying
//! task's siglock, then `stats_lock`, folds the task's accounting into the
//! group and unhashes it there. Both locks are per thread group, so only
//! sibling threads (and a parent spawning them) contend on them. They are
//! taken only through [`Signal::lock_siglock`] and [`Signal::write_stats`],
//! whose guards tell `lockctx` while the lock is held.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::klib::list::ListHead;
use crate::klib::lockctx::{self, Tracked};
use crate::mm::cache::ObjCache;
use crate::sync::irq::{IrqLock, Plain};
use crate::sync::seqlock::{SeqLock, SeqLockWriteGuard};
use crate::sync::{RawSpin, SpinLock, named_spin_lock};

/// What `__exit_signal` accumulates from every thread that dies.
pub(crate) struct GroupStats {
    /// Port of `sig->sum_sched_runtime`: cycles run by dead threads.
    pub(crate) sum_sched_runtime: AtomicU64,
    /// Port of `sig->stime` (every task here runs in the kernel).
    pub(crate) stime: AtomicU64,
    /// Port of `sig->nvcsw`: voluntary context switches of dead threads.
    pub(crate) nvcsw: AtomicU64,
    /// Threads folded in so far.
    pub(crate) dead_threads: AtomicU64,
}

/// Port of `struct signal_struct` + `struct sighand_struct`.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
pub(crate) struct Signal {
    /// Port of `sig->sigcnt`: tasks using this struct.
    refs: AtomicUsize,
    /// Port of `sighand->siglock`.
    siglock: SpinLock<()>,
    /// Port of `sig->stats_lock` and the counters it protects.
    stats: SeqLock<GroupStats>,
    /// Port of `sig->nr_threads`: live threads of the group, changed under
    /// siglock (`copy_process` adds, `__exit_signal` subtracts).
    nr_threads: AtomicU64,
    /// The process's shared counters every thread writes (cred, sighand,
    /// live, mm_users; see [`super::shared`]).
    pub(crate) lines: super::shared::ProcessLines,
    /// Port of `sig->thread_head`: the group's tasks (their
    /// `thread_node`), leader first; changed and walked under
    /// `tasklist_lock`.
    pub(crate) thread_head: ListHead,
}

/// A held `spin_lock(&sighand->siglock)`; dropping it is `spin_unlock`.
pub(crate) struct SiglockGuard<'a>(
    #[allow(dead_code)] lock_api::MutexGuard<'a, IrqLock<RawSpin, Plain>, ()>,
);

impl Drop for SiglockGuard<'_> {
    fn drop(&mut self) {
        // Before the field's drop unlocks.
        lockctx::releasing(Tracked::Siglock);
    }
}

/// A held `write_seqlock(&sig->stats_lock)`; dropping it is
/// `write_sequnlock`.
pub(crate) struct StatsWriteGuard<'a>(SeqLockWriteGuard<'a, GroupStats>);

impl core::ops::Deref for StatsWriteGuard<'_> {
    type Target = GroupStats;

    fn deref(&self) -> &GroupStats {
        &self.0
    }
}

impl Drop for StatsWriteGuard<'_> {
    fn drop(&mut self) {
        // Before the field's drop ends the write and unlocks.
        lockctx::releasing(Tracked::StatsWrite);
    }
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
impl Signal {
    /// `spin_lock(&sighand->siglock)`.
    pub(crate) fn lock_siglock(&self) -> SiglockGuard<'_> {
        let g = SiglockGuard(self.siglock.lock());
        lockctx::acquired(Tracked::Siglock);
        g
    }

    /// `write_seqlock(&sig->stats_lock)`.
    pub(crate) fn write_stats(&self) -> StatsWriteGuard<'_> {
        let g = StatsWriteGuard(self.stats.write());
        lockctx::acquired(Tracked::StatsWrite);
        g
    }

    /// Port of `sig->nr_threads++` / `--`: the siglock guard is the proof.
    pub(crate) fn add_threads(&self, _siglock: &SiglockGuard<'_>, delta: i64) {
        let n = self.nr_threads.load(Ordering::Relaxed);
        self.nr_threads
            .store(n.wrapping_add_signed(delta), Ordering::Relaxed);
    }

    /// Live threads of the group.
    pub(crate) fn nr_threads(&self) -> u64 {
        self.nr_threads.load(Ordering::Relaxed)
    }

    /// A consistent read of the group counters (`read_seqbegin` ..
    /// `read_seqretry`).
    pub(crate) fn read_stats<R>(&self, f: impl Fn(&GroupStats) -> R) -> R {
        self.stats.read(f)
    }
}

static SIGNAL_CACHE: ObjCache = ObjCache::new("signal_cache", Layout::new::<Signal>());

/// The cache signal structs come from (Linux's `signal_cachep`).
pub(crate) fn signal_cache() -> &'static ObjCache {
    &SIGNAL_CACHE
}

/// A counted reference to a thread group's [`Signal`].
pub(crate) struct SignalRef(NonNull<Signal>);

// SAFETY: the struct is locks and atomics; the count is atomic.
unsafe impl Send for SignalRef {}
// SAFETY: as above.
unsafe impl Sync for SignalRef {}

impl SignalRef {
    /// Port of `copy_signal()`: a new group with one thread.
    pub(crate) fn new() -> Option<SignalRef> {
        let mem = SIGNAL_CACHE.alloc()?.cast::<Signal>();
        // SAFETY: a fresh block with Signal's layout.
        unsafe {
            mem.as_ptr().write(Signal {
                refs: AtomicUsize::new(1),
                siglock: named_spin_lock("siglock", ()),
                stats: SeqLock::named(
                    "stats_lock",
                    GroupStats {
                        sum_sched_runtime: AtomicU64::new(0),
                        stime: AtomicU64::new(0),
                        nvcsw: AtomicU64::new(0),
                        dead_threads: AtomicU64::new(0),
                    },
                ),
                nr_threads: AtomicU64::new(1),
                lines: super::shared::ProcessLines::new(),
                thread_head: ListHead::new(),
            })
        };
        Some(SignalRef(mem))
    }
}

impl core::ops::Deref for SignalRef {
    type Target = Signal;

    fn deref(&self) -> &Signal {
        // SAFETY: a counted reference keeps the struct alive.
        unsafe { self.0.as_ref() }
    }
}

impl Clone for SignalRef {
    fn clone(&self) -> Self {
        self.refs.fetch_add(1, Ordering::Relaxed);
        SignalRef(self.0)
    }
}

impl Drop for SignalRef {
    fn drop(&mut self) {
        if self.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        core::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: that was the last reference.
        unsafe {
            core::ptr::drop_in_place(self.0.as_ptr());
            SIGNAL_CACHE.free(self.0.cast());
        }
    }
}
