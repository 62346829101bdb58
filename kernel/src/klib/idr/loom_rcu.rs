//! RCU and node lifetimes as the loom models of both maps (the locked
//! IDR's lockless readers, the lock-free map) see them.
//!
//! A reader enters a read-side section by incrementing a count of readers,
//! then a SeqCst fence; a grace period is a SeqCst fence, then a wait
//! until no reader is inside. Either the reader's fence comes first, and
//! the waiter sees it inside, or the waiter's does, and the reader's walk
//! sees the unlink: so a node is marked freed only after every walk that
//! could reach it ended. Marking is a write to a loom `UnsafeCell` in the
//! node's [`LoomTag`] that every walk reads when it reaches the node, so
//! loom reports any reach not ordered before the free. Freed nodes are
//! kept until the model's [`LoomNodes`] is dropped, so a bug shows up as a
//! report, not as memory corruption.

use core::sync::atomic::Ordering::SeqCst;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, fence};
use std::boxed::Box;
use std::sync::atomic::{AtomicUsize as StdCount, Ordering};
use std::sync::{Arc, Mutex};
use std::vec::Vec;

/// Work deferred to after a grace period, or a buried node's deleter.
type Deferred = Box<dyn FnOnce() + Send>;

/// The modelled RCU state.
pub(crate) struct LoomRcu {
    readers: AtomicUsize,
    /// Callbacks waiting for a grace period.
    pending: Mutex<Vec<Deferred>>,
}

impl LoomRcu {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(LoomRcu {
            readers: AtomicUsize::new(0),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// Enters a read-side section (`rcu_read_lock`).
    pub(crate) fn read_lock(self: &Arc<Self>) -> LoomRcuGuard {
        self.readers.fetch_add(1, SeqCst);
        fence(SeqCst);
        LoomRcuGuard { rcu: self.clone() }
    }

    /// Runs `f` after a grace period (`call_rcu`): when the next read-side
    /// section ends, once no reader is inside.
    pub(crate) fn call_rcu(&self, f: Deferred) {
        self.pending.lock().unwrap().push(f);
    }

    /// Waits for a grace period (`synchronize_rcu`); the caller is not in
    /// a read-side section.
    pub(crate) fn synchronize(&self) {
        fence(SeqCst);
        while self.readers.load(SeqCst) != 0 {
            loom::thread::yield_now();
        }
    }
}

/// A modelled read-side section; its end may run a grace period.
pub(crate) struct LoomRcuGuard {
    rcu: Arc<LoomRcu>,
}

impl Drop for LoomRcuGuard {
    fn drop(&mut self) {
        self.rcu.readers.fetch_sub(1, SeqCst);
        let pending = core::mem::take(&mut *self.rcu.pending.lock().unwrap());
        if pending.is_empty() {
            return;
        }
        self.rcu.synchronize();
        for f in pending {
            f();
        }
    }
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

impl LoomTag {
    /// A walk reached the node: it must not be freed, and loom checks
    /// that the free (if any) is not concurrent with this read.
    pub(crate) fn touch(&self) {
        // SAFETY: a read through loom's checked cell.
        self.freed
            .with(|f| assert!(!unsafe { *f }, "a walk reached a freed node"));
    }
}

/// The nodes of one model: how many were allocated and freed, and the
/// freed ones' memory, released when the model drops this.
#[derive(Default)]
pub(crate) struct LoomNodes {
    allocated: StdCount,
    freed: StdCount,
    graves: Mutex<Vec<Deferred>>,
}

impl LoomNodes {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Nodes allocated and not yet freed.
    pub(crate) fn live(&self) -> usize {
        self.allocated.load(Ordering::SeqCst) - self.freed.load(Ordering::SeqCst)
    }

    /// Counts a new node.
    pub(crate) fn born(&self) {
        self.allocated.fetch_add(1, Ordering::SeqCst);
    }

    /// Marks the node whose tag is `tag` freed and keeps its memory until
    /// this drops; `release` then frees it.
    ///
    /// # Safety
    /// The node is freed once, and `release` frees it (once) and nothing
    /// else.
    pub(crate) unsafe fn bury(&self, tag: &LoomTag, release: Deferred) {
        // SAFETY: a write through loom's checked cell.
        tag.freed.with_mut(|f| unsafe { *f = true });
        self.freed.fetch_add(1, Ordering::SeqCst);
        self.graves.lock().unwrap().push(release);
    }
}

impl Drop for LoomNodes {
    fn drop(&mut self) {
        for release in self.graves.get_mut().unwrap().drain(..) {
            release();
        }
    }
}
