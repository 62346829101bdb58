//! Reaping children (Linux's `do_wait()` and `wait_task_zombie()` in
//! kernel/exit.c), for exited children only (no stop/continue, no ptrace).
//!
//! A wait for any child scans the children of every task of the caller's
//! thread group, the caller's own first (`__do_wait`'s
//! `while_each_thread`), each list oldest first (`do_wait_thread`); a wait
//! for one task looks at that task alone, if it is a child of the group
//! (`do_wait_pid`), in O(1). The first zombie found is claimed (EXIT_ZOMBIE
//! -> EXIT_DEAD: of two waiters one wins, the other goes on as if the child
//! were not there) and released. Finding none, the wait answers ECHILD if
//! no child was eligible (`notask_error`); otherwise "nothing yet" under
//! WNOHANG ([`wait_child_nohang`] returns `Ok(None)`, Linux 0), or the
//! caller blocks until a child's exit wakes the threads of its parent's
//! group that wait ([`wake_up_parent`]), and scans again.

use core::ptr;

use super::exit::release_task_dispatch;
use super::sched::{self, current};
use super::tasklist::{
    TasklistHeld, TasklistWrite, for_each_child, read_lock_tasklist, same_thread_group,
    while_each_thread,
};
use super::{Task, TaskRef, TaskState};
use crate::klib::errno::Errno;
use crate::pid::{PidType, pid_nr_ns};

/// A reaped child: its pid in the reaper's namespace and its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reaped {
    pub(crate) nr: i32,
    pub(crate) code: i32,
    /// Which task it was, for identity only (see [`Reaped::is`]).
    task: *const Task,
}

// SAFETY: `task` is an address compared, never dereferenced.
unsafe impl Send for Reaped {}
// SAFETY: as above.
unsafe impl Sync for Reaped {}

impl Reaped {
    /// Whether the reaped child was `t` (which the caller keeps alive by a
    /// reference, so its address was not reused).
    pub(crate) fn is(&self, t: &Task) -> bool {
        ptr::eq(self.task, t)
    }
}

/// Port of `delay_group_leader()`: a group leader is not reaped while any
/// of its threads is not released yet.
fn delay_group_leader(c: &Task, g: &impl TasklistHeld) -> bool {
    c.links(g).live_threads != 0
}

/// What one scan of the candidates found.
enum Scan {
    /// A reapable zombie: claimed (EXIT_DEAD) if the scan was to claim.
    Zombie(*const Task),
    /// Eligible children, none reapable yet (`notask_error` = 0).
    Live,
    /// No eligible child (`notask_error` stays -ECHILD).
    Nothing,
}

/// Port of `wait_consider_task()` for exited children: whether `c` is the
/// zombie to take (claimed when `claim`); marks `eligible` for a child
/// that is not (yet) reapable. A child another waiter has claimed
/// (EXIT_DEAD, or a lost claim) is not eligible, as in Linux.
fn consider(c: &Task, g: &impl TasklistHeld, claim: bool, eligible: &mut bool) -> bool {
    let state = c.state();
    if state == TaskState::Dead {
        return false;
    }
    // slay zombie? A leader waits for its threads (delay_group_leader).
    if state == TaskState::Zombie && !delay_group_leader(c, g) {
        if !claim || c.transition(TaskState::Zombie, TaskState::Dead) {
            return true;
        }
        return false; // wait_task_zombie() lost the cmpxchg
    }
    *eligible = true;
    false
}

/// Port of `is_effectively_child()`: `t` is a process (threads are never
/// waited for: `pid_task(pid, PIDTYPE_TGID)` finds leaders only), still
/// linked to its parent, and that parent is `me` or a task of `me`'s group.
fn is_effectively_child(me: &Task, t: &Task, g: &impl TasklistHeld) -> bool {
    // Off every children list: released (or a thread); its parent pointer
    // may be stale then.
    if t.sibling.is_empty() {
        return false;
    }
    let parent = t.links(g).parent;
    // SAFETY: a linked child's parent outlives the link: it reaps the
    // child, or hands it to a reaper when it exits, under tasklist_lock,
    // which `g` holds.
    ptr::eq(parent, me) || (!parent.is_null() && same_thread_group(me, unsafe { &*parent }))
}

/// Port of `__do_wait()` (one pass under `read_lock(&tasklist_lock)`):
/// `target` alone (`do_wait_pid`), or every child of every task of the
/// group, `me`'s first, oldest first (`do_wait_thread` per thread).
fn scan(me: &Task, target: Option<&Task>, g: &impl TasklistHeld, claim: bool) -> Scan {
    let mut eligible = false;
    let mut found: *const Task = ptr::null();
    match target {
        Some(t) => {
            if is_effectively_child(me, t, g) && consider(t, g, claim, &mut eligible) {
                found = t;
            }
        }
        None => while_each_thread(me, g, |tsk| {
            for_each_child(tsk, g, |c| {
                if consider(c, g, claim, &mut eligible) {
                    found = c;
                }
                found.is_null()
            });
            found.is_null()
        }),
    }
    if !found.is_null() {
        Scan::Zombie(found)
    } else if eligible {
        Scan::Live
    } else {
        Scan::Nothing
    }
}

/// Port of `wait_task_zombie()` after the claim: the pid as the waiter's
/// namespace sees it, the exit code, then `release_task`.
fn reap(child: *const Task, nr: i32) -> Reaped {
    // SAFETY: the child's link reference, which the reaper owns now that
    // it won the Zombie -> Dead transition.
    let child = unsafe { TaskRef::from_raw(child) };
    let code = child.exit_code();
    let task = child.as_ptr();
    release_task_dispatch(child);
    Reaped { nr, code, task }
}

/// The pid of `c` in `me`'s namespace (`task_pid_vnr` as the waiter).
fn nr_seen_by(me: &Task, c: &Task, g: &impl TasklistHeld) -> i32 {
    match (c.links(g).pid(PidType::Pid), me.links(g).pid(PidType::Pid)) {
        (Some(p), Some(mine)) => pid_nr_ns(p, mine.ns()),
        (Some(p), None) => p.nr(),
        _ => 0,
    }
}

/// Port of `do_wait()`: reaps a zombie child of the current task's group
/// (`target`, or the first in Linux's order). ECHILD when there is no such
/// child; with `nohang`, `Ok(None)` when there are children but none has
/// exited (Linux's WNOHANG returns 0); without, blocks until one has.
fn do_wait(target: Option<&Task>, nohang: bool) -> Result<Option<Reaped>, Errno> {
    let me = current();
    loop {
        let (child, nr) = {
            let g = read_lock_tasklist();
            match scan(me, target, &g, true) {
                // SAFETY: a claimed child stays linked (and alive) until
                // its release, which is ours to do.
                Scan::Zombie(c) => (c, nr_seen_by(me, unsafe { &*c }, &g)),
                Scan::Nothing => return Err(Errno::ECHILD),
                Scan::Live if nohang => return Ok(None),
                Scan::Live => (ptr::null(), 0),
            }
        };
        if !child.is_null() {
            return Ok(Some(reap(child, nr)));
        }
        // add_wait_queue(&current->signal->wait_chldexit): set before the
        // condition's look under the lock, which a waker's write section
        // orders before or after, so the exit is seen or the wake lands.
        me.set_waits_for_children(true);
        sched::block_until(|| {
            let g = read_lock_tasklist();
            !matches!(scan(me, target, &g, false), Scan::Live)
        });
        me.set_waits_for_children(false);
    }
}

/// `wait4(pid or -1, .., 0)`: reaps `target` (or any child) of the current
/// task's group, blocking until it has exited. ECHILD if there is none.
pub(crate) fn wait_child(target: Option<&Task>) -> Result<Reaped, Errno> {
    do_wait(target, false).map(|r| r.expect("a blocking wait returns a child or an error"))
}

/// `wait4(pid or -1, .., WNOHANG)`: as [`wait_child`], but `Ok(None)` at
/// once when there are children and none has exited yet.
pub(crate) fn wait_child_nohang(target: Option<&Task>) -> Result<Option<Reaped>, Errno> {
    do_wait(target, true)
}

/// Port of `__wake_up_parent()`: wakes the tasks of `parent`'s group that
/// wait for a child (Linux wakes `parent->signal->wait_chldexit`; each
/// waiter scans again).
pub(super) fn wake_up_parent(parent: &Task, g: &TasklistWrite) {
    while_each_thread(parent, g, |t| {
        if t.waits_for_children() {
            sched::wake_up_process(t);
        }
        true
    });
}
