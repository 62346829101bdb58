//! The cgroup core's part of creating and reaping a task
//! (kernel/cgroup/cgroup.c): every task is on its css_set's task list,
//! linked and unlinked under the one global `css_set_lock`, with
//! interrupts off.
//!
//! A thread's life takes that lock three times in every version here:
//! `cgroup_css_set_fork()` (from `cgroup_can_fork()`, pinning the parent's
//! css_set for the child), `cgroup_post_fork()` (linking the child, after
//! `tasklist_lock` is dropped), and the unlink of the dead task: up to
//! 6.18 `cgroup_exit()` in `do_exit` (`spin_lock_irq`), from 6.19
//! `cgroup_task_dead()` from `finish_task_switch()` (`spin_lock_irqsave`).
//! A thread-group leader that dies before its threads waits on the
//! css_set's dying list until it is released (`cgroup_release()`, 6.19:
//! `cgroup_task_free()`), which takes the lock once more; a thread is off
//! every list by then and takes none. Upstream reports this lock at the
//! top of threadspawn's profile once `pidmap_lock` is tamed.
//!
//! Everything runs in the root cgroup's css_set (`init_css_set`), as every
//! task of a system without cgroup moves does; its reference count is one
//! more cache line every fork and free writes.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use super::Task;
use crate::klib::aligned::CacheAligned;
use crate::klib::hlist::{HlistHead, HlistNode};
use crate::sync::RawSpin;
use crate::sync::irq::{Irq, IrqLock, IrqSave, RawGuard};

/// Port of `css_set_lock`, on a cache line of its own.
static CSS_SET_LOCK: CacheAligned<RawSpin> = CacheAligned(RawSpin::named("css_set_lock"));

/// Port of `struct css_set`, the lists `css_set_lock` guards.
struct CssLists {
    /// `cset->tasks`: the live tasks.
    tasks: HlistHead,
    /// `cset->dying_tasks`: exited leaders whose threads still run.
    dying_tasks: HlistHead,
    /// `cset->nr_tasks`.
    nr_tasks: u64,
}

struct CssSet {
    /// `cset->refcount`: one per task using it, plus the system's.
    refcount: CacheAligned<AtomicU64>,
    lists: UnsafeCell<CssLists>,
}

// SAFETY: `lists` is only reached with `CSS_SET_LOCK` held (see `locked`).
unsafe impl Sync for CssSet {}

/// Port of `init_css_set`.
static INIT_CSS_SET: CssSet = CssSet {
    refcount: CacheAligned(AtomicU64::new(1)),
    lists: UnsafeCell::new(CssLists {
        tasks: HlistHead::new(),
        dying_tasks: HlistHead::new(),
        nr_tasks: 0,
    }),
};

/// `css_set_lock` acquisitions since boot, per CPU (what `css/op` counts).
#[repr(align(64))]
struct Count(AtomicU64);
static ACQUIRED: [Count; crate::MAX_CPUS] = [const { Count(AtomicU64::new(0)) }; crate::MAX_CPUS];

/// `css_set_lock` acquisitions on every CPU since boot.
pub(crate) fn css_set_lock_acquisitions() -> u64 {
    ACQUIRED.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
}

/// Runs `f` on the css_set's lists under `css_set_lock`, taken with
/// `spin_lock_irq` (or `irqsave` when `save`).
fn locked<R>(save: bool, f: impl FnOnce(&mut CssLists) -> R) -> R {
    let c = &ACQUIRED[crate::platform::cpu_id()].0;
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    let _g = if save {
        Held::Save(IrqLock::<_, IrqSave>::of(&CSS_SET_LOCK.0).lock_guard())
    } else {
        Held::Irq(IrqLock::<_, Irq>::of(&CSS_SET_LOCK.0).lock_guard())
    };
    // SAFETY: `css_set_lock` is held until `_g` drops, after `f`.
    f(unsafe { &mut *INIT_CSS_SET.lists.get() })
}

/// The guard of either discipline (dropping it unlocks).
enum Held<'a> {
    Irq(#[allow(dead_code)] RawGuard<'a, RawSpin, Irq>),
    Save(#[allow(dead_code)] RawGuard<'a, RawSpin, IrqSave>),
}

/// Port of `cgroup_css_set_fork()` (from `cgroup_can_fork()`): pins the
/// parent's css_set for the child.
pub(crate) fn cgroup_can_fork() {
    locked(false, |_| {
        INIT_CSS_SET.refcount.0.fetch_add(1, Ordering::Relaxed);
    });
}

/// Undoes [`cgroup_can_fork`] for a fork that failed after it
/// (`cgroup_cancel_fork()` -> `put_css_set()`: the last reference is never
/// this one, so no lock).
pub(crate) fn cgroup_cancel_fork() {
    INIT_CSS_SET.refcount.0.fetch_sub(1, Ordering::Release);
}

/// Port of `cgroup_post_fork()`: links the child into its css_set (the
/// reference [`cgroup_can_fork`] took is now the child's).
pub(crate) fn cgroup_post_fork(child: &Task) {
    locked(false, |l| {
        l.nr_tasks += 1;
        // SAFETY: the child is on no css_set list yet; under the lock.
        unsafe { l.tasks.add_head(&raw const child.cg_node as *mut _) };
    });
    child.css_linked.store(true, Ordering::Relaxed);
}

/// Port of `cgroup_exit()` (up to 6.18, from `do_exit`, `spin_lock_irq`) and
/// of `cgroup_task_dead()` (6.19 on, from `finish_task_switch`,
/// `spin_lock_irqsave`): takes the dead task off the task list; a leader
/// whose threads still run goes on the dying list until released.
pub(crate) fn cgroup_task_dead(t: &Task, leader_with_live_threads: bool, irqsave: bool) {
    locked(irqsave, |l| {
        let node = &raw const t.cg_node as *mut HlistNode;
        // SAFETY: the node is on `tasks` (linked at post-fork), under the
        // lock.
        unsafe { HlistNode::del_init(node) };
        l.nr_tasks -= 1;
        if leader_with_live_threads {
            // SAFETY: just unlinked; under the lock.
            unsafe { l.dying_tasks.add_head(node) };
        }
    });
}

/// Port of `cgroup_release()` (up to 6.18, from `release_task`): a leader
/// parked on the dying list leaves it; anything else takes no lock.
pub(crate) fn cgroup_release(t: &Task) {
    if t.cg_node.is_unhashed() {
        return;
    }
    locked(false, |_| {
        // SAFETY: on the dying list, under the lock.
        unsafe { HlistNode::del_init(&raw const t.cg_node as *mut _) };
    });
}

/// Port of `cgroup_task_free()` and `put_css_set()` at
/// `__put_task_struct()`: 6.19's dying-list unlink of a leader (earlier
/// versions did it at release), then the task's css_set reference (never
/// the last: the system holds one).
pub(crate) fn cgroup_task_free(t: &Task) {
    if !t.css_linked.load(Ordering::Relaxed) {
        return;
    }
    cgroup_release(t);
    INIT_CSS_SET.refcount.0.fetch_sub(1, Ordering::Release);
}

/// Tasks on the css_set's task list (the invariant check's view).
pub(crate) fn css_set_nr_tasks() -> u64 {
    locked(false, |l| l.nr_tasks)
}
