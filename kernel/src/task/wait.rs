//! Reaping children (Linux's `do_wait()` / `wait_task_zombie()` in
//! kernel/exit.c).

use core::ptr;

use super::exit::release_task;
use super::sched::{self, current};
use super::tasklist::{TasklistHeld, for_each_child, read_lock_tasklist};
use super::{Task, TaskRef, TaskState};
use crate::klib::errno::Errno;
use crate::pid::{PidType, pid_nr_ns};

/// A reaped child: its pid in the reaper's namespace and its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reaped {
    pub(crate) nr: i32,
    pub(crate) code: i32,
}

/// Port of `delay_group_leader()`: a group leader is not reaped while any
/// of its threads is not released yet.
fn delay_group_leader(c: &Task, g: &impl TasklistHeld) -> bool {
    c.links(g).live_threads != 0
}

/// Port of `do_wait()`/`wait_task_zombie()`: reaps a zombie child of the
/// current task (`target`, or any). ECHILD when there is no such child;
/// EAGAIN when `block` is false and it has not exited yet (Linux's WNOHANG
/// returns 0 instead).
pub(crate) fn wait_child(target: Option<&Task>, block: bool) -> Result<Reaped, Errno> {
    let me = current();
    loop {
        let mut any = false;
        let mut reaped: *const Task = ptr::null();
        let mut nr = 0;
        {
            let g = read_lock_tasklist();
            for_each_child(me, &g, |c| {
                if target.is_some_and(|t| !ptr::eq(t, c)) {
                    return true;
                }
                any = true;
                // EXIT_ZOMBIE -> EXIT_DEAD claims it (one waiter wins); a
                // leader waits for its threads' release (delay_group_leader).
                if !delay_group_leader(c, &g) && c.transition(TaskState::Zombie, TaskState::Dead) {
                    reaped = c;
                    // The pid as the waiter's namespace sees it.
                    nr = match (
                        c.links(&g).pid(PidType::Pid),
                        me.links(&g).pid(PidType::Pid),
                    ) {
                        (Some(p), Some(mine)) => pid_nr_ns(p, mine.ns()),
                        (Some(p), None) => p.nr(),
                        _ => 0,
                    };
                    return false;
                }
                true
            });
        }
        if !reaped.is_null() {
            // SAFETY: the child's link reference, which the reaper owns
            // now that it won the Zombie -> Dead transition.
            let child = unsafe { TaskRef::from_raw(reaped) };
            let code = child.exit_code();
            release_task(child);
            return Ok(Reaped { nr, code });
        }
        if !any {
            return Err(Errno::ECHILD);
        }
        if !block {
            return Err(Errno::EAGAIN);
        }
        sched::block_until(|| {
            let g = read_lock_tasklist();
            let mut ready = false;
            let mut gone = true;
            for_each_child(me, &g, |c| {
                if target.is_none_or(|t| ptr::eq(t, c)) {
                    gone = false;
                    ready |= c.state() == TaskState::Zombie && !delay_group_leader(c, &g);
                }
                !ready
            });
            ready || gone
        });
    }
}
