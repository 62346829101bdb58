//! Where IDR nodes come from (Linux's `radix_tree_node_alloc`,
//! `radix_tree_preload` and `radix_tree_node_rcu_free` in
//! lib/radix-tree.c).
//!
//! Node memory comes from one seam, [`idr_node_alloc`] / [`idr_node_free`],
//! over a zeroed per-CPU object cache ([`idr_node_cache`], whose counters
//! make leaks observable); a node that leaves a tree goes back to it after
//! an RCU grace period, as Linux's `radix_tree_node_rcu_free`, because
//! lockless readers may still be on it.
//!
//! Under a spinlock nothing may wait for memory. As in Linux, an insertion
//! takes each node from the node cache without waiting, and only when that
//! fails from this CPU's preload pool, which [`idr_preload`] filled up to
//! [`IDR_PRELOAD_SIZE`] nodes (the most one insertion needs) before the
//! lock was taken. Our kernel is not preemptive and interrupt handlers
//! never allocate ids, so the pool `idr_preload` filled is the one the
//! insertion finds, and [`idr_preload_end`] has nothing to undo.

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;

use super::env::{KernelIdrEnv, NodeBatch};
use super::{IDR_PRELOAD_SIZE, IdrNode};
use crate::klib::errno::Errno;
use crate::klib::fault_inject::{FaultSite, should_fail};
use crate::klib::lockctx::{self, Site};
use crate::mm::cache::RcuObjCache;
use crate::platform::{MAX_CPUS, PerCpu};
use crate::rcu::{RcuHead, call_rcu};

/// Where node memory comes from (Linux: `radix_tree_node_cachep`): nodes
/// come out of it zeroed and go back clean.
static IDR_NODE_CACHE: RcuObjCache = RcuObjCache::new_zeroed("idr_node", Layout::new::<IdrNode>());

/// The object cache IDR nodes come from (its counters say how many nodes
/// are live and how often the heap was needed).
pub(crate) fn idr_node_cache() -> &'static RcuObjCache {
    &IDR_NODE_CACHE
}

/// Bytes the node cache and the preload pools may hold at most.
pub(crate) fn idr_node_max_cached_bytes() -> usize {
    IDR_NODE_CACHE.max_cached_bytes() + MAX_CPUS * IDR_PRELOAD_SIZE * size_of::<IdrNode>()
}

/// The seam all IDR node memory comes from (Linux:
/// `kmem_cache_alloc(radix_tree_node_cachep)`): a clean (zeroed) node, or
/// `None` when memory is short.
pub(crate) fn idr_node_alloc() -> Option<*mut IdrNode> {
    IDR_NODE_CACHE.alloc().map(|p| p.as_ptr().cast())
}

/// Returns a clean node to the seam at once (nodes that were in a tree go
/// through [`node_release`] instead).
///
/// # Safety
/// `node` came from [`idr_node_alloc`], is clean (no entries, no bits), is
/// in no tree or pool, and is not used again.
pub(crate) unsafe fn idr_node_free(node: *mut IdrNode) {
    // SAFETY: the caller hands over a valid, clean node; its shift is the
    // only field a clean node may still have set, and the cache takes
    // back only zeroed nodes.
    unsafe {
        // The cache hands its objects out as zeroed nodes.
        assert!((*node).is_clean(), "IDR node freed with entries");
        (*node).shift = 0;
        IDR_NODE_CACHE.free(NonNull::new_unchecked(node.cast()));
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
pub(crate) fn idr_preload() -> Result<(), Errno> {
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
pub(crate) fn idr_preload_end() {}

/// Nodes in this CPU's preload pool (never more than [`IDR_PRELOAD_SIZE`]).
pub(crate) fn idr_preload_count() -> usize {
    preloads().with(|pool| pool.nr)
}

/// Gives this CPU's preloaded nodes back to the seam (for leak checks).
#[cfg(test)]
pub(crate) fn idr_preload_drain() {
    preloads().with(|pool| {
        while pool.nr > 0 {
            pool.nr -= 1;
            // SAFETY: pooled nodes came from `idr_node_alloc` and leave the
            // pool here.
            unsafe { idr_node_free(pool.nodes[pool.nr]) };
        }
    })
}

impl NodeBatch<KernelIdrEnv> {
    /// Port of `radix_tree_node_alloc()` under a spinlock, for each of the
    /// `n` nodes an insertion needs: a node from the node cache first (the
    /// `GFP_ATOMIC` slab allocation, which never waits but may reach the
    /// heap), from this CPU's preload pool only when that fails. So the
    /// pool is a reserve, not the supply, and one `idr_preload` covers any
    /// number of insertions while memory is not short. If some node cannot
    /// be had, the nodes already taken go back where they came from and the
    /// insertion fails with ENOMEM.
    ///
    /// [`FaultSite::NodeAlloc`] makes a cache allocation fail,
    /// [`FaultSite::PreloadTake`] makes the pool look dry.
    #[inline]
    pub(super) fn take(n: usize) -> Result<Self, Errno> {
        if n > 0 {
            lockctx::record(Site::IdrNodeAlloc);
        }
        assert!(n <= IDR_PRELOAD_SIZE, "IDR insertion wants {n} nodes");
        let mut batch = NodeBatch::new();
        let mut pooled = 0;
        while batch.nr < n {
            let node = match slab_alloc_atomic() {
                Some(node) => node,
                None => match pool_take() {
                    Some(node) => {
                        pooled += 1;
                        node
                    }
                    None => {
                        batch.give_back(pooled);
                        return Err(Errno::ENOMEM);
                    }
                },
            };
            batch.push(node);
        }
        Ok(batch)
    }

    /// Undoes a partial [`take`](Self::take): `pooled` nodes return to the
    /// pool they came from (it had room for them), the rest to the cache.
    fn give_back(&mut self, pooled: usize) {
        preloads().with(|pool| {
            for _ in 0..pooled {
                self.nr -= 1;
                pool.nodes[pool.nr] = self.nodes[self.nr];
                pool.nr += 1;
            }
        });
        while self.nr > 0 {
            self.nr -= 1;
            // SAFETY: the node came clean from the cache or the pool and
            // was never linked into a tree.
            unsafe { idr_node_free(self.nodes[self.nr]) };
        }
    }
}

/// A node from the node cache without waiting (`kmem_cache_alloc` with
/// `GFP_ATOMIC`), or `None` if memory is short or [`FaultSite::NodeAlloc`]
/// fires.
fn slab_alloc_atomic() -> Option<*mut IdrNode> {
    if should_fail(FaultSite::NodeAlloc) {
        return None;
    }
    idr_node_alloc()
}

/// A node from this CPU's preload pool, or `None` if it is dry (or
/// [`FaultSite::PreloadTake`] fires).
fn pool_take() -> Option<*mut IdrNode> {
    if should_fail(FaultSite::PreloadTake) {
        return None;
    }
    preloads().with(|pool| {
        pool.nr.checked_sub(1).map(|nr| {
            pool.nr = nr;
            pool.nodes[nr]
        })
    })
}

/// Returns a node that left its tree to the seam after a grace period
/// (`call_rcu(&node->rcu_head, radix_tree_node_rcu_free)`; the preload pool
/// is refilled by the next `idr_preload`).
///
/// # Safety
/// `node` was unlinked from its tree (and is no longer its published
/// root); nothing but readers that started before uses it again.
pub(super) unsafe fn node_release(node: *mut IdrNode) {
    // SAFETY: the head is the node's own and unqueued (a node leaves a tree
    // once per stay in it).
    unsafe { call_rcu(&raw mut (*node).tag, node_rcu_free) };
}

/// Port of `radix_tree_node_rcu_free()`: no reader can reach the node any
/// more; clean it (a shrunk root still points at its old child) and give
/// it back.
///
/// # Safety
/// `head` is the `rcu` field of a node handed to [`node_release`].
unsafe fn node_rcu_free(head: *mut RcuHead) {
    // SAFETY: container_of: `rcu` is a field of the node; the node is ours
    // alone now.
    unsafe {
        let node = head
            .byte_sub(core::mem::offset_of!(IdrNode, tag))
            .cast::<IdrNode>();
        for slot in &(*node).slots {
            slot.store(ptr::null_mut(), Ordering::Relaxed);
        }
        (*node).present = 0;
        (*node).full = 0;
        ptr::write(&raw mut (*node).tag, RcuHead::new());
        idr_node_free(node);
    }
}
