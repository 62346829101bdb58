//! The tree under the IDR (Linux's lib/radix-tree.c as lib/idr.c uses
//! it): finding a free id with the `full` bitmaps (`idr_get_free`),
//! inserting with the tree grown at the top (`radix_tree_extend`) and the
//! path below filled from a batch gathered first, shrinking it
//! (`radix_tree_shrink`), and handing nodes that leave it to a grace
//! period. The writers hold the IDR's lock; every change that a lockless
//! reader may see is ordered for it as [`rcu_view`](super::rcu_view)
//! describes.

use core::ptr;

use super::{
    IDR_BITS, IDR_ID_LIMIT, IDR_MAX_HEIGHT, Idr, IdrEnv, IdrNode, capacity, height_for, set_slot,
    slot_load, slot_of,
};
use crate::klib::errno::Errno;

impl<T, E: IdrEnv> Idr<T, E> {
    /// The leaf holding `id`'s slot, if the tree has one.
    pub(super) fn leaf_of(&self, id: u32) -> Option<(*mut IdrNode<E>, usize)> {
        if u64::from(id) >= capacity(self.height) {
            return None;
        }
        let mut node = self.root;
        // SAFETY: nodes of this tree, read only.
        unsafe {
            while (*node).shift > 0 {
                node = slot_load(node, slot_of(id, (*node).shift)).cast();
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
    pub(super) fn find_free(&self, start: u32, max: u32) -> Option<u32> {
        if start > max {
            return None;
        }
        let cap = capacity(self.height);
        if u64::from(start) >= cap {
            // Beyond the tree: free; the insertion grows the tree.
            return Some(start);
        }
        let mut stack = [(ptr::null_mut::<IdrNode<E>>(), 0u64); IDR_MAX_HEIGHT as usize];
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
                let child = slot_load(node, slot as usize).cast::<IdrNode<E>>();
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
    pub(super) fn nodes_needed(&self, id: u32) -> usize {
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
                let child = slot_load(node, slot_of(id, (*node).shift)).cast::<IdrNode<E>>();
                if child.is_null() {
                    return ((*node).shift / IDR_BITS) as usize;
                }
                node = child;
            }
        }
        0
    }

    /// Stores `value` at the free id `id`, gathering the nodes it needs
    /// before changing the tree (all or nothing).
    pub(super) fn insert(&mut self, id: u32, value: *mut T) -> Result<(), Errno> {
        assert!(id < IDR_ID_LIMIT, "IDR id {id} beyond the tree's reach");
        let need = self.nodes_needed(id);
        let mut batch = self.env.take_nodes(need)?;
        self.nr_nodes += need as u32;
        let want = height_for(id);
        // SAFETY: nodes of this tree or fresh from the batch, changed under
        // `&mut self`.
        unsafe {
            let root = self.root;
            if self.root.is_null() {
                self.root = batch.pop(IDR_BITS * (want - 1));
                self.height = want;
            }
            while self.height < want {
                let top = batch.pop(IDR_BITS * self.height);
                set_slot(top, 0, self.root.cast());
                (*top).present = 1;
                (*top).full = u64::from((*self.root).full == u64::MAX);
                self.root = top;
                self.height += 1;
            }
            if self.root != root {
                // The new top is complete: readers may start there.
                self.publish_root();
            }
            let mut path = [ptr::null_mut::<IdrNode<E>>(); IDR_MAX_HEIGHT as usize];
            let mut depth = 0;
            let mut node = self.root;
            loop {
                let shift = (*node).shift;
                let off = slot_of(id, shift);
                if shift == 0 {
                    // Overwriting would lose the entry there for good.
                    assert!((*node).present & (1 << off) == 0, "IDR id {id} is taken");
                    set_slot(node, off, value.cast());
                    (*node).present |= 1 << off;
                    (*node).full |= 1 << off;
                    break;
                }
                let mut child = slot_load(node, off).cast::<IdrNode<E>>();
                if child.is_null() {
                    child = batch.pop(shift - IDR_BITS);
                    set_slot(node, off, child.cast());
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
        assert_eq!(batch.nr, 0, "IDR insertion miscounted its nodes");
        self.nr_ids += 1;
        Ok(())
    }

    /// Port of `radix_tree_shrink()`: drops roots whose only child is in
    /// slot 0. The old root keeps its slot 0 until its grace period ends,
    /// for readers still on it (Linux leaves `RADIX_TREE_RETRY` there).
    ///
    /// # Safety
    /// The tree is not empty.
    pub(super) unsafe fn shrink(&mut self) {
        // SAFETY: the root and its slot-0 child are nodes of this tree.
        unsafe {
            while self.height > 1 && (*self.root).present == 1 {
                let old = self.root;
                self.root = slot_load(old, 0).cast();
                (*old).present = 0;
                (*old).full = 0;
                self.height -= 1;
                self.publish_root();
                self.release(old);
            }
        }
    }

    /// A node leaves the tree (already unlinked and, if it was the root,
    /// no longer published): it goes back to the cache after a grace
    /// period.
    pub(super) fn release(&mut self, node: *mut IdrNode<E>) {
        self.nr_nodes -= 1;
        // SAFETY: unlinked from this tree; only readers that started before
        // can reach it, and the grace period waits for them.
        unsafe { self.env.release_node(node) };
    }
}
