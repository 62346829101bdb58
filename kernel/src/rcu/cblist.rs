//! A CPU's RCU callback list (the part of Linux's `rcu_segcblist` this
//! kernel needs): heads queued oldest first, each stamped with the grace
//! period it waits for, so the ready ones are always a prefix.
//!
//! The list is only touched under its lock. An invoker detaches the ready
//! prefix, drops the lock, runs the callbacks, and retakes the lock to
//! count them; while it runs them the list is marked busy and no other
//! invoker detaches from it. So callbacks finish in queue order and
//! `invoked` always counts a finished prefix, which is what `rcu_barrier`
//! waits on.

use core::cell::UnsafeCell;
use core::ptr;

/// A callback's link in its CPU's list (Linux's `struct rcu_head`), embedded
/// in the object it frees.
pub(crate) struct RcuHead {
    next: UnsafeCell<*mut RcuHead>,
    func: UnsafeCell<Option<unsafe fn(*mut RcuHead)>>,
    /// The GP this callback waits for.
    gp: UnsafeCell<u64>,
}

// SAFETY: the fields are only touched by `call_rcu` before the head is
// queued and by the list owner under the list lock afterwards.
unsafe impl Sync for RcuHead {}
// SAFETY: as above; a head is not tied to a thread.
unsafe impl Send for RcuHead {}

impl RcuHead {
    /// An unqueued head.
    pub(crate) const fn new() -> Self {
        RcuHead {
            next: UnsafeCell::new(ptr::null_mut()),
            func: UnsafeCell::new(None),
            gp: UnsafeCell::new(0),
        }
    }
}

impl Default for RcuHead {
    fn default() -> Self {
        Self::new()
    }
}

/// One CPU's queued callbacks, oldest first (so GP numbers never decrease
/// along the list).
pub(crate) struct CbList {
    head: *mut RcuHead,
    tail: *mut RcuHead,
    queued: u64,
    invoked: u64,
    /// Set while an invoker runs callbacks it detached from this list.
    invoking: bool,
}

// SAFETY: the list owns the queued heads until it hands them to their
// callbacks; it is only reached under its lock.
unsafe impl Send for CbList {}

/// A detached run of ready callbacks, owned by one invoker.
pub(crate) struct Batch {
    first: *mut RcuHead,
    len: u64,
}

impl CbList {
    /// An empty list.
    pub(crate) const fn new() -> Self {
        CbList {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            queued: 0,
            invoked: 0,
            invoking: false,
        }
    }

    /// Callbacks ever queued.
    pub(crate) fn queued(&self) -> u64 {
        self.queued
    }

    /// Callbacks that have finished, the oldest `invoked` of those queued.
    pub(crate) fn invoked(&self) -> u64 {
        self.invoked
    }

    /// Callbacks queued and not yet finished.
    pub(crate) fn backlog(&self) -> u64 {
        self.queued - self.invoked
    }

    /// Port of `rcu_segcblist_enqueue()`: stamps `head` with `func` and the
    /// GP it waits for, and appends it; returns the backlog.
    ///
    /// # Safety
    /// `head` is valid and unqueued, and stays valid until `func` runs.
    pub(crate) unsafe fn enqueue(
        &mut self,
        head: *mut RcuHead,
        func: unsafe fn(*mut RcuHead),
        gp: u64,
    ) -> u64 {
        // SAFETY: the caller hands over an unqueued head; the tail is a
        // queued head the list owns.
        unsafe {
            *(*head).next.get() = ptr::null_mut();
            *(*head).func.get() = Some(func);
            *(*head).gp.get() = gp;
            if self.tail.is_null() {
                self.head = head;
            } else {
                *(*self.tail).next.get() = head;
            }
        }
        self.tail = head;
        self.queued += 1;
        self.backlog()
    }

    /// Port of `rcu_segcblist_extract_done_cbs()`: detaches up to `limit`
    /// callbacks whose GP is at most `completed` and marks the list busy
    /// until [`finish`](Self::finish); `None` if none is ready or another
    /// invoker has the list.
    pub(crate) fn take_ready(&mut self, completed: u64, limit: u64) -> Option<Batch> {
        if self.invoking {
            return None;
        }
        let first = self.head;
        let mut last: *mut RcuHead = ptr::null_mut();
        let mut len = 0;
        let mut p = self.head;
        // SAFETY: heads on the list are owned by it.
        while !p.is_null() && len < limit && unsafe { *(*p).gp.get() } <= completed {
            last = p;
            // SAFETY: `p` is a head on the list, as above.
            p = unsafe { *(*p).next.get() };
            len += 1;
        }
        if len == 0 {
            return None;
        }
        self.head = p;
        if p.is_null() {
            self.tail = ptr::null_mut();
        }
        // SAFETY: `last` is the end of the detached prefix.
        unsafe { *(*last).next.get() = ptr::null_mut() };
        self.invoking = true;
        Some(Batch { first, len })
    }

    /// Counts a batch from [`take_ready`](Self::take_ready) whose callbacks
    /// have all run, and frees the list for the next invoker.
    pub(crate) fn finish(&mut self, len: u64) {
        self.invoked += len;
        self.invoking = false;
    }
}

impl Default for CbList {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// Runs the batch's callbacks in order; returns how many ran. Call
    /// with no lock held (a callback may queue more callbacks).
    pub(crate) fn run(self) -> u64 {
        let mut p = self.first;
        while !p.is_null() {
            // SAFETY: the detached heads are ours; read the link and the
            // function before the callback frees the head.
            unsafe {
                let next = *(*p).next.get();
                let func = (*(*p).func.get()).expect("queued rcu_head without a callback");
                func(p);
                p = next;
            }
        }
        self.len
    }
}
