//! What the locked IDR runs on: its atomic pointers, node memory and grace
//! periods, behind one trait ([`IdrEnv`]).
//!
//! The tree code (insertion, removal, growing and shrinking under the
//! writers' lock, and the lockless readers' walk) is written once over
//! this trait. [`KernelIdrEnv`] is what the kernel and the host tests run:
//! `core` atomics, nodes from the node cache and the preload pools
//! ([`preload`](super::preload)), `call_rcu` for nodes that leave the
//! tree. The loom models instantiate the same tree code with loom's
//! atomics, boxed nodes that remember being freed and a modelled grace
//! period, so loom explores the code the kernel runs. [`KernelIdrEnv`] is
//! a zero-sized type whose methods forward to the kernel's node functions,
//! so its instantiation costs nothing over calling them directly.

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use super::{IDR_PRELOAD_SIZE, IdrNode};
use crate::klib::errno::Errno;
use crate::rcu::{RcuHead, RcuReadGuard};
use crate::sync::word::forward_atomic;

/// An atomic pointer slot: a child node or an entry (both IDRs), a
/// published root.
pub(crate) trait SlotPtr: Send + Sync {
    fn null() -> Self;
    fn load(&self, order: Ordering) -> *mut ();
    fn store(&self, p: *mut (), order: Ordering);
    fn swap(&self, p: *mut (), order: Ordering) -> *mut ();
    fn compare_exchange(
        &self,
        cur: *mut (),
        new: *mut (),
        ok: Ordering,
        err: Ordering,
    ) -> Result<*mut (), *mut ()>;
}

/// Implements [`SlotPtr`] for the atomic pointer type `$ty`.
macro_rules! impl_slot_ptr {
    ($ty:ty) => {
        impl SlotPtr for $ty {
            #[inline(always)]
            fn null() -> Self {
                <$ty>::new(ptr::null_mut())
            }
            forward_atomic!($ty, *mut () {
                load load,
                store store,
                rmw swap,
                cas compare_exchange,
            });
        }
    };
}

impl_slot_ptr!(AtomicPtr<()>);
#[cfg(all(test, loom))]
impl_slot_ptr!(loom::sync::atomic::AtomicPtr<()>);

/// What the IDR needs from the machine it runs on. See the module header.
pub(crate) trait IdrEnv: Sized {
    /// A node's slots and the published root.
    type Slot: SlotPtr;
    /// Per-node data of the environment (the kernel's `rcu_head`).
    type Tag;
    /// Proof of a read-side section.
    type ReadGuard;

    /// The `n` clean nodes one insertion needs, all or none (ENOMEM).
    fn take_nodes(&self, n: usize) -> Result<NodeBatch<Self>, Errno>;

    /// Frees a node that left the tree once a grace period has passed.
    ///
    /// # Safety
    /// `node` came from [`take_nodes`](Self::take_nodes), is unlinked from
    /// its tree and no longer its published root, and nothing but readers
    /// that started before uses it again.
    unsafe fn release_node(&self, node: *mut IdrNode<Self>);

    /// Frees a clean node no reader can reach, at once.
    ///
    /// # Safety
    /// `node` came from [`take_nodes`](Self::take_nodes), is clean (no
    /// entries, no bits), is in no tree, and is not used again.
    unsafe fn free_node(&self, node: *mut IdrNode<Self>);

    /// Called on every node a lockless reader reaches (loom: a
    /// use-after-free check). A raw pointer: the writer may be changing
    /// the node's bitmaps meanwhile.
    ///
    /// # Safety
    /// `node` came from [`take_nodes`](Self::take_nodes) and was reached
    /// inside a read-side section.
    #[inline(always)]
    unsafe fn touch(_node: *const IdrNode<Self>) {}
}

/// The kernel's environment: `core` atomics, nodes from the node cache
/// and the preload pools, RCU.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KernelIdrEnv;

impl IdrEnv for KernelIdrEnv {
    type Slot = AtomicPtr<()>;
    type Tag = RcuHead;
    type ReadGuard = RcuReadGuard;

    #[inline]
    fn take_nodes(&self, n: usize) -> Result<NodeBatch<Self>, Errno> {
        NodeBatch::take(n)
    }

    #[inline]
    unsafe fn release_node(&self, node: *mut IdrNode<Self>) {
        // SAFETY: the caller's contract is `node_release`'s.
        unsafe { super::preload::node_release(node) };
    }

    #[inline]
    unsafe fn free_node(&self, node: *mut IdrNode<Self>) {
        // SAFETY: the caller's contract is `idr_node_free`'s.
        unsafe { super::preload::idr_node_free(node) };
    }
}

/// The nodes one insertion needs, all gathered before the tree changes so
/// that a failure leaves the tree as it was.
pub(crate) struct NodeBatch<E: IdrEnv> {
    pub(super) nr: usize,
    pub(super) nodes: [*mut IdrNode<E>; IDR_PRELOAD_SIZE],
}

impl<E: IdrEnv> NodeBatch<E> {
    /// An empty batch.
    #[inline]
    pub(super) fn new() -> Self {
        NodeBatch {
            nr: 0,
            nodes: [ptr::null_mut(); IDR_PRELOAD_SIZE],
        }
    }

    /// Adds a clean node the batch now owns.
    #[inline]
    pub(super) fn push(&mut self, node: *mut IdrNode<E>) {
        self.nodes[self.nr] = node;
        self.nr += 1;
    }

    /// Hands out a node for the level whose slots cover `shift` id bits.
    #[inline]
    pub(super) fn pop(&mut self, shift: u32) -> *mut IdrNode<E> {
        assert!(self.nr > 0, "IDR node batch miscounted");
        self.nr -= 1;
        let node = self.nodes[self.nr];
        // SAFETY: batch nodes are valid, clean and owned by the batch.
        unsafe {
            // A stale child pointer in a new node would be followed.
            assert!((*node).is_clean(), "IDR node batch holds a used node");
            (*node).shift = shift;
        }
        node
    }
}
