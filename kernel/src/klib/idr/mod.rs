//! The IDR: an id -> pointer map over a radix tree of 64-slot nodes
//! (Linux's lib/idr.c over lib/radix-tree.c).
//!
//! The pid code allocates pid numbers from it and looks pids up in it.
//! Per-node bitmaps of full slots make finding a free id one bitmap scan
//! per level whatever the number of live ids: that is what keeps
//! `alloc_pid` flat from a thousand to a million live pids.
//!
//! [`Idr`] is the map, changed under a lock its caller holds: its Linux
//! API is here, the tree beneath it in `radix_tree`. [`IdrRcu`]
//! (`rcu_view`) is the lockless readers' view (Linux's `idr_find` under
//! `rcu_read_lock`); [`preload`] is where insertions under the lock get
//! their nodes; `env` is what the map and the view run on, so that the
//! loom models (`loom_models`) check the code the kernel runs;
//! [`lockfree`] is a lock-free map of the same kind, the pid code's
//! lockless strategy.

use alloc::boxed::Box;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;

use crate::klib::errno::Errno;

#[cfg_attr(
    any(not(test), loom),
    allow(
        dead_code,
        unused_imports,
        reason = "its user is the pid code's lockless strategy"
    )
)]
pub(crate) mod lockfree;
pub(crate) mod preload;

mod env;
mod radix_tree;
mod rcu_view;

pub(crate) use env::{IdrEnv, KernelIdrEnv, SlotPtr};
#[cfg(test)]
pub(crate) use preload::{idr_node_alloc, idr_preload_drain};
pub(crate) use preload::{
    idr_node_cache, idr_node_max_cached_bytes, idr_preload, idr_preload_count, idr_preload_end,
};
pub(crate) use rcu_view::IdrRcu;

/// Bits of the id consumed per tree level.
pub(crate) const IDR_BITS: u32 = 6;
/// Slots per node.
pub(crate) const IDR_SLOTS: usize = 1 << IDR_BITS;
/// Most levels a tree can have.
pub(crate) const IDR_MAX_HEIGHT: u32 = 4;
/// Ids are below this (2^24 >= Linux's `PID_MAX_LIMIT` of 2^22).
pub(crate) const IDR_ID_LIMIT: u32 = 1 << (IDR_BITS * IDR_MAX_HEIGHT);
/// Nodes one insertion may need at worst, hence the preload pool's size:
/// growing a one-level tree to four levels takes three new roots, and the
/// new id's path below the top takes three more. (Linux's
/// `RADIX_TREE_PRELOAD_SIZE` is `2 * RADIX_TREE_MAX_PATH - 1` for the same
/// reason.)
pub(crate) const IDR_PRELOAD_SIZE: usize = 2 * IDR_MAX_HEIGHT as usize - 2;

/// One radix tree node: 64 slots (children, or entries in a leaf) and the
/// bitmaps that make free-id search a bit scan per level: `present` (the
/// slot holds an entry or a child) and `full` (nothing below the slot is
/// free), the radix tree's `IDR_FREE` tag inverted. Lockless readers use
/// only `shift` and `slots`; the bitmaps are the writers' (under the lock).
#[repr(C, align(64))]
pub(crate) struct IdrNode<E: IdrEnv = KernelIdrEnv> {
    /// Bit i: slot i holds a child (internal) or an allocated id (leaf).
    present: u64,
    /// Bit i: nothing below slot i is free.
    full: u64,
    /// Id bits below this node's slot index: 0 for a leaf. Set before the
    /// node is linked in, reset only after its grace period.
    shift: u32,
    slots: [E::Slot; IDR_SLOTS],
    /// The environment's (the kernel's: the `rcu_head` for the grace
    /// period between leaving the tree and the node cache).
    tag: E::Tag,
}

impl<E: IdrEnv> IdrNode<E> {
    /// A clean node (the loom environment's nodes; the kernel's come
    /// zeroed from the node cache).
    #[cfg(all(test, loom))]
    pub(crate) fn new_clean(tag: E::Tag) -> Self {
        IdrNode {
            present: 0,
            full: 0,
            shift: 0,
            slots: core::array::from_fn(|_| E::Slot::null()),
            tag,
        }
    }

    fn is_clean(&self) -> bool {
        self.present == 0
            && self.full == 0
            && self
                .slots
                .iter()
                .all(|s| s.load(Ordering::Relaxed).is_null())
    }
}

/// Slot `i` of `node`, as the writer reads it (under the lock).
///
/// # Safety
/// `node` is a live node.
#[inline(always)]
unsafe fn slot_load<E: IdrEnv>(node: *mut IdrNode<E>, i: usize) -> *mut () {
    // SAFETY: per the contract.
    unsafe { (*node).slots[i].load(Ordering::Relaxed) }
}

/// Stores slot `i` of `node`, with release order so a lockless reader that
/// sees the pointer sees what it points to.
///
/// # Safety
/// `node` is a live node; the caller holds the writer lock.
#[inline(always)]
unsafe fn set_slot<E: IdrEnv>(node: *mut IdrNode<E>, i: usize, v: *mut ()) {
    // SAFETY: per the contract.
    unsafe { (*node).slots[i].store(v, Ordering::Release) }
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
///
/// Ids below [`IDR_ID_LIMIT`] (2^24, so every `pid_max` up to 4,194,304
/// fits) live in a tree of at most [`IDR_MAX_HEIGHT`] levels of
/// [`IdrNode`]s. The tree's shape is a function of the set of ids alone (it
/// grows at the top, shrinks when only slot 0 of the root is used, frees a
/// node as soon as nothing lives below it). An allocated id may hold a null
/// pointer: that is how `alloc_pid` reserves a number before the pid is
/// published.
///
/// An `Idr` changes under `&mut self`; the caller provides the lock
/// (`pidmap_lock` for the pid IDRs). Insertions under that lock cannot
/// wait for memory: [`preload`] says where their nodes come from (the node
/// cache first, the per-CPU pool [`idr_preload`] fills second), and an
/// insertion is all-or-nothing. Node memory, atomics and grace periods
/// come from `E` (the kernel's by default; see `env`).
pub(crate) struct Idr<T, E: IdrEnv = KernelIdrEnv> {
    /// The writers' root.
    root: *mut IdrNode<E>,
    /// The root as lockless readers load it: a heap cell of its own, freed
    /// with the `Idr`.
    published: NonNull<E::Slot>,
    height: u32,
    next: u32,
    nr_ids: u32,
    nr_nodes: u32,
    env: E,
    _entries: PhantomData<*mut T>,
}

impl<T> Default for Idr<T> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the raw pointers are the tree's nodes and the root cell, owned by
// the `Idr`; entries are only stored and handed back, never dereferenced.
unsafe impl<T, E: IdrEnv + Send> Send for Idr<T, E> {}

impl<T> Idr<T> {
    /// Port of `idr_init()`: an empty IDR with its cursor at 0.
    pub(crate) fn new() -> Self {
        Self::with_env(KernelIdrEnv)
    }
}

impl<T, E: IdrEnv> Idr<T, E> {
    /// An empty IDR over `env`, its cursor at 0.
    pub(crate) fn with_env(env: E) -> Self {
        let published = NonNull::from(Box::leak(Box::new(E::Slot::null())));
        Idr {
            root: ptr::null_mut(),
            published,
            height: 0,
            next: 0,
            nr_ids: 0,
            nr_nodes: 0,
            env,
            _entries: PhantomData,
        }
    }

    /// Allocated ids (published or not).
    pub(crate) fn nr_ids(&self) -> u32 {
        self.nr_ids
    }

    /// Nodes in the tree (0 when empty: nothing leaks).
    pub(crate) fn nr_nodes(&self) -> u32 {
        self.nr_nodes
    }

    /// Levels in the tree (0 when empty).
    #[cfg(test)]
    pub(crate) fn height(&self) -> u32 {
        self.height
    }

    /// The lockless readers' view.
    ///
    /// # Safety
    /// The view is used only while this `Idr` lives.
    pub(crate) unsafe fn rcu_view(&self) -> IdrRcu<T, E> {
        IdrRcu::of(self.published)
    }

    /// Makes the writers' root the readers' (before any node it no longer
    /// reaches is released).
    fn publish_root(&mut self) {
        // SAFETY: the cell is ours until drop.
        unsafe { self.published.as_ref() }.store(self.root.cast(), Ordering::Release);
    }

    /// Port of `idr_is_empty()`.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.root.is_null()
    }

    /// Port of `idr_get_cursor()`.
    pub(crate) fn get_cursor(&self) -> u32 {
        self.next
    }

    /// Port of `idr_set_cursor()`.
    pub(crate) fn set_cursor(&mut self, next: u32) {
        self.next = next;
    }

    /// Port of `idr_alloc()`: allocates the lowest free id in `[start, end)`
    /// (`end == 0`: no upper bound but [`IDR_ID_LIMIT`]) and stores `ptr`.
    /// ENOSPC if none is free, ENOMEM if neither the node cache nor the
    /// preload pool can supply the nodes. Does not move the cursor.
    pub(crate) fn alloc(&mut self, ptr: *mut T, start: u32, end: u32) -> Result<u32, Errno> {
        let max = Self::max_of(end);
        let id = self.find_free(start, max).ok_or(Errno::ENOSPC)?;
        self.insert(id, ptr)?;
        Ok(id)
    }

    /// Port of `idr_alloc_cyclic()`: like [`alloc`](Self::alloc), but
    /// searches from the cursor (or `start`, if higher), wraps to `start`
    /// once, and on success moves the cursor past the new id.
    pub(crate) fn alloc_cyclic(&mut self, ptr: *mut T, start: u32, end: u32) -> Result<u32, Errno> {
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
    #[cfg(test)]
    pub(crate) fn find(&self, id: u32) -> *mut T {
        match self.leaf_of(id) {
            // SAFETY: `leaf_of` returns a node of this tree.
            Some((leaf, off)) => unsafe { slot_load(leaf, off).cast() },
            None => ptr::null_mut(),
        }
    }

    /// Whether `id` is allocated (published or reserved).
    #[cfg(test)]
    pub(crate) fn is_allocated(&self, id: u32) -> bool {
        // SAFETY: `leaf_of` returns a node of this tree.
        self.leaf_of(id)
            .is_some_and(|(leaf, off)| unsafe { (*leaf).present } & (1 << off) != 0)
    }

    /// Port of `idr_replace()`: stores `ptr` at the allocated `id`,
    /// returning the old pointer; ENOENT if `id` is not allocated.
    pub(crate) fn replace(&mut self, ptr: *mut T, id: u32) -> Result<*mut T, Errno> {
        let (leaf, off) = self.leaf_of(id).ok_or(Errno::ENOENT)?;
        // SAFETY: a node of this tree, which `&mut self` lets us change;
        // the release store publishes what `ptr` points to.
        unsafe {
            if (*leaf).present & (1 << off) == 0 {
                return Err(Errno::ENOENT);
            }
            Ok((*leaf).slots[off]
                .swap(ptr.cast(), Ordering::Release)
                .cast())
        }
    }

    /// Port of `idr_remove()`: frees `id`, returning its pointer, or `None`
    /// if it was not allocated. Emptied nodes go back to the node cache.
    pub(crate) fn remove(&mut self, id: u32) -> Option<*mut T> {
        if u64::from(id) >= capacity(self.height) {
            return None;
        }
        let mut path = [ptr::null_mut::<IdrNode<E>>(); IDR_MAX_HEIGHT as usize];
        let mut depth = 0;
        let mut node = self.root;
        // SAFETY: every pointer followed is a node of this tree, which
        // `&mut self` lets us change; freed nodes are unlinked first.
        unsafe {
            while (*node).shift > 0 {
                let child = slot_load(node, slot_of(id, (*node).shift)).cast::<IdrNode<E>>();
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
            let value = (*node).slots[off].swap(ptr::null_mut(), Ordering::Relaxed);
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
                    set_slot(parent, slot_of(id, (*parent).shift), ptr::null_mut());
                    (*parent).present &= !pbit;
                    self.release(child);
                } else if !was_full {
                    // Ancestors already know there is room below them.
                    break;
                }
                child = parent;
            }
            if (*self.root).present == 0 {
                let old = self.root;
                self.root = ptr::null_mut();
                self.height = 0;
                self.publish_root();
                self.release(old);
            } else {
                self.shrink();
            }
            self.nr_ids -= 1;
            Some(value.cast())
        }
    }

    /// Port of `idr_for_each()`: visits every allocated id in order with
    /// its pointer (null for reserved ids).
    #[cfg(test)]
    pub(crate) fn for_each(&self, mut f: impl FnMut(u32, *mut T)) {
        if !self.root.is_null() {
            // SAFETY: the root of this tree.
            unsafe { Self::visit(self.root, 0, &mut f) };
        }
    }

    /// # Safety
    /// `node` is a node of this tree.
    #[cfg(test)]
    unsafe fn visit(node: *mut IdrNode<E>, base: u32, f: &mut impl FnMut(u32, *mut T)) {
        // SAFETY: per the contract, and children of tree nodes are nodes.
        unsafe {
            let mut bits = (*node).present;
            while bits != 0 {
                let slot = bits.trailing_zeros();
                bits &= bits - 1;
                let id = base + (slot << (*node).shift);
                let entry = slot_load(node, slot as usize);
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
}

impl<T, E: IdrEnv> Drop for Idr<T, E> {
    fn drop(&mut self) {
        /// # Safety
        /// `node` is an unshared tree node of `env`; its subtree is freed.
        unsafe fn free_subtree<E: IdrEnv>(env: &E, node: *mut IdrNode<E>) {
            // SAFETY: per the contract; children are tree nodes too.
            unsafe {
                let mut bits = (*node).present;
                while bits != 0 {
                    let slot = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    if (*node).shift > 0 {
                        free_subtree(env, self::slot_load(node, slot).cast());
                    }
                    (*node).slots[slot].store(ptr::null_mut(), Ordering::Relaxed);
                }
                (*node).present = 0;
                (*node).full = 0;
                env.free_node(node);
            }
        }
        if !self.root.is_null() {
            // SAFETY: the tree is ours alone and dies here: no reader can
            // hold a view of it any more (`rcu_view`'s contract).
            unsafe { free_subtree(&self.env, self.root) };
        }
        // SAFETY: leaked in `new`, freed once, here.
        drop(unsafe { Box::from_raw(self.published.as_ptr()) });
    }
}

#[cfg(all(test, loom))]
mod loom_env;
#[cfg(all(test, loom))]
mod loom_models;
#[cfg(all(test, loom))]
mod loom_rcu;
#[cfg(test)]
mod tests;
