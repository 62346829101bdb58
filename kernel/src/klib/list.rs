//! Intrusive circular doubly linked lists (`list_head`), as in Linux's
//! include/linux/list.h: one type serves as the head and as the node
//! embedded in each object, so a list keeps its order, takes new entries
//! at the tail in O(1) and moves a whole list onto the end of another in
//! O(1) (`list_splice_tail_init`).
//!
//! A task's `children` and a thread group's `thread_head` are such lists:
//! `do_wait` walks children oldest first and reparenting appends orphans
//! in their order, which a singly linked `hlist` (new entries at the
//! front) cannot do.
//!
//! Linux initialises every head to point at itself (`INIT_LIST_HEAD`);
//! here a head is built by a `const fn` before it has an address, so a
//! null `next` also means empty, and the first `add_tail` makes the head
//! point at itself. Heads and linked nodes must not move. The lists are
//! protected by an outer lock (`tasklist_lock` for both of ours); the
//! pointers are atomics only so that unlocked emptiness checks are not
//! data races, and every change is `unsafe` and needs that lock.

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// Port of `struct list_head`: a list's head, or a node on some list.
#[derive(Debug, Default)]
pub(crate) struct ListHead {
    next: AtomicPtr<ListHead>,
    prev: AtomicPtr<ListHead>,
}

impl ListHead {
    /// An empty head, or a node on no list.
    pub(crate) const fn new() -> Self {
        ListHead {
            next: AtomicPtr::new(ptr::null_mut()),
            prev: AtomicPtr::new(ptr::null_mut()),
        }
    }

    fn as_mut_ptr(&self) -> *mut ListHead {
        ptr::from_ref(self).cast_mut()
    }

    /// Port of `list_empty()` for a head; for a node: whether it is on no
    /// list.
    pub(crate) fn is_empty(&self) -> bool {
        let next = self.next.load(Ordering::Relaxed);
        next.is_null() || next == self.as_mut_ptr()
    }

    /// The first node, null if the list is empty.
    pub(crate) fn first(&self) -> *mut ListHead {
        if self.is_empty() {
            ptr::null_mut()
        } else {
            self.next.load(Ordering::Relaxed)
        }
    }

    /// The node after `node` on this list, null if `node` is the last.
    ///
    /// # Safety
    /// `node` is on this list, under the lock that protects it.
    pub(crate) unsafe fn next_of(&self, node: *const ListHead) -> *mut ListHead {
        // SAFETY: `node` is a linked, hence valid, node of this list.
        let next = unsafe { (*node).next.load(Ordering::Relaxed) };
        if next == self.as_mut_ptr() {
            ptr::null_mut()
        } else {
            next
        }
    }

    /// Makes a head that was never used point at itself.
    fn init_once(&self) {
        if self.next.load(Ordering::Relaxed).is_null() {
            self.next.store(self.as_mut_ptr(), Ordering::Relaxed);
            self.prev.store(self.as_mut_ptr(), Ordering::Relaxed);
        }
    }

    /// Port of `list_add_tail()`: links `node` as the last entry.
    ///
    /// # Safety
    /// The lock protecting this list is held; `node` is valid, on no list,
    /// and stays valid (and pinned in memory) until unlinked; `self` is
    /// pinned while the list is not empty.
    pub(crate) unsafe fn add_tail(&self, node: *mut ListHead) {
        self.init_once();
        let head = self.as_mut_ptr();
        let last = self.prev.load(Ordering::Relaxed);
        // SAFETY: `node` is valid per the contract; `last` is the head or
        // a linked node of this list.
        unsafe {
            (*node).next.store(head, Ordering::Relaxed);
            (*node).prev.store(last, Ordering::Relaxed);
            (*last).next.store(node, Ordering::Release);
        }
        self.prev.store(node, Ordering::Relaxed);
    }

    /// Port of `list_del_init()`: unlinks `node` if it is on a list.
    ///
    /// # Safety
    /// The lock protecting `node`'s list is held and `node` is valid.
    pub(crate) unsafe fn del_init(node: *mut ListHead) {
        // SAFETY: `node` is valid; if linked, its neighbours are the head
        // or nodes of the same list, valid under the lock.
        unsafe {
            if (*node).is_empty() {
                return;
            }
            let next = (*node).next.load(Ordering::Relaxed);
            let prev = (*node).prev.load(Ordering::Relaxed);
            (*next).prev.store(prev, Ordering::Relaxed);
            (*prev).next.store(next, Ordering::Release);
            (*node).next.store(ptr::null_mut(), Ordering::Relaxed);
            (*node).prev.store(ptr::null_mut(), Ordering::Relaxed);
        }
    }

    /// Port of `list_splice_tail_init(list, self)`: moves every entry of
    /// `list`, in order, to the end of this list; `list` is left empty.
    ///
    /// # Safety
    /// The locks protecting both lists are held; `self` is pinned while
    /// its list is not empty.
    pub(crate) unsafe fn splice_tail_init(&self, list: &ListHead) {
        if list.is_empty() {
            return;
        }
        self.init_once();
        let head = self.as_mut_ptr();
        let first = list.next.load(Ordering::Relaxed);
        let last = list.prev.load(Ordering::Relaxed);
        let at = self.prev.load(Ordering::Relaxed);
        // SAFETY: `first` and `last` are linked nodes of `list`, `at` the
        // head or the last node of this list, all valid under the locks.
        unsafe {
            (*first).prev.store(at, Ordering::Relaxed);
            (*last).next.store(head, Ordering::Relaxed);
            (*at).next.store(first, Ordering::Release);
        }
        self.prev.store(last, Ordering::Relaxed);
        list.next.store(ptr::null_mut(), Ordering::Relaxed);
        list.prev.store(ptr::null_mut(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(head: &ListHead) -> Vec<*mut ListHead> {
        let mut v = Vec::new();
        let mut n = head.first();
        while !n.is_null() {
            v.push(n);
            // SAFETY: linked nodes are alive in the test.
            n = unsafe { head.next_of(n) };
        }
        v
    }

    /// The same walk backwards, through `prev`: both directions agree.
    fn collect_back(head: &ListHead) -> Vec<*mut ListHead> {
        let mut v = Vec::new();
        if head.is_empty() {
            return v;
        }
        let mut n = head.prev.load(Ordering::Relaxed);
        while n != head.as_mut_ptr() {
            v.push(n);
            // SAFETY: as above.
            n = unsafe { (*n).prev.load(Ordering::Relaxed) };
        }
        v.reverse();
        v
    }

    /// `n` unlinked nodes (a Vec that never grows, so they stay put) and
    /// their addresses.
    fn nodes(n: usize) -> (Vec<ListHead>, Vec<*mut ListHead>) {
        let mut nodes: Vec<ListHead> = (0..n).map(|_| ListHead::new()).collect();
        let base = nodes.as_mut_ptr();
        // SAFETY: each index is within the Vec.
        let ptrs = (0..n).map(|i| unsafe { base.add(i) }).collect();
        (nodes, ptrs)
    }

    #[test]
    fn add_tail_keeps_order_and_delete_works_anywhere() {
        let head = Box::new(ListHead::new());
        let (nodes, p) = nodes(4);
        assert!(head.is_empty() && head.first().is_null());
        for &n in &p {
            // SAFETY: single-threaded test; nodes outlive the list use.
            unsafe { head.add_tail(n) };
        }
        assert_eq!(collect(&head), p);
        assert_eq!(collect_back(&head), p);
        // SAFETY: as above.
        unsafe { ListHead::del_init(p[1]) };
        assert_eq!(collect(&head), vec![p[0], p[2], p[3]]);
        // SAFETY: as above: first, last, then the rest.
        unsafe {
            ListHead::del_init(p[0]);
            ListHead::del_init(p[3]);
        }
        assert_eq!(collect(&head), vec![p[2]]);
        assert_eq!(collect_back(&head), vec![p[2]]);
        // SAFETY: as above; deleting twice is harmless.
        unsafe {
            ListHead::del_init(p[2]);
            ListHead::del_init(p[2]);
        }
        assert!(head.is_empty());
        assert!(nodes.iter().all(|n| n.is_empty()));
        // An emptied head takes entries again.
        // SAFETY: as above.
        unsafe { head.add_tail(p[3]) };
        assert_eq!(collect(&head), vec![p[3]]);
        // SAFETY: as above.
        unsafe { ListHead::del_init(p[3]) };
    }

    #[test]
    fn splice_tail_appends_in_order_and_empties_the_source() {
        let (a, b) = (Box::new(ListHead::new()), Box::new(ListHead::new()));
        let (_nodes, p) = nodes(5);
        // SAFETY: single-threaded test; nodes outlive the list use.
        unsafe {
            a.add_tail(p[0]);
            a.add_tail(p[1]);
            b.add_tail(p[2]);
            b.add_tail(p[3]);
            b.add_tail(p[4]);
            a.splice_tail_init(&b);
        }
        assert_eq!(collect(&a), p);
        assert_eq!(collect_back(&a), p);
        assert!(b.is_empty() && collect(&b).is_empty());
        // Splicing an empty list changes nothing; splicing into an empty
        // (never used) head moves everything.
        let c = Box::new(ListHead::new());
        // SAFETY: as above.
        unsafe {
            a.splice_tail_init(&b);
            c.splice_tail_init(&a);
        }
        assert!(a.is_empty());
        assert_eq!(collect(&c), p);
        assert_eq!(collect_back(&c), p);
        // SAFETY: as above; the source takes entries again.
        unsafe {
            ListHead::del_init(p[2]);
            a.add_tail(p[2]);
        }
        assert_eq!(collect(&a), vec![p[2]]);
        assert_eq!(collect(&c), vec![p[0], p[1], p[3], p[4]]);
        for &n in &p {
            // SAFETY: as above.
            unsafe { ListHead::del_init(n) };
        }
        assert!(a.is_empty() && c.is_empty());
    }
}
