//! The shared cache lines a thread's creation and release write outside
//! any lock, as Linux's `copy_process()` and `release_task()` write them.
//!
//! Besides `pidmap_lock`, `tasklist_lock` and `css_set_lock`, every
//! thread `threadspawn1_processes` makes touches counters that other CPUs
//! touch too: its process's (the `cred` usage, `sighand->count`,
//! `signal->live`, `mm->mm_users`, shared by every thread of the process)
//! and its user's and cgroup's (the user's RLIMIT_NPROC `ucounts`, the
//! pids controller's charge at every level of the cgroup path but the
//! root). Each is an atomic on a cache line of its own, as in Linux, and
//! written at the same points:
//!
//! | counter | fork (`copy_process`) | exit / release / free |
//! |---|---|---|
//! | `cred->usage` | `get_cred_many(cred, 2)` (`copy_creds`, shared for CLONE_THREAD) | `put_cred` x2 at `__put_task_struct` |
//! | `ucounts->rlimit[NPROC]` | `inc_rlimit_ucounts` + the limit check | `dec_rlimit_ucounts` in `release_task` |
//! | pids cgroup, per level | `pids_try_charge`: add, then watermark | `pids_uncharge` (`release_task`) |
//! | `sighand->count` | `refcount_inc` (`copy_sighand`) | `__cleanup_sighand` (`__exit_signal`) |
//! | `signal->live` | `atomic_inc` | `atomic_dec_and_test` in `do_exit` |
//! | `mm->mm_users` | `mmget` (`copy_mm`, CLONE_VM) | `mmput` in `exit_mm` |
//!
//! `signal->sigcnt` is the [`super::signal::SignalRef`] count; `nr_threads`
//! and `total_forks` are plain counters under `tasklist_lock`. The tasks
//! run as one user in a cgroup three levels below the root, as a login
//! session's do under systemd (`user.slice/user-1000.slice/session-N.scope`;
//! the root's counter is never charged).

use core::sync::atomic::{AtomicI64, Ordering};

use crate::klib::aligned::CacheAligned;

/// One process's shared counters (threads of a process share them; a new
/// process gets its own).
pub(crate) struct ProcessLines {
    cred_usage: CacheAligned<AtomicI64>,
    sighand_count: CacheAligned<AtomicI64>,
    live: CacheAligned<AtomicI64>,
    mm_users: CacheAligned<AtomicI64>,
}

impl ProcessLines {
    /// A new process's lines: its own task counted in each (`cred` twice:
    /// `cred` and `real_cred`).
    pub(crate) const fn new() -> Self {
        ProcessLines {
            cred_usage: CacheAligned(AtomicI64::new(2)),
            sighand_count: CacheAligned(AtomicI64::new(1)),
            live: CacheAligned(AtomicI64::new(1)),
            mm_users: CacheAligned(AtomicI64::new(1)),
        }
    }

    /// A thread joins the process (`copy_creds`, `copy_sighand`,
    /// `copy_signal`'s CLONE_THREAD branch, `copy_mm`).
    pub(crate) fn thread_forked(&self) {
        self.cred_usage.0.fetch_add(2, Ordering::Relaxed);
        self.sighand_count.0.fetch_add(1, Ordering::Relaxed);
        self.live.0.fetch_add(1, Ordering::Relaxed);
        self.mm_users.0.fetch_add(1, Ordering::Relaxed);
    }

    /// `do_exit`: `atomic_dec_and_test(&signal->live)`. Returns whether
    /// the group is dead (`group_dead`).
    pub(crate) fn exiting(&self) -> bool {
        self.live.0.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// `exit_mm()` -> `mmput()`, after the joiner was woken.
    pub(crate) fn mmput(&self) {
        self.mm_users.0.fetch_sub(1, Ordering::AcqRel);
    }

    /// `__exit_signal` -> `__cleanup_sighand`.
    pub(crate) fn released(&self) {
        self.sighand_count.0.fetch_sub(1, Ordering::AcqRel);
    }

    /// `__put_task_struct` -> `put_cred` for `real_cred` and `cred`.
    pub(crate) fn freed(&self) {
        self.cred_usage.0.fetch_sub(2, Ordering::AcqRel);
    }
}

/// The user's RLIMIT_NPROC count (`ucounts->rlimit[UCOUNT_RLIMIT_NPROC]`
/// of the init user namespace: one level).
static UCOUNTS_NPROC: CacheAligned<AtomicI64> = CacheAligned(AtomicI64::new(0));

/// `RLIMIT_NPROC` of the user (unlimited here, never hit: the check is a
/// load and a compare, as `is_rlimit_overlimit()` makes it).
static RLIMIT_NPROC: AtomicI64 = AtomicI64::new(i64::MAX);

/// One level of the pids controller (`struct pids_cgroup`): its charge
/// and its high watermark.
struct PidsLevel {
    counter: CacheAligned<AtomicI64>,
    watermark: AtomicI64,
}

/// The pids controller below the root, innermost last.
static PIDS_CGROUP: [PidsLevel; 3] = [const {
    PidsLevel {
        counter: CacheAligned(AtomicI64::new(0)),
        watermark: AtomicI64::new(0),
    }
}; 3];

/// Port of `inc_rlimit_ucounts()` + `is_rlimit_overlimit()` (in
/// `copy_creds()` and `copy_process()`) and of `pids_can_fork()` ->
/// `pids_try_charge()`, for every task `copy_process` makes.
pub(crate) fn charge_fork() {
    let n = UCOUNTS_NPROC.0.fetch_add(1, Ordering::Relaxed) + 1;
    core::hint::black_box(n > RLIMIT_NPROC.load(Ordering::Relaxed));
    for level in PIDS_CGROUP.iter().rev() {
        let new = level.counter.0.fetch_add(1, Ordering::Relaxed) + 1;
        // pids_update_watermark(): a racy read, a write only on a new high.
        if new > level.watermark.load(Ordering::Relaxed) {
            level.watermark.store(new, Ordering::Relaxed);
        }
    }
}

/// Undoes [`charge_fork`] (a fork that failed, or `release_task`:
/// `dec_rlimit_ucounts()` and `pids_release()` -> `pids_uncharge()`).
pub(crate) fn uncharge() {
    UCOUNTS_NPROC.0.fetch_sub(1, Ordering::Relaxed);
    for level in PIDS_CGROUP.iter().rev() {
        level.counter.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tasks charged now (the invariant check's view: back to its start).
pub(crate) fn charged() -> i64 {
    UCOUNTS_NPROC.0.load(Ordering::Relaxed)
}
