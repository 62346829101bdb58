//! Where IDR nodes come from: the memory seam (with its per-CPU cache of
//! clean nodes and per-CPU counters) and the per-CPU preload pools that
//! insertions under a spinlock draw from (Linux's `radix_tree_preload`,
//! `radix_tree_node_alloc` and `radix_tree_node_rcu_free` in
//! lib/radix-tree.c). The protocol is described in [`crate::klib::idr`].

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{IDR_PRELOAD_SIZE, IdrNode};
use crate::klib::errno::Errno;
use crate::klib::fault_inject::{FaultSite, should_fail};
use crate::platform::{self, MAX_CPUS, PerCpu};
use crate::sync::{SpinLockIrqSave, named_spin_lock_irqsave};

/// Per-CPU seam counters (one writer per slot: its CPU; summing them is
/// exact once the CPUs are quiet).
#[repr(align(128))]
struct CpuNodeCounts {
    allocated: AtomicU64,
    freed: AtomicU64,
    heap_allocs: AtomicU64,
}

static NODE_COUNTS: [CpuNodeCounts; MAX_CPUS] = [const {
    CpuNodeCounts {
        allocated: AtomicU64::new(0),
        freed: AtomicU64::new(0),
        heap_allocs: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// Node allocations that missed this CPU's node cache and went to the
/// global heap, summed over CPUs.
pub fn idr_node_heap_allocs() -> u64 {
    NODE_COUNTS
        .iter()
        .map(|c| c.heap_allocs.load(Ordering::Relaxed))
        .sum()
}

/// Bytes the per-CPU node caches may hold at most.
pub fn idr_node_max_cached_bytes() -> usize {
    MAX_CPUS
        * (IDR_NODE_CACHE_SIZE + crate::klib::idr::IDR_PRELOAD_SIZE)
        * core::mem::size_of::<IdrNode>()
}

/// Adds one to this CPU's counter (plain load and store: one writer).
fn count_one(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Node memory handed out and returned through the seam since boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdrNodeStats {
    /// Nodes [`idr_node_alloc`] returned.
    pub allocated: u64,
    /// Nodes [`idr_node_free`] took back.
    pub freed: u64,
}

impl IdrNodeStats {
    /// Nodes alive now (in trees or preload pools).
    pub fn live(&self) -> u64 {
        self.allocated.wrapping_sub(self.freed)
    }
}

/// The node-memory counters summed over CPUs.
pub fn idr_node_stats() -> IdrNodeStats {
    let mut st = IdrNodeStats {
        allocated: 0,
        freed: 0,
    };
    for c in &NODE_COUNTS {
        st.allocated += c.allocated.load(Ordering::Relaxed);
        st.freed += c.freed.load(Ordering::Relaxed);
    }
    st
}

/// This CPU's node-memory counters (exact: only this CPU writes them).
pub fn idr_node_stats_this_cpu() -> IdrNodeStats {
    let c = &NODE_COUNTS[platform::cpu_id()];
    IdrNodeStats {
        allocated: c.allocated.load(Ordering::Relaxed),
        freed: c.freed.load(Ordering::Relaxed),
    }
}

/// Clean nodes kept per CPU by the seam (a stand-in for the slab's per-CPU
/// cache until issue 6's object caches replace it).
pub const IDR_NODE_CACHE_SIZE: usize = 64;

#[derive(Clone, Copy)]
struct NodeCache {
    nr: usize,
    nodes: [*mut IdrNode; IDR_NODE_CACHE_SIZE],
}

// SAFETY: the cache owns its nodes (plain heap memory, not tied to any
// thread); `PerCpu` only lets this CPU touch it, with interrupts off.
unsafe impl Send for NodeCache {}

// Built at compile time: a per-CPU table is tens of KiB, too big to build
// on any stack (a release build's `array::from_fn` overflowed the 256 KiB
// boot stack doing so).
static NODE_CACHES: PerCpu<NodeCache> = PerCpu::new_copied(NodeCache {
    nr: 0,
    nodes: [ptr::null_mut(); IDR_NODE_CACHE_SIZE],
});

fn node_caches() -> &'static PerCpu<NodeCache> {
    &NODE_CACHES
}

/// Nodes a CPU moves to or from the depot at once.
const DEPOT_BATCH: usize = IDR_NODE_CACHE_SIZE / 2;
/// Most nodes the depot keeps; beyond, frees go to the global heap. Small
/// on purpose: it only has to carry nodes from CPUs that free leaves to
/// CPUs that allocate them. A 2048-node depot left that many nodes pinned
/// between freed pids after a 1M-pid teardown, and the linked-list heap's
/// O(free blocks) deallocation turned the next million frees quadratic
/// (bench=pidalloc went from 31 s to over 4 minutes).
pub const IDR_NODE_DEPOT_MAX: usize = 4 * DEPOT_BATCH;

/// Clean nodes shared between CPUs (a magazine depot, as in Bonwick's
/// slab magazines): when workers' pids share an IDR leaf, one CPU keeps
/// allocating leaves and another keeps freeing them; without the depot,
/// one CPU's cache overflowed to the global heap while the other's ran
/// dry (measured: 6-14% of threadspawn spawns hit the heap). Nodes are
/// linked through `slots[0]`, which is nulled again when one is taken.
struct Depot {
    head: *mut IdrNode,
    len: usize,
}

// SAFETY: the depot owns the clean nodes on its list; it is only reached
// under its lock.
unsafe impl Send for Depot {}

static DEPOT: SpinLockIrqSave<Depot> = named_spin_lock_irqsave(
    "idr_node_depot",
    Depot {
        head: ptr::null_mut(),
        len: 0,
    },
);

/// Moves up to a batch of depot nodes into `c` (called with `c` empty).
fn refill_from_depot(c: &mut NodeCache) {
    let mut d = DEPOT.lock();
    while c.nr < DEPOT_BATCH && !d.head.is_null() {
        let n = d.head;
        // SAFETY: nodes on the depot list are clean except for the link in
        // slots[0], owned by the depot, and we hold its lock.
        unsafe {
            d.head = (*n).slots[0].cast();
            (*n).slots[0] = ptr::null_mut();
        }
        d.len -= 1;
        c.nodes[c.nr] = n;
        c.nr += 1;
    }
}

/// Moves a batch of `c`'s nodes to the depot if it has room (called with
/// `c` full); false if it has not.
fn spill_to_depot(c: &mut NodeCache) -> bool {
    let mut d = DEPOT.lock();
    if d.len + DEPOT_BATCH > IDR_NODE_DEPOT_MAX {
        return false;
    }
    for _ in 0..DEPOT_BATCH {
        c.nr -= 1;
        let n = c.nodes[c.nr];
        // SAFETY: a cached node is clean and ours; it joins the depot list.
        unsafe { (*n).slots[0] = d.head.cast() };
        d.head = n;
        d.len += 1;
    }
    true
}

/// The seam all IDR node memory comes from (Linux:
/// `kmem_cache_alloc(radix_tree_node_cachep)`): a clean (zeroed) node, or
/// `None` when memory is short. Reuses a node from this CPU's cache of
/// freed ones, refilled in batches from the depot, else asks the global
/// allocator.
pub fn idr_node_alloc() -> Option<*mut IdrNode> {
    let cached = node_caches().with(|c| {
        if c.nr == 0 {
            refill_from_depot(c);
        }
        c.nr.checked_sub(1).map(|nr| {
            c.nr = nr;
            c.nodes[nr]
        })
    });
    let node = match cached {
        Some(node) => node,
        None => {
            // SAFETY: the layout has a non-zero size.
            let p = unsafe { alloc_zeroed(Layout::new::<IdrNode>()) }.cast::<IdrNode>();
            if p.is_null() {
                return None;
            }
            count_one(&NODE_COUNTS[platform::cpu_id()].heap_allocs);
            p
        }
    };
    count_one(&NODE_COUNTS[platform::cpu_id()].allocated);
    Some(node)
}

/// Returns a clean node to the seam (Linux: `radix_tree_node_rcu_free`,
/// minus the RCU grace period: we have no lockless readers). It goes to
/// this CPU's cache (spilling a batch to the depot when full), or back to
/// the global allocator if both are full.
///
/// # Safety
/// `node` came from [`idr_node_alloc`], is clean (no entries, no bits), is
/// in no tree or pool, and is not used again.
pub unsafe fn idr_node_free(node: *mut IdrNode) {
    // SAFETY: the caller hands over a valid, clean node.
    debug_assert!(unsafe { (*node).is_clean() });
    count_one(&NODE_COUNTS[platform::cpu_id()].freed);
    let cached = node_caches().with(|c| {
        if c.nr == IDR_NODE_CACHE_SIZE && !spill_to_depot(c) {
            return false;
        }
        c.nodes[c.nr] = node;
        c.nr += 1;
        true
    });
    if !cached {
        // SAFETY: the node is ours alone; same layout as allocated.
        unsafe { dealloc(node.cast(), Layout::new::<IdrNode>()) }
    }
}

/// Gives this CPU's cached clean nodes, and the depot's, back to the
/// global allocator.
pub fn idr_node_cache_drain() {
    node_caches().with(|c| {
        while c.nr > 0 {
            c.nr -= 1;
            // SAFETY: cached nodes are owned by the cache alone.
            unsafe { dealloc(c.nodes[c.nr].cast(), Layout::new::<IdrNode>()) }
        }
    });
    let mut d = DEPOT.lock();
    while !d.head.is_null() {
        let n = d.head;
        // SAFETY: depot nodes are owned by the depot, under its lock; the
        // link is read before the node goes back to the heap.
        unsafe {
            d.head = (*n).slots[0].cast();
            dealloc(n.cast(), Layout::new::<IdrNode>());
        }
        d.len -= 1;
    }
}

/// One CPU's preloaded nodes (Linux: `struct radix_tree_preload`).
#[derive(Clone, Copy)]
struct PreloadPool {
    nr: usize,
    nodes: [*mut IdrNode; IDR_PRELOAD_SIZE],
}

// SAFETY: the pool owns its nodes (plain heap memory, not tied to any
// thread); `PerCpu` only lets this CPU touch it, with interrupts off.
unsafe impl Send for PreloadPool {}

static PRELOADS: PerCpu<PreloadPool> = PerCpu::new_copied(PreloadPool {
    nr: 0,
    nodes: [ptr::null_mut(); IDR_PRELOAD_SIZE],
});

fn preloads() -> &'static PerCpu<PreloadPool> {
    &PRELOADS
}

/// Port of `idr_preload()` (`radix_tree_preload()`): fills this CPU's node
/// pool to [`IDR_PRELOAD_SIZE`] with allocations that may fail. Call it
/// outside the lock that protects the IDR, then insert under the lock, then
/// call [`idr_preload_end`].
///
/// Linux's `idr_preload()` returns nothing and leaves the failure to the
/// insertion; this returns ENOMEM when the pool could not be filled
/// completely (callers may ignore it the same way: the pool keeps the nodes
/// it got). The [`FaultSite::PreloadFill`] fault makes the fill fail and
/// leaves the pool untouched.
pub fn idr_preload() -> Result<(), Errno> {
    if should_fail(FaultSite::PreloadFill) {
        return Err(Errno::ENOMEM);
    }
    preloads().with(|pool| {
        while pool.nr < IDR_PRELOAD_SIZE {
            pool.nodes[pool.nr] = idr_node_alloc().ok_or(Errno::ENOMEM)?;
            pool.nr += 1;
        }
        Ok(())
    })
}

/// Port of `idr_preload_end()`. Linux re-enables preemption here; our
/// kernel never preempts a task, so there is nothing to undo. Kept so
/// callers have Linux's shape and a place for checks.
#[inline]
pub fn idr_preload_end() {}

/// Nodes in this CPU's preload pool (never more than [`IDR_PRELOAD_SIZE`]).
pub fn idr_preload_count() -> usize {
    preloads().with(|pool| pool.nr)
}

/// Gives this CPU's preloaded nodes back to the seam (for leak checks).
pub fn idr_preload_drain() {
    preloads().with(|pool| {
        while pool.nr > 0 {
            pool.nr -= 1;
            // SAFETY: pooled nodes came from `idr_node_alloc` and leave the
            // pool here.
            unsafe { idr_node_free(pool.nodes[pool.nr]) };
        }
    })
}

/// Nodes taken from the pool for one insertion.
pub(super) struct NodeBatch {
    pub(super) nr: usize,
    nodes: [*mut IdrNode; IDR_PRELOAD_SIZE],
}

impl NodeBatch {
    /// Takes `n` nodes from this CPU's pool (`GFP_ATOMIC`: never waits),
    /// or none of them and ENOMEM.
    pub(super) fn take(n: usize) -> Result<NodeBatch, Errno> {
        let mut batch = NodeBatch {
            nr: 0,
            nodes: [ptr::null_mut(); IDR_PRELOAD_SIZE],
        };
        if n == 0 {
            return Ok(batch);
        }
        if (0..n).any(|_| should_fail(FaultSite::NodeAlloc)) {
            return Err(Errno::ENOMEM);
        }
        preloads().with(|pool| {
            if pool.nr < n {
                return Err(Errno::ENOMEM);
            }
            for _ in 0..n {
                pool.nr -= 1;
                batch.nodes[batch.nr] = pool.nodes[pool.nr];
                batch.nr += 1;
            }
            Ok(())
        })?;
        Ok(batch)
    }

    pub(super) fn pop(&mut self, shift: u32) -> *mut IdrNode {
        assert!(self.nr > 0, "IDR node batch miscounted");
        self.nr -= 1;
        let node = self.nodes[self.nr];
        // SAFETY: pooled nodes are valid, clean and owned by the batch.
        unsafe {
            debug_assert!((*node).is_clean());
            (*node).shift = shift;
        }
        node
    }
}

/// Returns an emptied node to the seam (Linux frees it to the slab too;
/// the preload pool is refilled by the next `idr_preload`).
pub(super) fn node_release(node: *mut IdrNode) {
    // SAFETY: callers hand over a clean node they unlinked from their tree.
    unsafe { idr_node_free(node) };
}
