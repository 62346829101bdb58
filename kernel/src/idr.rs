//! The IDR: an id -> pointer map over a radix tree of 64-slot nodes, with
//! per-CPU preload pools (Linux's lib/idr.c over lib/radix-tree.c).
//!
//! **Tree.** Ids below [`IDR_ID_LIMIT`] (2^24, so every `pid_max` up to
//! 4,194,304 fits) live in a radix tree of [`IdrNode`]s with 64 slots each,
//! at most [`IDR_MAX_HEIGHT`] = 4 levels. Like Linux's tree it grows at the
//! top when an id beyond its reach is inserted and shrinks when only slot 0
//! of the root is used, and a node is freed as soon as nothing lives below
//! it; so the shape is a function of the set of ids alone. An allocated id
//! may hold a null pointer: that is how `alloc_pid` reserves a number
//! before the pid is published (`idr_find` then still says "nothing").
//!
//! **Free marks.** Every node keeps two bitmaps: `present` (the slot holds
//! an entry or a child) and `full` (nothing below the slot is free: an
//! allocated id in a leaf, a child node with no free id). This is the
//! radix tree's `IDR_FREE` tag inverted. Finding the first free id at or
//! after a start is a walk of at most two descents, one bitmap scan per
//! node, whatever the number of live ids; that is what keeps `alloc_pid`
//! flat from a thousand to a million live pids.
//!
//! **Preload.** Under a spinlock nothing may wait for memory, so, as in
//! Linux, the caller first runs [`idr_preload`] (outside the lock), which
//! fills this CPU's pool up to [`IDR_PRELOAD_SIZE`] nodes, the most a
//! single insertion can need; insertions under the lock take nodes only
//! from that pool and fail with ENOMEM when it runs dry. Linux keeps the
//! task on its CPU between `idr_preload()` and `idr_preload_end()` by
//! disabling preemption; our kernel is not preemptive and interrupt
//! handlers never allocate ids, so the pool filled by `idr_preload` is the
//! one the insertion finds, and [`idr_preload_end`] has nothing to undo.
//! Insertion is all-or-nothing: the nodes it needs are counted and taken
//! before the tree changes, so a failed insertion leaves no empty nodes
//! behind.
//!
//! **Memory.** Node memory comes from one seam, [`idr_node_alloc`] /
//! [`idr_node_free`], which counts what it hands out per CPU so leaks are
//! observable ([`idr_node_stats`]). Nodes emptied by removals go back to
//! the seam at once (Linux frees them to the slab after an RCU grace
//! period), which keeps a small per-CPU cache of clean nodes for reuse in
//! front of the global allocator, as the slab's per-CPU caches do; issue 6
//! replaces it with per-CPU object caches. So the stock `alloc_pid`'s extra
//! preloads cost a cache hit, not a trip to the allocator, as in Linux.
//!
//! **Locking.** An [`Idr`] is plain data (`&mut self` for changes); the
//! caller provides the lock (`pidmap_lock` for the pid IDRs).

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::errno::Errno;
use crate::fault_inject::{FaultSite, should_fail};
use crate::once::OnceBox;
use crate::platform::{self, MAX_CPUS, PerCpu};

/// Bits of the id consumed per tree level.
pub const IDR_BITS: u32 = 6;
/// Slots per node.
pub const IDR_SLOTS: usize = 1 << IDR_BITS;
/// Most levels a tree can have.
pub const IDR_MAX_HEIGHT: u32 = 4;
/// Ids are below this (2^24 >= Linux's `PID_MAX_LIMIT` of 2^22).
pub const IDR_ID_LIMIT: u32 = 1 << (IDR_BITS * IDR_MAX_HEIGHT);
/// Nodes one insertion may need at worst, hence the preload pool's size:
/// growing a one-level tree to four levels takes three new roots, and the
/// new id's path below the top takes three more. (Linux's
/// `RADIX_TREE_PRELOAD_SIZE` is `2 * RADIX_TREE_MAX_PATH - 1` for the same
/// reason.)
pub const IDR_PRELOAD_SIZE: usize = 2 * IDR_MAX_HEIGHT as usize - 2;

/// One radix tree node: 64 slots (children, or entries in a leaf) and the
/// bitmaps that make free-id search a bit scan per level.
#[repr(C, align(64))]
pub struct IdrNode {
    /// Bit i: slot i holds a child (internal) or an allocated id (leaf).
    present: u64,
    /// Bit i: nothing below slot i is free.
    full: u64,
    /// Id bits below this node's slot index: 0 for a leaf.
    shift: u32,
    slots: [*mut (); IDR_SLOTS],
}

impl IdrNode {
    fn is_clean(&self) -> bool {
        self.present == 0 && self.full == 0 && self.slots.iter().all(|s| s.is_null())
    }
}

/// Per-CPU seam counters (one writer per slot: its CPU; summing them is
/// exact once the CPUs are quiet).
#[repr(align(128))]
struct CpuNodeCounts {
    allocated: AtomicU64,
    freed: AtomicU64,
}

static NODE_COUNTS: [CpuNodeCounts; MAX_CPUS] = [const {
    CpuNodeCounts {
        allocated: AtomicU64::new(0),
        freed: AtomicU64::new(0),
    }
}; MAX_CPUS];

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

struct NodeCache {
    nr: usize,
    nodes: [*mut IdrNode; IDR_NODE_CACHE_SIZE],
}

// SAFETY: the cache owns its nodes (plain heap memory, not tied to any
// thread); `PerCpu` only lets this CPU touch it, with interrupts off.
unsafe impl Send for NodeCache {}

static NODE_CACHES: OnceBox<PerCpu<NodeCache>> = OnceBox::new();

fn node_caches() -> &'static PerCpu<NodeCache> {
    NODE_CACHES.get_or_init(|| {
        PerCpu::new(|| NodeCache {
            nr: 0,
            nodes: [ptr::null_mut(); IDR_NODE_CACHE_SIZE],
        })
    })
}

/// The seam all IDR node memory comes from (Linux:
/// `kmem_cache_alloc(radix_tree_node_cachep)`): a clean (zeroed) node, or
/// `None` when memory is short. Reuses a node from this CPU's small cache
/// of freed ones if it can, else asks the global allocator. Issue 6 swaps
/// in its per-CPU object caches here.
pub fn idr_node_alloc() -> Option<*mut IdrNode> {
    let cached = node_caches().with(|c| {
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
            p
        }
    };
    count_one(&NODE_COUNTS[platform::cpu_id()].allocated);
    Some(node)
}

/// Returns a clean node to the seam (Linux: `radix_tree_node_rcu_free`,
/// minus the RCU grace period: we have no lockless readers). It goes to
/// this CPU's cache, or back to the global allocator if that is full.
///
/// # Safety
/// `node` came from [`idr_node_alloc`], is clean (no entries, no bits), is
/// in no tree or pool, and is not used again.
pub unsafe fn idr_node_free(node: *mut IdrNode) {
    // SAFETY: the caller hands over a valid, clean node.
    debug_assert!(unsafe { (*node).is_clean() });
    count_one(&NODE_COUNTS[platform::cpu_id()].freed);
    let cached = node_caches().with(|c| {
        if c.nr < IDR_NODE_CACHE_SIZE {
            c.nodes[c.nr] = node;
            c.nr += 1;
            true
        } else {
            false
        }
    });
    if !cached {
        // SAFETY: the node is ours alone; same layout as allocated.
        unsafe { dealloc(node.cast(), Layout::new::<IdrNode>()) }
    }
}

/// Gives this CPU's cached clean nodes back to the global allocator.
pub fn idr_node_cache_drain() {
    node_caches().with(|c| {
        while c.nr > 0 {
            c.nr -= 1;
            // SAFETY: cached nodes are owned by the cache alone.
            unsafe { dealloc(c.nodes[c.nr].cast(), Layout::new::<IdrNode>()) }
        }
    })
}

/// One CPU's preloaded nodes (Linux: `struct radix_tree_preload`).
struct PreloadPool {
    nr: usize,
    nodes: [*mut IdrNode; IDR_PRELOAD_SIZE],
}

// SAFETY: the pool owns its nodes (plain heap memory, not tied to any
// thread); `PerCpu` only lets this CPU touch it, with interrupts off.
unsafe impl Send for PreloadPool {}

static PRELOADS: OnceBox<PerCpu<PreloadPool>> = OnceBox::new();

fn preloads() -> &'static PerCpu<PreloadPool> {
    PRELOADS.get_or_init(|| {
        PerCpu::new(|| PreloadPool {
            nr: 0,
            nodes: [ptr::null_mut(); IDR_PRELOAD_SIZE],
        })
    })
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
struct NodeBatch {
    nr: usize,
    nodes: [*mut IdrNode; IDR_PRELOAD_SIZE],
}

impl NodeBatch {
    /// Takes `n` nodes from this CPU's pool (`GFP_ATOMIC`: never waits),
    /// or none of them and ENOMEM.
    fn take(n: usize) -> Result<NodeBatch, Errno> {
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

    fn pop(&mut self, shift: u32) -> *mut IdrNode {
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
fn node_release(node: *mut IdrNode) {
    // SAFETY: callers hand over a clean node they unlinked from their tree.
    unsafe { idr_node_free(node) };
}

/// Ids a tree of `height` levels covers.
fn capacity(height: u32) -> u64 {
    if height == 0 {
        0
    } else {
        1u64 << (IDR_BITS * height)
    }
}

/// Levels needed to hold `id`.
fn height_for(id: u32) -> u32 {
    let bits = 32 - id.leading_zeros();
    1 + bits.saturating_sub(1) / IDR_BITS
}

fn slot_of(id: u32, shift: u32) -> usize {
    ((id >> shift) as usize) & (IDR_SLOTS - 1)
}

/// Port of `struct idr`: ids mapped to `*mut T` (null: allocated but not
/// published), with the cyclic cursor `idr_next`.
pub struct Idr<T> {
    root: *mut IdrNode,
    height: u32,
    next: u32,
    nr_ids: u32,
    nr_nodes: u32,
    _entries: PhantomData<*mut T>,
}

impl<T> Default for Idr<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Idr<T> {
    /// Port of `idr_init()`: an empty IDR with its cursor at 0.
    pub const fn new() -> Self {
        Idr {
            root: ptr::null_mut(),
            height: 0,
            next: 0,
            nr_ids: 0,
            nr_nodes: 0,
            _entries: PhantomData,
        }
    }

    /// Allocated ids (published or not).
    pub fn nr_ids(&self) -> u32 {
        self.nr_ids
    }

    /// Nodes in the tree (0 when empty: nothing leaks).
    pub fn nr_nodes(&self) -> u32 {
        self.nr_nodes
    }

    /// Levels in the tree (0 when empty).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Port of `idr_is_empty()`.
    pub fn is_empty(&self) -> bool {
        self.root.is_null()
    }

    /// Port of `idr_get_cursor()`.
    pub fn get_cursor(&self) -> u32 {
        self.next
    }

    /// Port of `idr_set_cursor()`.
    pub fn set_cursor(&mut self, next: u32) {
        self.next = next;
    }

    /// Port of `idr_alloc()`: allocates the lowest free id in `[start, end)`
    /// (`end == 0`: no upper bound but [`IDR_ID_LIMIT`]) and stores `ptr`.
    /// ENOSPC if none is free, ENOMEM if the preload pool cannot supply the
    /// nodes. Does not move the cursor.
    pub fn alloc(&mut self, ptr: *mut T, start: u32, end: u32) -> Result<u32, Errno> {
        let max = Self::max_of(end);
        let id = self.find_free(start, max).ok_or(Errno::ENOSPC)?;
        self.insert(id, ptr)?;
        Ok(id)
    }

    /// Port of `idr_alloc_cyclic()`: like [`alloc`](Self::alloc), but
    /// searches from the cursor (or `start`, if higher), wraps to `start`
    /// once, and on success moves the cursor past the new id.
    pub fn alloc_cyclic(&mut self, ptr: *mut T, start: u32, end: u32) -> Result<u32, Errno> {
        let max = Self::max_of(end);
        let from = self.next.max(start);
        let id = match self.find_free(from, max) {
            Some(id) => id,
            None if from > start => self.find_free(start, max).ok_or(Errno::ENOSPC)?,
            None => return Err(Errno::ENOSPC),
        };
        self.insert(id, ptr)?;
        self.next = id + 1;
        Ok(id)
    }

    /// Port of `idr_find()`: the pointer stored at `id`; null if `id` is
    /// free or allocated without a pointer yet.
    pub fn find(&self, id: u32) -> *mut T {
        match self.leaf_of(id) {
            // SAFETY: `leaf_of` returns a node of this tree.
            Some((leaf, off)) => unsafe { (*leaf).slots[off].cast() },
            None => ptr::null_mut(),
        }
    }

    /// Whether `id` is allocated (published or reserved).
    pub fn is_allocated(&self, id: u32) -> bool {
        // SAFETY: `leaf_of` returns a node of this tree.
        self.leaf_of(id)
            .is_some_and(|(leaf, off)| unsafe { (*leaf).present } & (1 << off) != 0)
    }

    /// Port of `idr_replace()`: stores `ptr` at the allocated `id`,
    /// returning the old pointer; ENOENT if `id` is not allocated.
    pub fn replace(&mut self, ptr: *mut T, id: u32) -> Result<*mut T, Errno> {
        let (leaf, off) = self.leaf_of(id).ok_or(Errno::ENOENT)?;
        // SAFETY: a node of this tree, which `&mut self` lets us change.
        let leaf = unsafe { &mut *leaf };
        if leaf.present & (1 << off) == 0 {
            return Err(Errno::ENOENT);
        }
        Ok(core::mem::replace(&mut leaf.slots[off], ptr.cast()).cast())
    }

    /// Port of `idr_remove()`: frees `id`, returning its pointer, or `None`
    /// if it was not allocated. Emptied nodes go back to the preload pool.
    pub fn remove(&mut self, id: u32) -> Option<*mut T> {
        if u64::from(id) >= capacity(self.height) {
            return None;
        }
        let mut path = [ptr::null_mut::<IdrNode>(); IDR_MAX_HEIGHT as usize];
        let mut depth = 0;
        let mut node = self.root;
        // SAFETY: every pointer followed is a node of this tree, which
        // `&mut self` lets us change; freed nodes are unlinked first.
        unsafe {
            while (*node).shift > 0 {
                let child = (*node).slots[slot_of(id, (*node).shift)].cast::<IdrNode>();
                if child.is_null() {
                    return None;
                }
                path[depth] = node;
                depth += 1;
                node = child;
            }
            let off = slot_of(id, 0);
            let bit = 1u64 << off;
            if (*node).present & bit == 0 {
                return None;
            }
            let value = core::mem::replace(&mut (*node).slots[off], ptr::null_mut());
            (*node).present &= !bit;
            (*node).full &= !bit;
            let mut child = node;
            while depth > 0 {
                depth -= 1;
                let parent = path[depth];
                let pbit = 1u64 << slot_of(id, (*parent).shift);
                let emptied = (*child).present == 0;
                let was_full = (*parent).full & pbit != 0;
                (*parent).full &= !pbit;
                if emptied {
                    (*parent).slots[slot_of(id, (*parent).shift)] = ptr::null_mut();
                    (*parent).present &= !pbit;
                    self.release(child);
                } else if !was_full {
                    // Ancestors already know there is room below them.
                    break;
                }
                child = parent;
            }
            if (*self.root).present == 0 {
                self.release(self.root);
                self.root = ptr::null_mut();
                self.height = 0;
            } else {
                self.shrink();
            }
            self.nr_ids -= 1;
            Some(value.cast())
        }
    }

    /// Port of `idr_for_each()`: visits every allocated id in order with
    /// its pointer (null for reserved ids).
    pub fn for_each(&self, mut f: impl FnMut(u32, *mut T)) {
        if !self.root.is_null() {
            // SAFETY: the root of this tree.
            unsafe { Self::visit(self.root, 0, &mut f) };
        }
    }

    /// # Safety
    /// `node` is a node of this tree.
    unsafe fn visit(node: *mut IdrNode, base: u32, f: &mut impl FnMut(u32, *mut T)) {
        // SAFETY: per the contract, and children of tree nodes are nodes.
        unsafe {
            let mut bits = (*node).present;
            while bits != 0 {
                let slot = bits.trailing_zeros();
                bits &= bits - 1;
                let id = base + (slot << (*node).shift);
                let entry = (*node).slots[slot as usize];
                if (*node).shift == 0 {
                    f(id, entry.cast());
                } else {
                    Self::visit(entry.cast(), id, f);
                }
            }
        }
    }

    fn max_of(end: u32) -> u32 {
        if end == 0 || end > IDR_ID_LIMIT {
            IDR_ID_LIMIT - 1
        } else {
            end - 1
        }
    }

    /// The leaf holding `id`'s slot, if the tree has one.
    fn leaf_of(&self, id: u32) -> Option<(*mut IdrNode, usize)> {
        if u64::from(id) >= capacity(self.height) {
            return None;
        }
        let mut node = self.root;
        // SAFETY: nodes of this tree, read only.
        unsafe {
            while (*node).shift > 0 {
                node = (*node).slots[slot_of(id, (*node).shift)].cast();
                if node.is_null() {
                    return None;
                }
            }
        }
        Some((node, slot_of(id, 0)))
    }

    /// The lowest free id in `[start, max]` (Linux: `idr_get_free()`'s
    /// search), found with the `full` bitmaps: descend while the slot on
    /// the way has room; if its subtree has room only before `start`, step
    /// to the next slot with room in the parent, whose subtree then surely
    /// has some.
    fn find_free(&self, start: u32, max: u32) -> Option<u32> {
        if start > max {
            return None;
        }
        let cap = capacity(self.height);
        if u64::from(start) >= cap {
            // Beyond the tree: free; the insertion grows the tree.
            return Some(start);
        }
        let mut stack = [(ptr::null_mut::<IdrNode>(), 0u64); IDR_MAX_HEIGHT as usize];
        let mut depth = 0;
        let (mut node, mut base) = (self.root, 0u64);
        let mut index = u64::from(start);
        // SAFETY: nodes of this tree, read only.
        let found = unsafe {
            loop {
                let shift = (*node).shift;
                let end = base + (1u64 << (shift + IDR_BITS));
                if index >= end {
                    if depth == 0 {
                        break cap;
                    }
                    depth -= 1;
                    (node, base) = stack[depth];
                    continue;
                }
                let off = (index - base) >> shift;
                let room = !(*node).full & (u64::MAX << off);
                if room == 0 {
                    index = end;
                    continue;
                }
                let slot = u64::from(room.trailing_zeros());
                if slot != off {
                    index = base + (slot << shift);
                }
                let child = (*node).slots[slot as usize].cast::<IdrNode>();
                if shift == 0 || child.is_null() {
                    break index;
                }
                stack[depth] = (node, base);
                depth += 1;
                (node, base) = (child, base + (slot << shift));
            }
        };
        (found <= u64::from(max)).then_some(found as u32)
    }

    /// Nodes the insertion of (free) `id` must add.
    fn nodes_needed(&self, id: u32) -> usize {
        let want = height_for(id);
        if self.root.is_null() {
            return want as usize;
        }
        if want > self.height {
            // New roots above, and a fresh path below the new top (the id
            // is beyond the old root's reach, so none of it exists).
            return (want - self.height + want - 1) as usize;
        }
        let mut node = self.root;
        // SAFETY: nodes of this tree, read only.
        unsafe {
            while (*node).shift > 0 {
                let child = (*node).slots[slot_of(id, (*node).shift)].cast::<IdrNode>();
                if child.is_null() {
                    return ((*node).shift / IDR_BITS) as usize;
                }
                node = child;
            }
        }
        0
    }

    /// Stores `value` at the free id `id`, taking the nodes it needs from
    /// this CPU's preload pool first (all or nothing).
    fn insert(&mut self, id: u32, value: *mut T) -> Result<(), Errno> {
        debug_assert!(id < IDR_ID_LIMIT);
        let need = self.nodes_needed(id);
        let mut batch = NodeBatch::take(need)?;
        self.nr_nodes += need as u32;
        let want = height_for(id);
        // SAFETY: nodes of this tree or fresh from the batch, changed under
        // `&mut self`.
        unsafe {
            if self.root.is_null() {
                self.root = batch.pop(IDR_BITS * (want - 1));
                self.height = want;
            }
            while self.height < want {
                let top = batch.pop(IDR_BITS * self.height);
                (*top).slots[0] = self.root.cast();
                (*top).present = 1;
                (*top).full = u64::from((*self.root).full == u64::MAX);
                self.root = top;
                self.height += 1;
            }
            let mut path = [ptr::null_mut::<IdrNode>(); IDR_MAX_HEIGHT as usize];
            let mut depth = 0;
            let mut node = self.root;
            loop {
                let shift = (*node).shift;
                let off = slot_of(id, shift);
                if shift == 0 {
                    debug_assert!((*node).present & (1 << off) == 0, "id {id} is taken");
                    (*node).slots[off] = value.cast();
                    (*node).present |= 1 << off;
                    (*node).full |= 1 << off;
                    break;
                }
                let mut child = (*node).slots[off].cast::<IdrNode>();
                if child.is_null() {
                    child = batch.pop(shift - IDR_BITS);
                    (*node).slots[off] = child.cast();
                    (*node).present |= 1 << off;
                }
                path[depth] = node;
                depth += 1;
                node = child;
            }
            let mut child = node;
            while depth > 0 && (*child).full == u64::MAX {
                depth -= 1;
                let parent = path[depth];
                (*parent).full |= 1 << slot_of(id, (*parent).shift);
                child = parent;
            }
        }
        debug_assert_eq!(batch.nr, 0, "IDR insertion miscounted its nodes");
        self.nr_ids += 1;
        Ok(())
    }

    /// Port of `radix_tree_shrink()`: drops roots whose only child is in
    /// slot 0.
    ///
    /// # Safety
    /// The tree is not empty.
    unsafe fn shrink(&mut self) {
        // SAFETY: the root and its slot-0 child are nodes of this tree.
        unsafe {
            while self.height > 1 && (*self.root).present == 1 {
                let old = self.root;
                self.root = (*old).slots[0].cast();
                (*old).slots[0] = ptr::null_mut();
                (*old).present = 0;
                (*old).full = 0;
                self.height -= 1;
                self.release(old);
            }
        }
    }

    fn release(&mut self, node: *mut IdrNode) {
        self.nr_nodes -= 1;
        node_release(node);
    }
}

impl<T> Drop for Idr<T> {
    fn drop(&mut self) {
        /// # Safety
        /// `node` is an unshared tree node; its subtree is freed.
        unsafe fn free_subtree(node: *mut IdrNode) {
            // SAFETY: per the contract; children are tree nodes too.
            unsafe {
                let mut bits = (*node).present;
                while bits != 0 {
                    let slot = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    if (*node).shift > 0 {
                        free_subtree((*node).slots[slot].cast());
                    }
                    (*node).slots[slot] = ptr::null_mut();
                }
                (*node).present = 0;
                (*node).full = 0;
                idr_node_free(node);
            }
        }
        if !self.root.is_null() {
            // SAFETY: the tree is ours alone and dies here.
            unsafe { free_subtree(self.root) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault_inject::{FaultMode, fault_inject};
    use crate::platform;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn p(v: usize) -> *mut u8 {
        v as *mut u8
    }

    fn alloc(idr: &mut Idr<u8>, start: u32, end: u32) -> Result<u32, Errno> {
        idr_preload().unwrap();
        let r = idr.alloc(p(0x10), start, end);
        idr_preload_end();
        r
    }

    fn cyclic(idr: &mut Idr<u8>, start: u32, end: u32) -> Result<u32, Errno> {
        idr_preload().unwrap();
        let r = idr.alloc_cyclic(ptr::null_mut(), start, end);
        idr_preload_end();
        r
    }

    #[test]
    fn alloc_find_replace_remove() {
        let mut idr = Idr::<u8>::new();
        assert_eq!(alloc(&mut idr, 5, 10), Ok(5));
        assert_eq!(alloc(&mut idr, 5, 10), Ok(6));
        assert_eq!(idr.find(5), p(0x10));
        assert_eq!(idr.replace(p(0x20), 6), Ok(p(0x10)));
        assert_eq!(idr.find(6), p(0x20));
        assert_eq!(idr.replace(p(0x20), 7), Err(Errno::ENOENT));
        assert_eq!(alloc(&mut idr, 5, 6), Err(Errno::ENOSPC));
        assert_eq!(alloc(&mut idr, 9, 9), Err(Errno::ENOSPC));
        assert_eq!(idr.remove(5), Some(p(0x10)));
        assert_eq!(idr.remove(5), None);
        assert_eq!(idr.remove(1 << 20), None);
        assert_eq!(alloc(&mut idr, 0, 0), Ok(0));
        assert_eq!(idr.nr_ids(), 2);
        assert_eq!(idr.get_cursor(), 0, "idr_alloc leaves the cursor alone");
        idr.remove(0);
        idr.remove(6);
        assert!(idr.is_empty());
        assert_eq!(idr.nr_nodes(), 0);
    }

    #[test]
    fn reserved_ids_are_allocated_but_not_found() {
        let mut idr = Idr::<u8>::new();
        let id = cyclic(&mut idr, 1, 100).unwrap();
        assert!(idr.is_allocated(id));
        assert!(idr.find(id).is_null());
        assert_eq!(idr.remove(id), Some(ptr::null_mut()));
    }

    #[test]
    fn cyclic_wraps_like_linux() {
        let mut idr = Idr::<u8>::new();
        assert_eq!(cyclic(&mut idr, 1, 5), Ok(1));
        assert_eq!(cyclic(&mut idr, 1, 5), Ok(2));
        idr.remove(1);
        assert_eq!(cyclic(&mut idr, 1, 5), Ok(3));
        assert_eq!(cyclic(&mut idr, 1, 5), Ok(4));
        assert_eq!(idr.get_cursor(), 5);
        // Past the end: wrap to start, find the freed 1.
        assert_eq!(cyclic(&mut idr, 1, 5), Ok(1));
        assert_eq!(idr.get_cursor(), 2);
        assert_eq!(cyclic(&mut idr, 1, 5), Err(Errno::ENOSPC));
        // A cursor beyond `end` (pid_max lowered) wraps as well.
        idr.set_cursor(1000);
        idr.remove(3);
        assert_eq!(cyclic(&mut idr, 1, 5), Ok(3));
        for id in 1..5 {
            idr.remove(id);
        }
        assert_eq!(idr.nr_nodes(), 0);
    }

    #[test]
    fn tree_grows_and_shrinks() {
        let mut idr = Idr::<u8>::new();
        assert_eq!(alloc(&mut idr, 3, 0), Ok(3));
        assert_eq!((idr.height(), idr.nr_nodes()), (1, 1));
        let top = IDR_ID_LIMIT - 1;
        assert_eq!(alloc(&mut idr, top, 0), Ok(top));
        assert_eq!(idr.height(), 4);
        assert_eq!(idr.nr_nodes(), 7, "4 on 3's path, 3 more on top's");
        assert_eq!(alloc(&mut idr, top, 0), Err(Errno::ENOSPC));
        assert_eq!(alloc(&mut idr, IDR_ID_LIMIT, 0), Err(Errno::ENOSPC));
        idr.remove(top);
        assert_eq!((idr.height(), idr.nr_nodes()), (1, 1), "shrunk back");
        idr.remove(3);
        assert_eq!((idr.height(), idr.nr_nodes()), (0, 0));
    }

    #[test]
    fn worst_case_insertion_needs_the_whole_pool() {
        let mut idr = Idr::<u8>::new();
        assert_eq!(alloc(&mut idr, 0, 0), Ok(0));
        assert_eq!(idr.nodes_needed(IDR_ID_LIMIT - 1), IDR_PRELOAD_SIZE);
        idr_preload().unwrap();
        assert_eq!(idr_preload_count(), IDR_PRELOAD_SIZE);
        assert!(idr.alloc(p(1), IDR_ID_LIMIT - 1, 0).is_ok());
        assert_eq!(idr_preload_count(), 0);
        // With the pool empty, an insertion needing a node fails and
        // changes nothing; one that needs none still works.
        let before = (idr.nr_ids(), idr.nr_nodes(), idr.height());
        assert_eq!(idr.alloc(p(1), 1 << 12, 0), Err(Errno::ENOMEM));
        assert_eq!((idr.nr_ids(), idr.nr_nodes(), idr.height()), before);
        assert_eq!(idr.alloc(p(1), 1, 0), Ok(1));
        let before = idr_node_stats_this_cpu();
        for id in [0, 1, IDR_ID_LIMIT - 1] {
            idr.remove(id);
        }
        assert_eq!(idr.nr_nodes(), 0);
        assert_eq!(idr_node_stats_this_cpu().freed - before.freed, 7);
        assert_eq!(idr_preload_count(), 0, "emptied nodes go to the seam");
    }

    #[test]
    fn faults_fail_cleanly() {
        let me = Some(platform::cpu_id());
        let mut idr = Idr::<u8>::new();
        idr_preload_drain();
        fault_inject(FaultSite::PreloadFill, FaultMode::FailNext(1), me);
        assert_eq!(idr_preload(), Err(Errno::ENOMEM));
        assert_eq!(idr_preload_count(), 0);
        assert_eq!(idr.alloc(p(1), 0, 0), Err(Errno::ENOMEM));
        assert_eq!(idr_preload(), Ok(()));
        fault_inject(FaultSite::NodeAlloc, FaultMode::FailNext(1), me);
        assert_eq!(idr.alloc(p(1), 0, 0), Err(Errno::ENOMEM));
        assert_eq!(idr_preload_count(), IDR_PRELOAD_SIZE, "nothing taken");
        assert_eq!(idr.alloc(p(1), 0, 0), Ok(0));
        idr.remove(0);
        assert!(idr.is_empty());
    }

    #[test]
    fn dropping_a_populated_idr_frees_its_nodes() {
        let mut idr = Idr::<u8>::new();
        for id in [1, 70, 5000, 300_000] {
            assert_eq!(alloc(&mut idr, id, 0), Ok(id));
        }
        let n = u64::from(idr.nr_nodes());
        let before = idr_node_stats_this_cpu().freed;
        drop(idr);
        assert_eq!(idr_node_stats_this_cpu().freed - before, n);
    }

    #[test]
    fn dense_fill_finds_every_hole() {
        let mut idr = Idr::<u8>::new();
        for want in 0..5000 {
            assert_eq!(alloc(&mut idr, 0, 0), Ok(want));
        }
        for id in (0..5000).step_by(7) {
            idr.remove(id);
        }
        for want in (0..5000).step_by(7) {
            assert_eq!(alloc(&mut idr, 0, 0), Ok(want));
        }
        assert_eq!(alloc(&mut idr, 0, 0), Ok(5000));
        let mut seen = 0;
        idr.for_each(|id, _| {
            assert_eq!(id, seen);
            seen += 1;
        });
        assert_eq!(seen, 5001);
        for id in 0..=5000 {
            idr.remove(id);
        }
        assert_eq!(idr.nr_nodes(), 0);
    }

    #[derive(Clone, Debug)]
    enum IdrOp {
        Alloc(u32, u32),
        Cyclic(u32, u32),
        Remove(u32),
        SetCursor(u32),
    }

    fn id_strategy() -> impl Strategy<Value = u32> {
        prop_oneof![
            0u32..200,
            4000u32..4200,
            262_100u32..262_200,
            Just(IDR_ID_LIMIT - 1)
        ]
    }

    fn idr_op() -> impl Strategy<Value = IdrOp> {
        prop_oneof![
            (id_strategy(), id_strategy()).prop_map(|(a, b)| IdrOp::Alloc(a, b)),
            (id_strategy(), id_strategy()).prop_map(|(a, b)| IdrOp::Cyclic(a, b)),
            id_strategy().prop_map(IdrOp::Remove),
            id_strategy().prop_map(IdrOp::SetCursor),
        ]
    }

    fn model_first_free(set: &BTreeSet<u32>, start: u32, end: u32) -> Option<u32> {
        let max = Idr::<u8>::max_of(end);
        (start..=max).find(|id| !set.contains(id))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn idr_matches_a_set(ops in proptest::collection::vec(idr_op(), 1..120)) {
            let mut idr = Idr::<u8>::new();
            let mut set = BTreeSet::new();
            let mut next = 0u32;
            for op in ops {
                match op {
                    IdrOp::Alloc(s, e) => {
                        let want = model_first_free(&set, s, e).ok_or(Errno::ENOSPC);
                        prop_assert_eq!(alloc(&mut idr, s, e), want);
                        if let Ok(id) = want { set.insert(id); }
                    }
                    IdrOp::Cyclic(s, e) => {
                        let from = next.max(s);
                        let want = model_first_free(&set, from, e)
                            .or_else(|| if from > s { model_first_free(&set, s, e) } else { None })
                            .ok_or(Errno::ENOSPC);
                        prop_assert_eq!(cyclic(&mut idr, s, e), want);
                        if let Ok(id) = want { set.insert(id); next = id + 1; }
                    }
                    IdrOp::Remove(id) => {
                        prop_assert_eq!(idr.remove(id).is_some(), set.remove(&id));
                    }
                    IdrOp::SetCursor(c) => { idr.set_cursor(c); next = c; }
                }
                prop_assert_eq!(idr.nr_ids() as usize, set.len());
                prop_assert_eq!(idr.get_cursor(), next);
            }
            let mut ids = Vec::new();
            idr.for_each(|id, _| ids.push(id));
            prop_assert_eq!(ids, set.iter().copied().collect::<Vec<_>>());
            for id in set { idr.remove(id); }
            prop_assert_eq!(idr.nr_nodes(), 0);
            prop_assert!(idr.is_empty());
        }
    }
}
