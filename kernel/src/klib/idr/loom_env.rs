//! The loom models' environment for the locked IDR: loom's atomics, boxed
//! nodes that remember being freed, and RCU modelled by a count of readers
//! inside read-side sections (`loom_rcu`). A node that leaves the tree is
//! freed after `synchronize_rcu` (the writer waits for the readers inside,
//! then frees), a legal grace period that the kernel's `call_rcu` defers.

use loom::sync::atomic::AtomicPtr;
use std::boxed::Box;
use std::sync::Arc;

use super::IdrNode;
use super::env::{IdrEnv, NodeBatch};
use super::loom_rcu::{LoomNodes, LoomRcu, LoomRcuGuard, LoomTag};
use crate::klib::errno::Errno;

pub(crate) struct LoomIdrEnv {
    rcu: Arc<LoomRcu>,
    nodes: Arc<LoomNodes>,
}

impl LoomIdrEnv {
    /// An environment, its RCU (for the readers' sections) and its node
    /// accounting.
    pub(crate) fn new() -> (Self, Arc<LoomRcu>, Arc<LoomNodes>) {
        let (rcu, nodes) = (LoomRcu::new(), LoomNodes::new());
        let env = LoomIdrEnv {
            rcu: rcu.clone(),
            nodes: nodes.clone(),
        };
        (env, rcu, nodes)
    }

    /// Marks `node` freed and keeps it until the model's nodes are dropped.
    ///
    /// # Safety
    /// `node` came from `take_nodes` and is freed once.
    unsafe fn bury(&self, node: *mut IdrNode<Self>) {
        let addr = node as usize;
        let release = move || {
            // SAFETY: a `Box` leaked by `take_nodes`, dropped once, here.
            drop(unsafe { Box::from_raw(addr as *mut IdrNode<LoomIdrEnv>) });
        };
        // SAFETY: a boxed node, kept allocated until `release` runs; it is
        // freed once (the caller's contract).
        unsafe { self.nodes.bury(&(*node).tag, Box::new(release)) };
    }
}

impl IdrEnv for LoomIdrEnv {
    type Slot = AtomicPtr<()>;
    type Tag = LoomTag;
    type ReadGuard = LoomRcuGuard;

    fn take_nodes(&self, n: usize) -> Result<NodeBatch<Self>, Errno> {
        let mut batch = NodeBatch::new();
        for _ in 0..n {
            self.nodes.born();
            batch.push(Box::leak(Box::new(IdrNode::new_clean(LoomTag::default()))));
        }
        Ok(batch)
    }

    unsafe fn release_node(&self, node: *mut IdrNode<Self>) {
        self.rcu.synchronize();
        // SAFETY: per the trait's contract; the grace period has passed.
        unsafe { self.bury(node) };
    }

    unsafe fn free_node(&self, node: *mut IdrNode<Self>) {
        // SAFETY: per the trait's contract.
        unsafe { self.bury(node) };
    }

    unsafe fn touch(node: *const IdrNode<Self>) {
        // SAFETY: nodes stay allocated until the model ends (buried, not
        // freed), so the tag can be read; whether the node was freed is
        // what the tag says.
        unsafe { (*node).tag.touch() };
    }
}
