//! `tasklist_lock` and what it protects: each task's process links (its
//! pids, parent, thread group), the `children`/`sibling` lists and each
//! group's `thread_head`/`thread_node` list.
//!
//! The guard is the proof: [`Task::links`] needs a read or write guard of
//! `tasklist_lock` and hands out `&ProcLinks`; [`Task::links_mut`] needs the
//! write guard borrowed mutably, so only one task's links are writable at a
//! time and no reader can hold them meanwhile. The lock itself is private
//! to this file, so no other lock's guard can stand in for it.

use alloc::sync::Arc;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;

use super::Task;
use crate::klib::aligned::CacheAligned;
use crate::klib::list::ListHead;
use crate::klib::lockctx::{self, Tracked};
use crate::pid::namespace::{PidNamespace, init_pid_ns};
use crate::pid::{PerPidType, PidRef, PidType};
use crate::sync::{RwLockIrq, RwLockIrqReadGuard, RwLockIrqWriteGuard, named_rwlock_irq};

/// `tasklist_lock` (kernel/fork.c's `DEFINE_RWLOCK(tasklist_lock)`): taken
/// for writing with IRQs off by `copy_process()`, `exit_notify()` and
/// `release_task()`; for reading, in any context, to walk the links. Like
/// Linux's, it guards data that lives elsewhere, so it holds `()`.
static TASKLIST_LOCK: CacheAligned<RwLockIrq<()>> =
    CacheAligned(named_rwlock_irq("tasklist_lock", ()));

/// A held `read_lock(&tasklist_lock)`.
pub(crate) struct TasklistRead(#[allow(dead_code)] RwLockIrqReadGuard<'static, ()>);

/// A held `write_lock_irq(&tasklist_lock)`; dropping it is
/// `write_unlock_irq`.
pub(crate) struct TasklistWrite(#[allow(dead_code)] RwLockIrqWriteGuard<'static, ()>);

impl Drop for TasklistWrite {
    fn drop(&mut self) {
        // Before the field's drop unlocks.
        lockctx::releasing(Tracked::TasklistWrite);
    }
}

/// Either guard: enough to read the links.
pub(crate) trait TasklistHeld {}
impl TasklistHeld for TasklistRead {}
impl TasklistHeld for TasklistWrite {}

/// `read_lock(&tasklist_lock)`: IRQs untouched, allowed in interrupt
/// context.
#[inline]
pub(crate) fn read_lock_tasklist() -> TasklistRead {
    TasklistRead(TASKLIST_LOCK.read())
}

/// `write_lock_irq(&tasklist_lock)`: IRQs off until the guard drops.
#[inline]
pub(crate) fn write_lock_irq_tasklist() -> TasklistWrite {
    let g = TasklistWrite(TASKLIST_LOCK.write());
    lockctx::acquired(Tracked::TasklistWrite);
    assert!(
        !crate::platform::irqs_enabled(),
        "IF=1 inside a tasklist_lock write section"
    );
    g
}

/// Whether a writer waits for `tasklist_lock`'s readers (tests).
pub(crate) fn tasklist_writer_waiting() -> bool {
    // SAFETY: reading the raw lock's state only.
    unsafe { TASKLIST_LOCK.raw() }.writer_waiting()
}

/// A task's process relationships (Linux: `thread_pid`/`signal->pids`,
/// `real_parent`, `group_leader`).
pub(crate) struct ProcLinks {
    /// The pid attached per type; a counted reference each. Written only
    /// through [`Task::set_pid_link`], which keeps `Task::own_pid` in step.
    pids: PerPidType<Option<PidRef>>,
    /// Port of `real_parent` (null: none; kernel tasks outside the tree).
    pub(crate) parent: *const Task,
    /// Port of `group_leader` (the task itself unless a thread).
    pub(crate) group_leader: *const Task,
    /// A `CLONE_THREAD` child: autoreaped, only its PID attached.
    pub(crate) thread: bool,
    /// Threads of this group leader not yet released.
    pub(crate) live_threads: u32,
}

impl ProcLinks {
    pub(super) const fn new() -> Self {
        ProcLinks {
            pids: PerPidType([None, None, None, None]),
            parent: core::ptr::null(),
            group_leader: core::ptr::null(),
            thread: false,
            live_threads: 0,
        }
    }
}

impl ProcLinks {
    /// The pid attached for type `ty`, if any.
    pub(crate) fn pid(&self, ty: PidType) -> Option<&PidRef> {
        self.pids[ty].as_ref()
    }

    /// Whether no pid of any type is attached.
    pub(crate) fn has_no_pids(&self) -> bool {
        self.pids.0.iter().all(Option::is_none)
    }
}

impl Task {
    /// The process links, read under `tasklist_lock`.
    pub(crate) fn links<'g>(&'g self, _tasklist: &'g impl TasklistHeld) -> &'g ProcLinks {
        // SAFETY: writers need `links_mut`, which needs the write guard
        // borrowed mutably; while `_tasklist` is borrowed here, no write
        // guard can be (the lock excludes it, or it is this very guard).
        unsafe { &*self.links.get() }
    }

    /// The process links, changed under `write_lock_irq(&tasklist_lock)`.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn links_mut<'g>(&'g self, _tasklist: &'g mut TasklistWrite) -> &'g mut ProcLinks {
        // SAFETY: the write lock excludes every reader and other writer, and
        // the `&mut` borrow of its guard makes this the only links reference
        // on this CPU for as long as it lives.
        unsafe { &mut *self.links.get() }
    }

    /// Attaches `pid` as the task's pid of type `ty` (None detaches),
    /// returning what was attached. The PID type's pointer is mirrored in
    /// `own_pid`, so the task can find its own pid without the lock.
    pub(crate) fn set_pid_link(
        &self,
        g: &mut TasklistWrite,
        ty: PidType,
        pid: Option<PidRef>,
    ) -> Option<PidRef> {
        if ty == PidType::Pid {
            let raw = pid
                .as_ref()
                .map_or(ptr::null_mut(), |p| p.as_ptr().as_ptr());
            self.own_pid.store(raw, Ordering::Release);
        }
        core::mem::replace(&mut self.links_mut(g).pids[ty], pid)
    }

    /// The current task's own PID, read without the lock (an atomic copy
    /// of the PID link, written by [`set_pid_link`](Self::set_pid_link)).
    /// The handle borrows: it takes no reference.
    ///
    /// # Safety
    /// `self` is the running task. Its PID is only detached by its own
    /// `release_task`, which the task never runs while it still uses the
    /// handle, so the pid stays attached (and alive) for the borrow.
    #[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
    pub(crate) unsafe fn own_pid(&self) -> Option<OwnPid<'_>> {
        let raw = NonNull::new(self.own_pid.load(Ordering::Acquire))?;
        // SAFETY: a non-null value is the attached PID (see above), kept
        // alive by the link's reference for the borrow; `ManuallyDrop`
        // makes sure this uncounted handle never drops a reference.
        Some(OwnPid {
            pid: ManuallyDrop::new(unsafe { PidRef::from_raw(raw) }),
            _task: PhantomData,
        })
    }
}

/// A borrowed, uncounted handle to a task's own PID ([`Task::own_pid`]).
pub(crate) struct OwnPid<'a> {
    pid: ManuallyDrop<PidRef>,
    _task: PhantomData<&'a Task>,
}

impl core::ops::Deref for OwnPid<'_> {
    type Target = PidRef;

    fn deref(&self) -> &PidRef {
        &self.pid
    }
}

/// Whether `t` is a process (has its PID attached). Its PID is only
/// detached by `release_task`, which never runs while the task runs
/// unless the task runs it itself.
pub(crate) fn is_process(t: &Task) -> bool {
    !t.pid_links[PidType::Pid].is_unhashed()
}

/// The task behind a node of some `children` list.
///
/// # Safety
/// `node` is a task's `sibling` node.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
pub(super) unsafe fn task_of_sibling(node: *mut ListHead) -> *const Task {
    // SAFETY: per the contract (container_of).
    unsafe { node.byte_sub(core::mem::offset_of!(Task, sibling)) as *const Task }
}

/// The task behind a node of some group's `thread_head` list.
///
/// # Safety
/// `node` is a task's `thread_node` node.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
unsafe fn task_of_thread_node(node: *mut ListHead) -> *const Task {
    // SAFETY: per the contract (container_of).
    unsafe { node.byte_sub(core::mem::offset_of!(Task, thread_node)) as *const Task }
}

/// Port of `list_for_each_entry(p, &parent->children, sibling)`: calls `f`
/// on every child of `parent`, oldest first, until it returns false.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
pub(super) fn for_each_child(
    parent: &Task,
    _tasklist: &impl TasklistHeld,
    mut f: impl FnMut(&Task) -> bool,
) {
    let mut n = parent.children.first();
    while !n.is_null() {
        // SAFETY: a node on `children` is a linked child's `sibling`; the
        // child's link reference keeps it alive while linked, and
        // tasklist_lock (the guard) keeps it linked.
        let (t, next) = unsafe { (&*task_of_sibling(n), parent.children.next_of(n)) };
        if !f(t) {
            return;
        }
        n = next;
    }
}

/// Port of `while_each_thread(current, t)` with `t = current` first: calls
/// `f` on `me`, then on the other tasks of its thread group in list order
/// from `me` on, wrapping to the leader, until it returns false. A task
/// outside any group (a kernel task) is alone in it.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
pub(super) fn while_each_thread(
    me: &Task,
    _tasklist: &impl TasklistHeld,
    mut f: impl FnMut(&Task) -> bool,
) {
    if !f(me) {
        return;
    }
    let Some(sig) = me.signal() else {
        return;
    };
    let head = &sig.thread_head;
    let start = (&raw const me.thread_node).cast_mut();
    if me.thread_node.is_empty() {
        return; // released (a task only waits on itself then)
    }
    let mut n = start;
    loop {
        // SAFETY: `n` is on the group's list (`me`'s node, or one reached
        // from it), which tasklist_lock keeps as it is.
        n = unsafe { head.next_of(n) };
        if n.is_null() {
            // next_thread(): past the last thread comes the leader, the
            // list's first entry.
            n = head.first();
        }
        if n == start {
            return;
        }
        // SAFETY: a node on `thread_head` is a linked task's
        // `thread_node`, kept alive and linked under tasklist_lock.
        if !f(unsafe { &*task_of_thread_node(n) }) {
            return;
        }
    }
}

/// Port of `for_each_thread(leader, t) t->real_parent = parent`: sets the
/// parent of every task of `leader`'s group (`forget_original_parent`).
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
pub(super) fn set_group_parent(leader: &Task, g: &mut TasklistWrite, parent: *const Task) {
    let Some(sig) = leader.signal() else {
        leader.links_mut(g).parent = parent;
        return;
    };
    // The leader is on the list too, first.
    let mut n = sig.thread_head.first();
    while !n.is_null() {
        // SAFETY: as in `while_each_thread`; the write guard keeps the
        // list as it is while we change the links.
        let (t, next) = unsafe { (&*task_of_thread_node(n), sig.thread_head.next_of(n)) };
        t.links_mut(g).parent = parent;
        n = next;
    }
}

/// Port of `same_thread_group()`: `a` and `b` are the same task or tasks
/// of one thread group.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
pub(super) fn same_thread_group(a: &Task, b: &Task) -> bool {
    ptr::eq(a, b)
        || match (a.signal(), b.signal()) {
            (Some(x), Some(y)) => ptr::eq::<super::signal::Signal>(&**x, &**y),
            _ => false,
        }
}

/// Port of `task_active_pid_ns()`: the namespace of a task's PID (the root
/// for kernel tasks without one).
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
pub(super) fn active_ns(pid: Option<&PidRef>) -> Arc<PidNamespace> {
    match pid {
        Some(pid) => ns_arc(pid),
        None => init_pid_ns().clone(),
    }
}

/// The namespace of `pid`, as a counted reference.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
fn ns_arc(pid: &PidRef) -> Arc<PidNamespace> {
    let ns: *const PidNamespace = pid.ns();
    // SAFETY: every namespace lives in an `Arc` (created by `Arc::new` in
    // pid::namespace), and `pid` holds a reference to its own, so the
    // count is at least 1 while we bump it.
    unsafe {
        Arc::increment_strong_count(ns);
        Arc::from_raw(ns)
    }
}

/// A task's pid of type `ty`, if attached.
pub(crate) fn task_pid(t: &Task, ty: PidType) -> Option<PidRef> {
    let g = read_lock_tasklist();
    t.links(&g).pid(ty).cloned()
}

#[cfg(test)]
mod tests {
    use super::TASKLIST_LOCK;

    /// `tasklist_lock` starts a cache line of its own and fills it
    /// (`__cacheline_aligned_in_smp`).
    #[test]
    fn tasklist_lock_has_a_cache_line_of_its_own() {
        let addr = core::ptr::addr_of!(TASKLIST_LOCK) as usize;
        assert_eq!(addr % 64, 0, "tasklist_lock at {addr:#x}");
        assert_eq!(size_of_val(&TASKLIST_LOCK) % 64, 0);
    }
}
