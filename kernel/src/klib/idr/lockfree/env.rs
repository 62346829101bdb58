//! What the lock-free id map runs on: its atomic words, node memory, grace
//! periods and event counters, behind one trait ([`LfEnv`]).
//!
//! The map's protocol (claim, install, publish, remove, reclaim, the full
//! hints) is written once over this trait. [`KernelEnv`] is what the kernel
//! and the host tests run: `core` atomics, nodes from a zeroed per-CPU
//! object cache ([`lf_node_cache`] by default, a private one per test), RCU
//! read-side sections and `call_rcu` for unlinked nodes, per-CPU counters.
//! The loom models instantiate the same protocol with loom's atomics, boxed
//! nodes that remember being freed, and a grace period modelled with a
//! reader count, so loom explores the code the kernel runs.
//!
//! A node freed through [`LfEnv::free_node`] was never reachable by another
//! CPU (an install that lost its race, or the map being dropped); one
//! unlinked from a live map goes through [`LfEnv::retire_node`], which frees
//! it only after every read-side section that could have found it ended.

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::tree::LfNode;
use crate::klib::fault_inject::{FaultSite, should_fail};
pub(crate) use crate::klib::idr::SlotPtr;
use crate::klib::lockctx::{self, Site};
use crate::mm::cache::RcuObjCache;
use crate::platform::{self, MAX_CPUS};
use crate::rcu::{RcuHead, RcuReadGuard, call_rcu, rcu_read_lock};
use crate::sync::word::forward_atomic;

/// A 64-bit atomic bitmap word (a leaf's claimed ids, an inner node's full
/// hints).
pub(crate) trait Bits64: Send + Sync {
    fn with_value(v: u64) -> Self;
    fn load(&self, order: Ordering) -> u64;
    fn fetch_or(&self, v: u64, order: Ordering) -> u64;
    fn fetch_and(&self, v: u64, order: Ordering) -> u64;
    fn compare_exchange(&self, cur: u64, new: u64, ok: Ordering, err: Ordering)
    -> Result<u64, u64>;
}

/// A 32-bit atomic word (the cyclic cursor, `pid_allocated`).
pub(crate) trait Word32: Send + Sync {
    fn with_value(v: u32) -> Self;
    fn load(&self, order: Ordering) -> u32;
    fn swap(&self, v: u32, order: Ordering) -> u32;
    fn fetch_add(&self, v: u32, order: Ordering) -> u32;
    fn fetch_sub(&self, v: u32, order: Ordering) -> u32;
    fn fetch_and(&self, v: u32, order: Ordering) -> u32;
    fn compare_exchange(&self, cur: u32, new: u32, ok: Ordering, err: Ordering)
    -> Result<u32, u32>;
}

/// Implements [`Bits64`] for the atomic type `$ty`.
macro_rules! impl_bits64 {
    ($ty:ty) => {
        impl Bits64 for $ty {
            forward_atomic!($ty, u64 {
                new with_value,
                load load,
                rmw fetch_or,
                rmw fetch_and,
                cas compare_exchange,
            });
        }
    };
}

/// Implements [`Word32`] for the atomic type `$ty`.
macro_rules! impl_word32 {
    ($ty:ty) => {
        impl Word32 for $ty {
            forward_atomic!($ty, u32 {
                new with_value,
                load load,
                rmw swap,
                rmw fetch_add,
                rmw fetch_sub,
                rmw fetch_and,
                cas compare_exchange,
            });
        }
    };
}

impl_bits64!(AtomicU64);
impl_word32!(AtomicU32);

#[cfg(all(test, loom))]
impl_bits64!(loom::sync::atomic::AtomicU64);
#[cfg(all(test, loom))]
impl_word32!(loom::sync::atomic::AtomicU32);

/// The slow-path events the map counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LfEvent {
    /// A claim found its bit taken between looking and setting it.
    ClaimRace,
    /// The cursor moved under a claim's compare-and-swap.
    CursorRace,
    /// A node was installed into an empty slot.
    NodeInstall,
    /// An install lost its race; its node was freed unpublished.
    InstallRace,
    /// Node memory could not be had (ENOMEM).
    NodeAllocFailed,
    /// A claim met a leaf being reclaimed, waited for it and looked again.
    DeadLeaf,
    /// An emptied leaf was marked dead, unlinked and retired.
    Reclaim,
    /// A reclaim found the leaf claimed into again and left it.
    ReclaimAborted,
    /// A full hint was taken back because room appeared below it.
    HintRetract,
}

const NR_EVENTS: usize = LfEvent::HintRetract as usize + 1;

/// What the map needs from the machine it runs on. See the module header.
pub(crate) trait LfEnv: Send + Sync + Sized {
    type Bits: Bits64;
    type Slot: SlotPtr;
    type Word: Word32;
    /// Per-node data of the environment (the kernel's `rcu_head`).
    type Tag: Default + Send + Sync;
    /// Proof of a read-side section.
    type ReadGuard;

    /// Enters a read-side section (`rcu_read_lock`).
    fn read_lock(&self) -> Self::ReadGuard;

    /// A clean node (no bits, null slots), or `None` when memory is short.
    fn alloc_node(&self) -> Option<NonNull<LfNode<Self>>>;

    /// Frees a node no other CPU can reach at once.
    ///
    /// # Safety
    /// `node` came from [`alloc_node`](Self::alloc_node) of this
    /// environment, no other CPU can reach it, and it is not used again.
    unsafe fn free_node(&self, node: NonNull<LfNode<Self>>);

    /// Frees an unlinked node after a grace period.
    ///
    /// # Safety
    /// `node` came from [`alloc_node`](Self::alloc_node), has just been
    /// unlinked from its map (by the caller, once), its slots are null, and
    /// the caller is inside a read-side section.
    unsafe fn retire_node(&self, node: NonNull<LfNode<Self>>);

    /// Called on every node reached through a slot (loom: a use-after-free
    /// check).
    #[inline(always)]
    fn touch(_node: &LfNode<Self>) {}

    /// Orders a sequentially consistent read-modify-write before a
    /// sequentially consistent load of another word. The C++ model already
    /// does (both are in the single total order S), so the kernel needs
    /// only a compiler fence; loom models SeqCst accesses as acquire and
    /// release only, so its environment issues a SeqCst fence here.
    #[inline(always)]
    fn sc_fence() {
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
    }

    /// One round of a wait for another CPU's progress (`pause`; loom:
    /// yield to the other threads).
    #[inline(always)]
    fn relax() {
        platform::cpu_relax();
    }

    /// Counts a slow-path event.
    #[inline(always)]
    fn count(&self, _ev: LfEvent) {}
}

/// Where the kernel's map nodes come from (its own zeroed cache, so the
/// locked IDR's counters stay its own).
static LF_NODE_CACHE: RcuObjCache =
    RcuObjCache::new_zeroed("idr_lf_node", Layout::new::<LfNode<KernelEnv>>());

/// The object cache lock-free map nodes come from by default.
pub(crate) fn lf_node_cache() -> &'static RcuObjCache {
    &LF_NODE_CACHE
}

/// The kernel's environment: `core` atomics, nodes from a zeroed object
/// cache, RCU.
#[derive(Clone, Copy)]
pub(crate) struct KernelEnv {
    cache: &'static RcuObjCache,
}

impl KernelEnv {
    /// Nodes from [`lf_node_cache`].
    pub(crate) const fn new() -> Self {
        KernelEnv {
            cache: &LF_NODE_CACHE,
        }
    }

    /// Nodes from `cache`, which must be a zeroed cache of
    /// `LfNode<KernelEnv>`'s layout (tests use private ones, so their
    /// counters are exact).
    pub(crate) fn with_cache(cache: &'static RcuObjCache) -> Self {
        assert_eq!(cache.layout(), Layout::new::<LfNode<KernelEnv>>());
        KernelEnv { cache }
    }
}

impl Default for KernelEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// The kernel's per-node data: the `rcu_head` an unlinked node is freed
/// through and the cache it goes back to. All zeroes is a valid value, so
/// a zeroed cache object is a clean node.
pub(crate) struct KernelTag {
    rcu: RcuHead,
    cache: *const RcuObjCache,
}

impl Default for KernelTag {
    fn default() -> Self {
        KernelTag {
            rcu: RcuHead::new(),
            cache: ptr::null(),
        }
    }
}

// SAFETY: `cache` points at a `'static` cache (itself `Sync`) and is only
// written while the node is private (just allocated); the `rcu_head` is
// only touched by `call_rcu` and its callback.
unsafe impl Send for KernelTag {}
// SAFETY: as above.
unsafe impl Sync for KernelTag {}

impl LfEnv for KernelEnv {
    type Bits = AtomicU64;
    type Slot = AtomicPtr<()>;
    type Word = AtomicU32;
    type Tag = KernelTag;
    type ReadGuard = RcuReadGuard;

    #[inline]
    fn read_lock(&self) -> RcuReadGuard {
        rcu_read_lock()
    }

    /// A node from the cache; [`FaultSite::NodeAlloc`] makes it fail (no
    /// lock is held, so there is no preload pool behind it: ENOMEM).
    /// Recorded as [`Site::IdrNodeAlloc`], once per node.
    fn alloc_node(&self) -> Option<NonNull<LfNode<KernelEnv>>> {
        lockctx::record(Site::IdrNodeAlloc);
        if should_fail(FaultSite::NodeAlloc) {
            self.count(LfEvent::NodeAllocFailed);
            return None;
        }
        let Some(obj) = self.cache.alloc() else {
            self.count(LfEvent::NodeAllocFailed);
            return None;
        };
        let node = obj.cast::<LfNode<KernelEnv>>();
        // SAFETY: a zeroed object of the node's layout is a clean node
        // (see `KernelTag`), still private to us.
        unsafe { (*node.as_ptr()).tag.cache = self.cache };
        Some(node)
    }

    unsafe fn free_node(&self, node: NonNull<LfNode<KernelEnv>>) {
        // SAFETY: the caller hands over an unreachable node of our cache.
        unsafe { node_release(node.as_ptr()) };
    }

    unsafe fn retire_node(&self, node: NonNull<LfNode<KernelEnv>>) {
        // SAFETY: the node is unlinked and stays allocated until the
        // callback runs, after every reader that could have found it.
        unsafe { call_rcu(&raw mut (*node.as_ptr()).tag.rcu, lf_node_rcu_free) };
    }

    #[inline]
    fn count(&self, ev: LfEvent) {
        let c = &LF_STATS[platform::cpu_id()].0[ev as usize];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// Zeroes `node` and gives it back to the cache it came from.
///
/// # Safety
/// `node` came from `KernelEnv::alloc_node`, and nothing references it any
/// more.
unsafe fn node_release(node: *mut LfNode<KernelEnv>) {
    // SAFETY: per the contract; a zeroed node is what the cache takes
    // back, and `cache` was set at allocation to a `'static` cache.
    unsafe {
        let cache = &*(*node).tag.cache;
        node.write_bytes(0, 1);
        cache.free(NonNull::new_unchecked(node.cast()));
    }
}

/// The RCU callback of a retired node (Linux: `radix_tree_node_rcu_free`).
///
/// # Safety
/// `head` is the `rcu_head` of a node retired by `KernelEnv::retire_node`.
unsafe fn lf_node_rcu_free(head: *mut RcuHead) {
    let offset =
        core::mem::offset_of!(LfNode<KernelEnv>, tag) + core::mem::offset_of!(KernelTag, rcu);
    // SAFETY: `head` is embedded in a retired node at `offset`; a grace
    // period has passed since it was unlinked, so nobody references it.
    unsafe { node_release(head.byte_sub(offset).cast()) };
}

/// One CPU's event counts: written only by that CPU (task context), read
/// by anyone.
#[repr(align(128))]
struct CpuLfStats([AtomicU64; NR_EVENTS]);

static LF_STATS: [CpuLfStats; MAX_CPUS] =
    [const { CpuLfStats([const { AtomicU64::new(0) }; NR_EVENTS]) }; MAX_CPUS];

/// Slow-path event counts of the lock-free maps, for one CPU or summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LfStats {
    pub(crate) claim_races: u64,
    pub(crate) cursor_races: u64,
    pub(crate) node_installs: u64,
    pub(crate) install_races: u64,
    pub(crate) node_alloc_failures: u64,
    pub(crate) dead_leaves: u64,
    pub(crate) reclaims: u64,
    pub(crate) reclaims_aborted: u64,
    pub(crate) hint_retracts: u64,
}

impl LfStats {
    fn from_counts(c: [u64; NR_EVENTS]) -> Self {
        let at = |e: LfEvent| c[e as usize];
        LfStats {
            claim_races: at(LfEvent::ClaimRace),
            cursor_races: at(LfEvent::CursorRace),
            node_installs: at(LfEvent::NodeInstall),
            install_races: at(LfEvent::InstallRace),
            node_alloc_failures: at(LfEvent::NodeAllocFailed),
            dead_leaves: at(LfEvent::DeadLeaf),
            reclaims: at(LfEvent::Reclaim),
            reclaims_aborted: at(LfEvent::ReclaimAborted),
            hint_retracts: at(LfEvent::HintRetract),
        }
    }
}

/// CPU `cpu`'s counts (exact once it is quiet; zero out of range).
pub(crate) fn lf_stats_cpu(cpu: usize) -> LfStats {
    let mut c = [0; NR_EVENTS];
    if let Some(s) = LF_STATS.get(cpu) {
        for (v, a) in c.iter_mut().zip(&s.0) {
            *v = a.load(Ordering::Relaxed);
        }
    }
    LfStats::from_counts(c)
}

/// The counts summed over CPUs.
pub(crate) fn lf_stats_total() -> LfStats {
    let mut c = [0; NR_EVENTS];
    for s in &LF_STATS {
        for (v, a) in c.iter_mut().zip(&s.0) {
            *v += a.load(Ordering::Relaxed);
        }
    }
    LfStats::from_counts(c)
}
