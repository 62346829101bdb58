//! The loom models' environment for the lock-free map: loom's atomics,
//! boxed nodes that remember being freed, and RCU modelled by a count of
//! readers inside read-side sections (`loom_rcu`, shared with the locked
//! IDR's models). A retired node is freed by the grace period run when
//! the next read-side section ends.

use core::ptr::NonNull;
use core::sync::atomic::Ordering::SeqCst;
use loom::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, fence};
use std::boxed::Box;
use std::sync::Arc;

use super::env::LfEnv;
use super::tree::LfNode;
use crate::klib::idr::loom_rcu::{LoomNodes, LoomRcu, LoomRcuGuard, LoomTag};

pub(crate) struct LoomEnv {
    rcu: Arc<LoomRcu>,
    nodes: Arc<LoomNodes>,
}

impl LoomEnv {
    /// An environment and its node accounting.
    pub(crate) fn new() -> (Self, Arc<LoomNodes>) {
        let nodes = LoomNodes::new();
        let env = LoomEnv {
            rcu: LoomRcu::new(),
            nodes: nodes.clone(),
        };
        (env, nodes)
    }
}

/// Marks `node` freed and keeps it until the model's nodes are dropped.
///
/// # Safety
/// `node` came from `LoomEnv::alloc_node` and is freed once.
unsafe fn bury(nodes: &LoomNodes, node: usize) {
    let release = move || {
        // SAFETY: a `Box` leaked by `alloc_node`, dropped once, here.
        drop(unsafe { Box::from_raw(node as *mut LfNode<LoomEnv>) });
    };
    // SAFETY: a boxed node, kept allocated until `release` runs; it is
    // freed once (the caller's contract).
    unsafe { nodes.bury(&(*(node as *const LfNode<LoomEnv>)).tag, Box::new(release)) };
}

impl LfEnv for LoomEnv {
    type Bits = AtomicU64;
    type Slot = AtomicPtr<()>;
    type Word = AtomicU32;
    type Tag = LoomTag;
    type ReadGuard = LoomRcuGuard;

    fn read_lock(&self) -> LoomRcuGuard {
        self.rcu.read_lock()
    }

    fn alloc_node(&self) -> Option<NonNull<LfNode<LoomEnv>>> {
        self.nodes.born();
        Some(NonNull::from(Box::leak(Box::new(LfNode::new_clean()))))
    }

    unsafe fn free_node(&self, node: NonNull<LfNode<LoomEnv>>) {
        // SAFETY: per the trait's contract.
        unsafe { bury(&self.nodes, node.as_ptr() as usize) };
    }

    unsafe fn retire_node(&self, node: NonNull<LfNode<LoomEnv>>) {
        let (nodes, node) = (self.nodes.clone(), node.as_ptr() as usize);
        // SAFETY: per the trait's contract, retired once, freed once.
        self.rcu
            .call_rcu(Box::new(move || unsafe { bury(&nodes, node) }));
    }

    fn touch(node: &LfNode<LoomEnv>) {
        node.tag.touch();
    }

    fn sc_fence() {
        fence(SeqCst);
    }

    fn relax() {
        loom::thread::yield_now();
    }
}
