//! The loom models' environment for the lock-free map: loom's atomics,
//! boxed nodes that remember being freed, and RCU modelled by a count of
//! readers inside read-side sections.
//!
//! A reader enters by incrementing the count, then a SeqCst fence; a
//! grace period (run when the outermost section that saw a node retired
//! ends) is a SeqCst fence, then a wait until no reader is inside. Either
//! the reader's fence comes first, and the waiter sees it inside, or the
//! waiter's does, and the reader's walk sees the unlink: so a node is
//! marked freed only after every walk that could reach it ended. Marking
//! is a write to a loom `UnsafeCell` that every walk reads when it reaches
//! the node, so loom reports any reach not ordered before the free. Freed
//! nodes are kept until the environment is dropped, so a bug shows up as a
//! report, not as memory corruption.

use core::ptr::NonNull;
use core::sync::atomic::Ordering::SeqCst;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, fence};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize as StdCount, Ordering};
use std::vec::Vec;

use super::env::LfEnv;
use super::tree::LfNode;

/// Runs a loom model with a preemption bound (default 3, or
/// `LOOM_MAX_PREEMPTIONS`): exhaustive over the interleavings that matter
/// for two threads, in seconds.
pub(crate) fn lf_loom_model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    // Walks and spin-waits take many steps per thread.
    builder.max_branches = 100_000;
    builder.check(f);
}

/// A node's liveness, written once when it is freed.
pub(crate) struct LoomTag {
    freed: UnsafeCell<bool>,
}

impl Default for LoomTag {
    fn default() -> Self {
        LoomTag {
            freed: UnsafeCell::new(false),
        }
    }
}

// SAFETY: every access to `freed` goes through loom's `UnsafeCell`, which
// checks that conflicting accesses are ordered (that is the point).
unsafe impl Sync for LoomTag {}

/// Node accounting, shared with the model after the map is gone.
#[derive(Default)]
pub(crate) struct LoomCounts {
    allocated: StdCount,
    freed: StdCount,
}

impl LoomCounts {
    /// Nodes allocated and not yet freed.
    pub(crate) fn live(&self) -> usize {
        self.allocated.load(Ordering::SeqCst) - self.freed.load(Ordering::SeqCst)
    }
}

/// The modelled RCU state.
struct Rcu {
    readers: AtomicUsize,
    /// Retired nodes (addresses) waiting for a grace period.
    retired: Mutex<Vec<usize>>,
}

pub(crate) struct LoomEnv {
    rcu: std::sync::Arc<Rcu>,
    counts: std::sync::Arc<LoomCounts>,
    /// Freed nodes (addresses), dropped with the environment.
    graveyard: std::sync::Arc<Mutex<Vec<usize>>>,
}

impl LoomEnv {
    /// An environment and its node accounting.
    pub(crate) fn new() -> (Self, std::sync::Arc<LoomCounts>) {
        let counts = std::sync::Arc::new(LoomCounts::default());
        let env = LoomEnv {
            rcu: std::sync::Arc::new(Rcu {
                readers: AtomicUsize::new(0),
                retired: Mutex::new(Vec::new()),
            }),
            counts: counts.clone(),
            graveyard: std::sync::Arc::new(Mutex::new(Vec::new())),
        };
        (env, counts)
    }
}

/// Marks `node` freed and buries it.
///
/// # Safety
/// `node` came from `LoomEnv::alloc_node` and is freed once.
unsafe fn bury(node: usize, counts: &LoomCounts, graveyard: &Mutex<Vec<usize>>) {
    let node = node as *const LfNode<LoomEnv>;
    // SAFETY: a boxed node, kept allocated until the graveyard drops.
    unsafe { (*node).tag.freed.with_mut(|f| *f = true) };
    counts.freed.fetch_add(1, Ordering::SeqCst);
    graveyard.lock().unwrap().push(node as usize);
}

impl Drop for LoomEnv {
    fn drop(&mut self) {
        for node in self.graveyard.lock().unwrap().drain(..) {
            // SAFETY: every buried node was a `Box` leaked by `alloc_node`
            // and is dropped once, here, after every thread has ended.
            drop(unsafe { Box::from_raw(node as *mut LfNode<LoomEnv>) });
        }
    }
}

/// A modelled read-side section; its end may run a grace period.
pub(crate) struct LoomGuard {
    rcu: std::sync::Arc<Rcu>,
    counts: std::sync::Arc<LoomCounts>,
    graveyard: std::sync::Arc<Mutex<Vec<usize>>>,
}

impl Drop for LoomGuard {
    fn drop(&mut self) {
        self.rcu.readers.fetch_sub(1, SeqCst);
        let pending = core::mem::take(&mut *self.rcu.retired.lock().unwrap());
        if pending.is_empty() {
            return;
        }
        fence(SeqCst);
        while self.rcu.readers.load(SeqCst) != 0 {
            loom::thread::yield_now();
        }
        for node in pending {
            // SAFETY: retired nodes came from `alloc_node`; each is retired
            // once and taken off the list once.
            unsafe { bury(node, &self.counts, &self.graveyard) };
        }
    }
}

impl LfEnv for LoomEnv {
    type Bits = AtomicU64;
    type Slot = AtomicPtr<()>;
    type Word = AtomicU32;
    type Tag = LoomTag;
    type ReadGuard = LoomGuard;

    fn read_lock(&self) -> LoomGuard {
        self.rcu.readers.fetch_add(1, SeqCst);
        fence(SeqCst);
        LoomGuard {
            rcu: self.rcu.clone(),
            counts: self.counts.clone(),
            graveyard: self.graveyard.clone(),
        }
    }

    fn alloc_node(&self) -> Option<NonNull<LfNode<LoomEnv>>> {
        self.counts.allocated.fetch_add(1, Ordering::SeqCst);
        Some(NonNull::from(Box::leak(Box::new(LfNode::new_clean()))))
    }

    unsafe fn free_node(&self, node: NonNull<LfNode<LoomEnv>>) {
        // SAFETY: per the trait's contract.
        unsafe { bury(node.as_ptr() as usize, &self.counts, &self.graveyard) };
    }

    unsafe fn retire_node(&self, node: NonNull<LfNode<LoomEnv>>) {
        self.rcu
            .retired
            .lock()
            .unwrap()
            .push(node.as_ptr() as usize);
    }

    fn touch(node: &LfNode<LoomEnv>) {
        // SAFETY: a read through loom's checked cell.
        node.tag
            .freed
            .with(|f| assert!(!unsafe { *f }, "a walk reached a freed node"));
    }

    fn sc_fence() {
        fence(SeqCst);
    }

    fn relax() {
        loom::thread::yield_now();
    }
}
