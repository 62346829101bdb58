//! Task exit and release (Linux's kernel/exit.c): [`do_exit`],
//! `exit_notify` (reparenting, zombie or autoreap) and `release_task` in
//! both strategies.
//!
//! `release_task` detaches the pids under `write_lock_irq(&tasklist_lock)`.
//! [`ReleaseStrategy::Stock`] frees them and feeds the entropy pool inside
//! that section; [`ReleaseStrategy::Deferred`] (the exit change) collects
//! them in a `release_task_post` and does both after the unlock.
//!
//! When a namespace's init exits, allocation there is disabled (later
//! spawns get ENOMEM, as in Linux) and its children go to the nearest
//! ancestor namespace's live init: pidctl cannot kill, so this stands in
//! for `zap_pid_ns_processes`. Orphans join the end of their reaper's
//! `children`, in their order (`list_splice_tail_init`).

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use super::sched::{self, current};
use super::tasklist::{
    TasklistWrite, active_ns, set_group_parent, task_of_sibling, write_lock_irq_tasklist,
};
use super::wait::wake_up_parent;
use super::{Task, TaskRef, TaskState};
use super::{cgroup, shared, stats};
use crate::klib::hlist::HlistNode;
use crate::klib::list::ListHead;
use crate::klib::lockctx::{self, Site};
use crate::pid::namespace::disable_pid_allocation;
use crate::pid::{PerPidType, PidRef, PidType, free_pid_as};
use crate::random::add_device_randomness;
use crate::strategy::{CgroupUnlink, ReleaseStrategy, StrategyPair};

/// The reaper for the orphans of `father`: its namespace's init, or, if
/// `father` is that init (dying), the nearest ancestor namespace's init
/// that still accepts pids (the root's never exits).
fn find_new_reaper(father: &Task, g: &TasklistWrite) -> Option<NonNull<Task>> {
    let mut ns = active_ns(father.links(g).pid(PidType::Pid));
    loop {
        if let Some(r) = ns.child_reaper()
            && !r.is(father)
            && ns.accepts_pids()
        {
            return Some(r.task());
        }
        ns = ns.parent()?.clone();
    }
}

/// Enters [`do_exit`] as the exiting task's version compiles it. Called
/// through `sched::exit_current`.
pub(crate) fn do_exit_dispatch(code: i32) -> ! {
    crate::strategy::per_version!(current().version().index, do_exit(code))
}

/// Port of `do_exit()` for processes, as the version at index `V` (the
/// exiting task's) compiles it: the join point (`mm_release`),
/// exit_notify, then switch away for good.
// A function of its own, as exit.c's do_exit is in Linux (a compilation
// unit of its own): see `per_version!` in strategy.rs.
#[inline(never)]
fn do_exit<const V: u8>(code: i32) -> ! {
    let version = StrategyPair::of::<V>();
    let me = current();
    me.set_exit_code(code);
    // atomic_dec_and_test(&signal->live); exit_mm(): the joiner's wake-up
    // (mm_release), then mmput().
    let lines = me
        .signal()
        .filter(|_| me.css_linked.load(Ordering::Relaxed))
        .map(|s| &s.lines);
    if let Some(l) = lines {
        l.exiting();
    }
    mm_release(me);
    if let Some(l) = lines {
        l.mmput();
    }
    // Up to 6.18 the css_set unlink is cgroup_exit(), here, between
    // exit_mm() and exit_notify(); 6.19 moved it to the final switch.
    if version.cgroup_unlink == CgroupUnlink::DoExit {
        cgroup_unlink_dead(me, false);
    }
    exit_notify::<V>(me);
    sched::exit_final()
}

/// The dead task's css_set unlink (`cgroup_exit()` / `cgroup_task_dead()`),
/// if it was ever linked: a leader whose threads still run goes on the
/// dying list (Linux: `atomic_read(&tsk->signal->live)`).
pub(crate) fn cgroup_unlink_dead(t: &Task, irqsave: bool) {
    if !t.css_linked.load(Ordering::Relaxed) || t.cg_node.is_unhashed() {
        return;
    }
    let leader_with_live_threads = !t.is_thread() && t.signal().is_some_and(|s| s.nr_threads() > 1);
    cgroup::cgroup_task_dead(t, leader_with_live_threads, irqsave);
}

/// Port of the part of `mm_release()` a joiner sees: the thread's tid is
/// cleared and the futex woken, so `pthread_join` returns while this task
/// has yet to run `exit_notify` and `release_task`. The joiner holds a
/// reference to this task and the scheduler another, so the task outlives
/// whatever the joiner does next; its group leader waits for it to be
/// released before it can be reaped (`delay_group_leader`).
fn mm_release(me: &Task) {
    sched::wake_joiner(me);
    run_join_window_hook(me);
}

/// A test's `fn(&Task)` run by `do_exit` right after the join point, or
/// null: it can hold the exiting task there until its joiner has returned,
/// so a join that returned before the exit code was set reads the wrong
/// one for certain.
static JOIN_WINDOW_HOOK: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// Sets (None: clears) the hook `do_exit` runs right after `mm_release`
/// has woken the joiner.
pub(crate) fn set_join_window_hook(hook: Option<fn(&Task)>) {
    let p = hook.map_or(ptr::null_mut(), |f| f as *mut ());
    JOIN_WINDOW_HOOK.store(p, Ordering::Release);
}

#[inline]
fn run_join_window_hook(me: &Task) {
    let p = JOIN_WINDOW_HOOK.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: only `set_join_window_hook` stores here, and it stores a
        // `fn(&Task)`.
        let hook: fn(&Task) = unsafe { core::mem::transmute(p) };
        hook(me);
    }
}

/// Port of `exit_notify()` (with `forget_original_parent`).
fn exit_notify<const V: u8>(me: &Task) {
    // A dying namespace init stops pid allocation first (Linux:
    // zap_pid_ns_processes -> disable_pid_allocation, outside the lock).
    // Borrowed, not an Arc clone: this runs on every exit.
    // SAFETY: `me` is the running task.
    if let Some(pid) = unsafe { me.own_pid() } {
        let ns = pid.ns();
        if ns.child_reaper().is_some_and(|r| r.is(me)) {
            disable_pid_allocation(ns, StrategyPair::of::<V>());
        }
    }
    let autoreap;
    {
        let mut g = write_lock_irq_tasklist();
        if !me.children.is_empty() {
            let Some(reaper) = find_new_reaper(me, &g) else {
                panic!("no reaper for the children of {}", me.name());
            };
            // SAFETY: the reaper is a live namespace init (it is linked in
            // its namespace as reaper until it exits, which this lock
            // orders after us).
            let reaper = unsafe { reaper.as_ref() };
            // forget_original_parent(): every child (and its threads)
            // gets the new parent; a zombie whose group is empty is
            // reported to it (reparent_leader -> do_notify_parent).
            let mut notify = false;
            let mut n = me.children.first();
            while !n.is_null() {
                // SAFETY: a node on `children` is a linked child's
                // `sibling`, kept alive and linked under the write lock.
                let (child, next) = unsafe { (&*task_of_sibling(n), me.children.next_of(n)) };
                set_group_parent(child, &mut g, reaper);
                notify |= child.state() == TaskState::Zombie && child.links(&g).live_threads == 0;
                n = next;
            }
            // SAFETY: both lists are under the write lock; the reaper is
            // pinned (see above).
            unsafe { reaper.children.splice_tail_init(&me.children) };
            if notify {
                wake_up_parent(reaper, &g);
            }
        }
        let links = me.links(&g);
        autoreap = links.thread || links.parent.is_null();
        if !autoreap {
            me.set_state(TaskState::Zombie);
            // A leader whose threads are not all released yet is reported
            // by the last one's release_task (delay_group_leader).
            if links.live_threads == 0 {
                // do_notify_parent -> __wake_up_parent
                // SAFETY: a linked parent outlives the link (it reaps us,
                // or hands us to a reaper when it exits, under this lock).
                wake_up_parent(unsafe { &*links.parent }, &g);
            }
        }
        // EXIT_DEAD for an autoreaped task is set by release_task below.
    }
    if autoreap {
        // SAFETY: the link reference taken in copy_process; an autoreaped
        // task is released exactly once, here.
        release_task::<V>(unsafe { TaskRef::from_raw(me) });
    }
}

/// Port of `struct release_task_post`: the pids to free after the unlock.
struct ReleasePost {
    pids: PerPidType<Option<PidRef>>,
}

/// Port of `__change_pid(.., NULL)`/`detach_pid()`: unlinks `t` from its
/// pid of type `ty`; if the pid has no task left, frees it now (stock) or
/// hands it to `post` (deferred).
fn detach_pid<const V: u8>(g: &mut TasklistWrite, post: &mut ReleasePost, t: &Task, ty: PidType) {
    let Some(pid) = t.set_pid_link(g, ty, None) else {
        return;
    };
    // SAFETY: the node is on `pid`'s list for `ty`, under the write lock.
    unsafe { HlistNode::del_init(&raw const t.pid_links[ty] as *mut _) };
    if PidType::ALL.iter().any(|&ty| pid.pid_has_task(ty)) {
        return; // drops our reference only
    }
    match StrategyPair::of::<V>().release {
        ReleaseStrategy::Stock => free_pid_as::<V>(pid),
        ReleaseStrategy::Deferred => post.pids[ty] = Some(pid),
    }
}

/// Enters [`release_task`] as `p`'s version compiles it (a reaped zombie:
/// `wait`).
pub(super) fn release_task_dispatch(p: TaskRef) {
    crate::strategy::per_version!(p.version().index, release_task(p))
}

/// Port of `release_task()`, as the version at index `V` (the task's)
/// compiles it: detaches the pids under `tasklist_lock`, unlinks the task
/// from its parent, feeds its run time to the entropy pool, marks it Dead
/// and drops the link reference. The last thread of a zombie group leader
/// reports the leader to its parent.
// A function of its own, as exit.c's release_task is in Linux (a compilation
// unit of its own): see `per_version!` in strategy.rs.
#[inline(never)]
fn release_task<const V: u8>(p: TaskRef) {
    let mut post = ReleasePost {
        pids: PerPidType([None, None, None, None]),
    };
    let runtime = p.runtime();
    let version = StrategyPair::of::<V>();
    let deferred = version.release == ReleaseStrategy::Deferred;
    {
        let mut g = write_lock_irq_tasklist();
        let links = p.links(&g);
        let (thread, leader) = (links.thread, links.group_leader);
        // Its threads still point at their leader.
        assert_eq!(
            links.live_threads,
            0,
            "{} released with live threads",
            p.name()
        );
        // __exit_signal()
        let sig = p.signal().expect("a released task is a process");
        let siglock = sig.lock_siglock();
        if !deferred {
            add_device_randomness(&runtime.to_le_bytes());
        }
        let stats = sig.write_stats();
        lockctx::record(Site::ExitSignal);
        fold(&stats.sum_sched_runtime, runtime);
        fold(&stats.stime, runtime);
        fold(&stats.nvcsw, p.nvcsw());
        fold(&stats.dead_threads, 1);
        // __cleanup_sighand(): the sighand refcount, under siglock here too.
        if p.css_linked.load(Ordering::Relaxed) {
            sig.lines.released();
        }
        // sig->nr_threads--, inside stats_lock as Linux has it.
        sig.add_threads(&siglock, -1);
        // __unhash_process()
        detach_pid::<V>(&mut g, &mut post, &p, PidType::Pid);
        if !thread {
            for ty in [PidType::Tgid, PidType::Pgid, PidType::Sid] {
                detach_pid::<V>(&mut g, &mut post, &p, ty);
            }
            // SAFETY: `p` is on its parent's children list, under the
            // write lock.
            unsafe { ListHead::del_init(&raw const p.sibling as *mut _) };
        } else {
            // SAFETY: the group leader outlives its threads: it cannot be
            // reaped while `live_threads` counts us (delay_group_leader).
            let leader = unsafe { &*leader };
            let l = leader.links_mut(&mut g);
            l.live_threads -= 1;
            // The last thread of an exited leader reports it to its parent.
            if l.live_threads == 0 && leader.state() == TaskState::Zombie {
                let parent = l.parent;
                // SAFETY: a zombie's parent outlives the link (see
                // exit_notify).
                wake_up_parent(unsafe { &*parent }, &g);
            }
        }
        // list_del_rcu(&p->thread_node)
        // SAFETY: `p` is on its group's thread list, under the write lock.
        unsafe { ListHead::del_init(&raw const p.thread_node as *mut _) };
        drop(stats);
        drop(siglock);
    }
    if deferred {
        add_device_randomness(&runtime.to_le_bytes());
        // free_pids(): last type first, as Linux does.
        for pid in post.pids.0.iter_mut().rev().filter_map(Option::take) {
            free_pid_as::<V>(pid);
        }
    }
    stats::count_release();
    // dec_rlimit_ucounts() and the pids controller's release.
    if p.css_linked.load(Ordering::Relaxed) {
        shared::uncharge();
    }
    // cgroup_release(): up to 6.18 an exited leader leaves the dying list
    // here (6.19: when the task is freed).
    if version.cgroup_unlink == CgroupUnlink::DoExit {
        cgroup::cgroup_release(&p);
    }
    // Its joiner, if any, was woken in do_exit (mm_release).
    p.set_state(TaskState::Dead);
    // put_task_struct_rcu_user(): the link reference.
    drop(p);
}

/// Adds to a group counter (under `stats_lock`: one writer at a time).
fn fold(counter: &AtomicU64, v: u64) {
    counter.store(counter.load(Ordering::Relaxed) + v, Ordering::Relaxed);
}

/// Entry of a task that waits until asked to exit ([`Task::request_exit`]
/// plus a wake-up), then exits with the requested code.
pub(crate) fn park(_: usize) {
    let me = current();
    sched::block_until(|| me.exit_request().is_some());
    do_exit_dispatch(me.exit_request().unwrap_or(0))
}

/// Asks a parked task to exit with `code`.
pub(crate) fn request_exit(t: &Task, code: i32) {
    t.request_exit(code);
    sched::wake_up_process(t);
}
