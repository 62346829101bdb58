//! Intrusive hash-list (`hlist`) heads and nodes, as in Linux's
//! include/linux/list.h: a head is one pointer, a node is `next` plus
//! `pprev` (the address of whatever points at it), so a node unlinks itself
//! in O(1) without knowing its head.
//!
//! `struct pid` keeps one head per pid type and a task embeds one node per
//! type (`pid_links`), so attaching a task to a pid allocates nothing. The
//! lists are protected by an outer lock (Linux: `tasklist_lock` for
//! writers, RCU for readers; we have no RCU, so readers take the lock too).
//! Pointers are atomics only so that unlocked emptiness checks are not data
//! races; every change is `unsafe` and needs that outer lock.

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// Port of `struct hlist_head`.
#[derive(Debug, Default)]
pub(crate) struct HlistHead {
    first: AtomicPtr<HlistNode>,
}

/// Port of `struct hlist_node`, embedded in the object on the list.
#[derive(Debug, Default)]
pub(crate) struct HlistNode {
    next: AtomicPtr<HlistNode>,
    /// The `next` field (or head's `first`) that points at this node; null
    /// when unhashed.
    pprev: AtomicPtr<AtomicPtr<HlistNode>>,
}

impl HlistHead {
    /// Port of `HLIST_HEAD_INIT`: an empty list.
    pub(crate) const fn new() -> Self {
        HlistHead {
            first: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Port of `hlist_empty()`.
    pub(crate) fn is_empty(&self) -> bool {
        self.first.load(Ordering::Relaxed).is_null()
    }

    /// Port of `hlist_add_head()`: links `node` at the front.
    ///
    /// # Safety
    /// The lock protecting this list is held; `node` is valid, not on any
    /// list, and stays valid (and pinned in memory) until unlinked.
    pub(crate) unsafe fn add_head(&self, node: *mut HlistNode) {
        let first = self.first.load(Ordering::Relaxed);
        // SAFETY: `node` is valid per the contract; `first`, if any, is a
        // linked (hence valid) node of this list.
        unsafe {
            (*node).next.store(first, Ordering::Relaxed);
            if !first.is_null() {
                (*first)
                    .pprev
                    .store(&raw const (*node).next as *mut _, Ordering::Relaxed);
            }
            (*node)
                .pprev
                .store(&raw const self.first as *mut _, Ordering::Relaxed);
        }
        self.first.store(node, Ordering::Release);
    }
}

impl HlistNode {
    /// Port of `INIT_HLIST_NODE`: an unhashed node.
    pub(crate) const fn new() -> Self {
        HlistNode {
            next: AtomicPtr::new(ptr::null_mut()),
            pprev: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Port of `hlist_unhashed()`.
    pub(crate) fn is_unhashed(&self) -> bool {
        self.pprev.load(Ordering::Relaxed).is_null()
    }

    /// Port of `hlist_del_init()`: unlinks `node` if it is on a list.
    ///
    /// # Safety
    /// The lock protecting `node`'s list is held and `node` is valid.
    pub(crate) unsafe fn del_init(node: *mut HlistNode) {
        // SAFETY: `node` is valid; if linked, `pprev` points into a valid
        // head or node of the same list, and `next` is a valid node or null.
        unsafe {
            let pprev = (*node).pprev.load(Ordering::Relaxed);
            if pprev.is_null() {
                return;
            }
            let next = (*node).next.load(Ordering::Relaxed);
            (*pprev).store(next, Ordering::Release);
            if !next.is_null() {
                (*next).pprev.store(pprev, Ordering::Relaxed);
            }
            (*node).next.store(ptr::null_mut(), Ordering::Relaxed);
            (*node).pprev.store(ptr::null_mut(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(head: &HlistHead) -> Vec<*mut HlistNode> {
        let mut v = Vec::new();
        let mut n = head.first.load(Ordering::Relaxed);
        while !n.is_null() {
            v.push(n);
            // SAFETY: linked nodes are alive in the test.
            n = unsafe { (*n).next.load(Ordering::Relaxed) };
        }
        v
    }

    #[test]
    fn add_and_delete_anywhere() {
        let head = HlistHead::new();
        let mut nodes: Vec<Box<HlistNode>> = (0..3).map(|_| Box::new(HlistNode::new())).collect();
        let ptrs: Vec<*mut HlistNode> = nodes.iter_mut().map(|b| &mut **b as *mut _).collect();
        assert!(head.is_empty());
        for &p in &ptrs {
            // SAFETY: single-threaded test; nodes outlive the list use.
            unsafe { head.add_head(p) };
        }
        assert_eq!(collect(&head), vec![ptrs[2], ptrs[1], ptrs[0]]);
        // SAFETY: as above.
        unsafe { HlistNode::del_init(ptrs[1]) };
        assert_eq!(collect(&head), vec![ptrs[2], ptrs[0]]);
        // SAFETY: as above.
        unsafe { HlistNode::del_init(ptrs[2]) };
        assert_eq!(collect(&head), vec![ptrs[0]]);
        // SAFETY: as above; deleting twice is harmless.
        unsafe {
            HlistNode::del_init(ptrs[0]);
            HlistNode::del_init(ptrs[0]);
        }
        assert!(head.is_empty());
        assert!(nodes.iter().all(|n| n.is_unhashed()));
    }
}
