//! The IDR as lockless readers see it (Linux's `idr_find` under
//! `rcu_read_lock`, as `find_pid_ns` calls it).
//!
//! Readers take no lock, so the writers (under theirs) change the tree so
//! that every step of a walk stays valid: the root lives in a heap cell
//! outside the `Idr` (a reader never touches memory a writer's `&mut Idr`
//! covers), slots are atomic pointers stored with release order once what
//! they point to is ready, a node's `shift` never changes while it is in
//! the tree, and a node leaves the tree for the node cache only after a
//! grace period (`radix_tree_node_rcu_free`). A grown root is published
//! only once its slot 0 holds the old root; a root dropped by a shrink
//! keeps its slot 0 until its grace period ends, so a reader that started
//! on it still reaches the ids below. The loom models
//! (`loom_models.rs`) check this walk against growth, shrinking and node
//! frees.

use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;

use super::{IDR_BITS, IdrEnv, IdrNode, KernelIdrEnv, SlotPtr, slot_of};

/// A lockless reader's view of an [`Idr`](super::Idr) (see the module
/// header).
pub(crate) struct IdrRcu<T, E: IdrEnv = KernelIdrEnv> {
    root: NonNull<E::Slot>,
    _entries: PhantomData<*mut T>,
}

impl<T, E: IdrEnv> Clone for IdrRcu<T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, E: IdrEnv> Copy for IdrRcu<T, E> {}

// SAFETY: the view only loads atomics and reads node fields that do not
// change while a reader can reach the node (see the module header).
unsafe impl<T, E: IdrEnv> Send for IdrRcu<T, E> {}
// SAFETY: as above.
unsafe impl<T, E: IdrEnv> Sync for IdrRcu<T, E> {}

impl<T, E: IdrEnv> IdrRcu<T, E> {
    /// The view of the IDR whose published root is `root`.
    pub(super) fn of(root: NonNull<E::Slot>) -> Self {
        IdrRcu {
            root,
            _entries: PhantomData,
        }
    }

    /// Port of `idr_find()` for readers without the lock: the pointer
    /// published at `id` when the tree was looked at, or null. An id added
    /// or removed meanwhile may or may not be seen; what is returned was
    /// published, and a node reached stays valid until `_rcu` ends.
    pub(crate) fn find(&self, id: u32, _rcu: &E::ReadGuard) -> *mut T {
        // SAFETY: the cell lives as long as the `Idr` (the view's contract);
        // nodes reachable from it leave for the cache only after a grace
        // period, which waits for the read-side section `_rcu` proves.
        unsafe {
            let mut node = self
                .root
                .as_ref()
                .load(Ordering::Acquire)
                .cast::<IdrNode<E>>();
            if node.is_null() {
                return ptr::null_mut();
            }
            E::touch(node);
            if u64::from(id) >= 1u64 << ((*node).shift + IDR_BITS) {
                return ptr::null_mut();
            }
            loop {
                let shift = (*node).shift;
                let next = (*node).slots[slot_of(id, shift)].load(Ordering::Acquire);
                if shift == 0 || next.is_null() {
                    return next.cast();
                }
                node = next.cast();
                E::touch(node);
            }
        }
    }
}
