//! Processes: `copy_process`, `do_exit`/`exit_notify`, `release_task` and
//! `wait`, after Linux's kernel/fork.c and kernel/exit.c.
//!
//! A *process* is a task with pids: made by [`copy_process`], attached to
//! its pids (PID, TGID, PGID, SID; a `CLONE_THREAD` child only PID) and
//! linked to its parent under `tasklist_lock`. When it exits,
//! [`exit_notify`] reparents its children, then either makes it a zombie
//! for its parent to reap ([`wait_child`]) or, for a thread (autoreap),
//! releases it at once; [`release_task`] detaches the pids and drops the
//! task's link reference.
//!
//! **Strategies.** `release_task` runs in one of two ways, fixed per task
//! at creation: [`ReleaseStrategy::Stock`] (Linux before Mateusz Guzik's
//! "exit: perform randomness and pid work without tasklist_lock") calls
//! `add_device_randomness` and `free_pid` with `tasklist_lock` held;
//! [`ReleaseStrategy::Deferred`] (the change) collects the pids to free in
//! a `release_task_post` and does both after the unlock. `alloc_pid`'s
//! strategy is chosen per call ([`CloneArgs::alloc`]).
//!
//! **References.** A process holds a *link* reference to itself from
//! `copy_process` until `release_task` (Linux's `rcu_users`); the
//! scheduler holds its own until the task is switched away from for the
//! last time. Parents reach children through `children` under
//! `tasklist_lock`, which the link reference keeps valid.
//!
//! **Simplifications** (documented, not hidden): no signals (a child
//! becomes a zombie for its parent; threads autoreap); no killing: when a
//! namespace's init exits, allocation there is disabled (later spawns get
//! ENOMEM, as in Linux) and its children are reparented to the nearest
//! ancestor namespace's live init instead of being killed by
//! `zap_pid_ns_processes`; a thread group leader must outlive its threads
//! (the benchmark joins every thread); tasks never migrate.

use alloc::sync::Arc;
use core::num::NonZeroUsize;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::errno::Errno;
use crate::hlist::HlistNode;
use crate::pid::{AllocPidStrategy, PIDTYPE_MAX, PidRef, PidType, alloc_pid, free_pid};
use crate::pid_namespace::{
    PidNamespace, create_pid_namespace, disable_pid_allocation, init_pid_ns,
};
use crate::platform::{self, MAX_CPUS, cpu_id};
use crate::random::add_device_randomness;
use crate::sched::{self, current};
pub use crate::sync::TASKLIST_LOCK;
use crate::sync::{read_lock, write_lock_irq};
use crate::task::{Task, TaskFn, TaskRef, TaskState};

/// How `release_task` frees pids and feeds the entropy pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ReleaseStrategy {
    /// `free_pid` and `add_device_randomness` under `tasklist_lock`.
    Stock = 0,
    /// Both after `write_unlock_irq` (the change).
    Deferred = 1,
}

impl ReleaseStrategy {
    pub const ALL: [ReleaseStrategy; 2] = [ReleaseStrategy::Stock, ReleaseStrategy::Deferred];

    pub fn name(self) -> &'static str {
        match self {
            ReleaseStrategy::Stock => "stock",
            ReleaseStrategy::Deferred => "deferred",
        }
    }

    fn from_u8(v: u8) -> Self {
        if v == 1 {
            ReleaseStrategy::Deferred
        } else {
            ReleaseStrategy::Stock
        }
    }
}

/// The four strategy pairs the tests and the benchmark compare, named as
/// `strategies=` names them (`cmdline::STRATEGY_NAMES`, same order).
pub const PAIRS: [(&str, AllocPidStrategy, ReleaseStrategy); 4] = [
    ("stock", AllocPidStrategy::Stock, ReleaseStrategy::Stock),
    (
        "pidmap-once",
        AllocPidStrategy::SingleLock,
        ReleaseStrategy::Stock,
    ),
    (
        "exit-deferred",
        AllocPidStrategy::Stock,
        ReleaseStrategy::Deferred,
    ),
    (
        "both",
        AllocPidStrategy::SingleLock,
        ReleaseStrategy::Deferred,
    ),
];

/// What to create (the subset of `struct kernel_clone_args` we model).
#[derive(Clone, Copy)]
pub struct CloneArgs<'a> {
    pub name: &'a str,
    /// The CPU to run on; `None` is the current CPU.
    pub cpu: Option<usize>,
    pub entry: TaskFn,
    pub arg: usize,
    /// `CLONE_THREAD`: a thread of the caller's group, autoreaped, only
    /// its PID attached.
    pub thread: bool,
    /// `CLONE_NEWPID`: the child is init of a new child namespace of the
    /// caller's.
    pub newns: bool,
    /// Kernel-internal: allocate in this namespace instead of the caller's
    /// (`pid_ns_for_children` set up beforehand, as `unshare` does).
    pub pid_ns: Option<&'a Arc<PidNamespace>>,
    /// `set_tid`, innermost level first.
    pub set_tid: &'a [i32],
    /// The caller has CAP_CHECKPOINT_RESTORE over the namespaces.
    pub cap: bool,
    pub alloc: AllocPidStrategy,
    pub release: ReleaseStrategy,
}

impl<'a> CloneArgs<'a> {
    /// A process running `entry(arg)` on the current CPU, stock strategies.
    pub fn new(name: &'a str, entry: TaskFn, arg: usize) -> Self {
        CloneArgs {
            name,
            cpu: None,
            entry,
            arg,
            thread: false,
            newns: false,
            pid_ns: None,
            set_tid: &[],
            cap: true,
            alloc: AllocPidStrategy::Stock,
            release: ReleaseStrategy::Stock,
        }
    }
}

/// Per-CPU counters of the process paths.
struct ProcStats {
    forks: AtomicU64,
    fork_failures: AtomicU64,
    releases: AtomicU64,
}

static STATS: [ProcStats; MAX_CPUS] = [const {
    ProcStats {
        forks: AtomicU64::new(0),
        fork_failures: AtomicU64::new(0),
        releases: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// Processes created, failed creations and releases, summed over CPUs.
pub fn proc_stats() -> (u64, u64, u64) {
    STATS.iter().fold((0, 0, 0), |(a, b, c), s| {
        (
            a + s.forks.load(Ordering::Relaxed),
            b + s.fork_failures.load(Ordering::Relaxed),
            c + s.releases.load(Ordering::Relaxed),
        )
    })
}

/// Processes created, failed creations and releases on CPU `cpu`.
pub fn proc_stats_cpu(cpu: usize) -> (u64, u64, u64) {
    let s = &STATS[cpu];
    (
        s.forks.load(Ordering::Relaxed),
        s.fork_failures.load(Ordering::Relaxed),
        s.releases.load(Ordering::Relaxed),
    )
}

/// Whether `t` is a process (has its PID attached). Its PID is only
/// detached by `release_task`, which never runs while the task runs
/// unless the task runs it itself.
pub fn is_process(t: &Task) -> bool {
    !t.pid_links[PidType::Pid as usize].is_unhashed()
}

fn assert_irqs_off() {
    assert!(
        !platform::irqs_enabled(),
        "IF=1 inside a tasklist_lock write section"
    );
}

/// The task behind a node of some `children` list.
///
/// # Safety
/// `node` is a task's `sibling` node.
unsafe fn task_of_sibling(node: *mut HlistNode) -> *const Task {
    // SAFETY: per the contract (container_of).
    unsafe { node.byte_sub(core::mem::offset_of!(Task, sibling)) as *const Task }
}

/// Calls `f` on every child of `parent` (under tasklist_lock).
fn for_each_child(parent: &Task, mut f: impl FnMut(&Task) -> bool) {
    let mut n = parent.children.first();
    while !n.is_null() {
        // SAFETY: a node on `children` is a linked child's `sibling`; the
        // child's link reference keeps it alive while linked, and
        // tasklist_lock (held by the caller) keeps it linked.
        let (t, next) = unsafe { (&*task_of_sibling(n), (*n).next()) };
        if !f(t) {
            return;
        }
        n = next;
    }
}

/// Port of `task_active_pid_ns()`: the namespace of the task's PID (the
/// root for kernel tasks without one).
///
/// # Safety
/// tasklist_lock is held, or `t` is the current task.
unsafe fn active_ns(t: &Task) -> Arc<PidNamespace> {
    // SAFETY: per the contract.
    match unsafe { &t.links().pids[PidType::Pid as usize] } {
        Some(pid) => ns_arc(pid),
        None => init_pid_ns().clone(),
    }
}

/// The namespace of `pid`, as a counted reference.
fn ns_arc(pid: &PidRef) -> Arc<PidNamespace> {
    let ns: *const PidNamespace = pid.ns();
    // SAFETY: every namespace lives in an `Arc` (created by `Arc::new` in
    // pid_namespace), and `pid` holds a reference to its own, so the
    // count is at least 1 while we bump it.
    unsafe {
        Arc::increment_strong_count(ns);
        Arc::from_raw(ns)
    }
}

/// The current task's namespace (for pidctl and the benchmark).
pub fn current_ns() -> Arc<PidNamespace> {
    // SAFETY: the current task's own PID only changes in its own release.
    unsafe { active_ns(current()) }
}

/// A task's pid of type `ty`, if attached.
pub fn task_pid(t: &Task, ty: PidType) -> Option<PidRef> {
    let _g = read_lock(&TASKLIST_LOCK);
    // SAFETY: tasklist_lock is held for reading; we only read.
    unsafe { t.links().pids[ty as usize].clone() }
}

/// Port of `copy_process()` + `wake_up_new_task()`: a new process (or
/// thread) of the current task, made runnable. Returns a reference to it
/// (for joining threads); its parent reaps a process with [`wait_child`].
///
/// Errors: EINVAL (thread with newns, bad CPU, bad set_tid), ENOMEM (no
/// memory, or the namespace no longer accepts pids), ENOSPC (namespace
/// depth), EPERM, EEXIST, EAGAIN (from `alloc_pid`). A failure unwinds
/// everything (pid, stack, task, new namespace).
pub fn copy_process(args: &CloneArgs<'_>) -> Result<TaskRef, Errno> {
    let r = copy_process_inner(args);
    let s = &STATS[cpu_id()];
    match &r {
        Ok(_) => s.forks.fetch_add(1, Ordering::Relaxed),
        Err(_) => s.fork_failures.fetch_add(1, Ordering::Relaxed),
    };
    r
}

fn copy_process_inner(args: &CloneArgs<'_>) -> Result<TaskRef, Errno> {
    let me = current();
    if args.thread && (args.newns || args.pid_ns.is_some()) {
        return Err(Errno::EINVAL);
    }
    let cpu = args.cpu.unwrap_or_else(cpu_id);
    if cpu >= crate::arch::smp::online() {
        return Err(Errno::EINVAL);
    }
    let ns = match args.pid_ns {
        Some(ns) => ns.clone(),
        None => {
            let mine = current_ns();
            if args.newns {
                create_pid_namespace(&mine)?
            } else {
                mine
            }
        }
    };
    let t = Task::create(args.name, cpu, args.entry, args.arg).map_err(|_| Errno::ENOMEM)?;
    t.release_strategy
        .store(args.release as u8, Ordering::Relaxed);
    let pid = alloc_pid(&ns, args.set_tid, args.alloc, args.cap)?;
    sched::prepare_new_stack(&t);

    let g = write_lock_irq(&TASKLIST_LOCK);
    assert_irqs_off();
    // Don't start children in a dying pid namespace.
    if !ns.accepts_pids() {
        drop(g);
        free_pid(pid);
        return Err(Errno::ENOMEM);
    }
    // SAFETY: tasklist_lock is held for writing; `t` is not visible to
    // anyone else yet and `me` is the running parent.
    unsafe {
        if args.thread {
            let (my_leader, my_parent) = {
                let my = me.links();
                (my.group_leader, my.parent)
            };
            let leader = if my_leader.is_null() {
                me as *const Task
            } else {
                my_leader
            };
            (*leader).links().live_threads += 1;
            let links = t.links();
            links.thread = true;
            links.group_leader = leader;
            links.parent = my_parent;
        } else {
            let (my_pgid, my_sid) = {
                let my = me.links();
                (
                    my.pids[PidType::Pgid as usize].clone(),
                    my.pids[PidType::Sid as usize].clone(),
                )
            };
            let links = t.links();
            links.group_leader = &*t;
            links.parent = me;
            links.pids[PidType::Tgid as usize] = Some(pid.clone());
            links.pids[PidType::Pgid as usize] = my_pgid;
            links.pids[PidType::Sid as usize] = my_sid;
            if pid.numbers()[pid.level() as usize].nr == 1 {
                // is_child_reaper()
                ns.set_child_reaper(NonZeroUsize::new(t.as_ptr() as usize));
            }
            me.children.add_head(&raw const t.sibling as *mut _);
        }
        let links = t.links();
        links.pids[PidType::Pid as usize] = Some(pid);
        for ty in 0..PIDTYPE_MAX {
            if let Some(p) = &links.pids[ty] {
                p.tasks(pid_type(ty))
                    .add_head(&raw const t.pid_links[ty] as *mut _);
            }
        }
    }
    // The link reference, given back by release_task.
    let _ = t.clone().into_raw();
    drop(g);
    sched::wake_up_new_task(t.clone());
    Ok(t)
}

fn pid_type(i: usize) -> PidType {
    [PidType::Pid, PidType::Tgid, PidType::Pgid, PidType::Sid][i]
}

/// The reaper for the orphans of `father` (under tasklist_lock): its
/// namespace's init, or, if `father` is that init (dying), the nearest
/// ancestor namespace's init that still accepts pids (the root's never
/// exits).
///
/// # Safety
/// tasklist_lock is held for writing.
unsafe fn find_new_reaper(father: &Task) -> *const Task {
    // SAFETY: per the contract.
    let mut ns = unsafe { active_ns(father) };
    loop {
        if let Some(r) = ns.child_reaper() {
            let r = r.get() as *const Task;
            if !ptr::eq(r, father) && ns.accepts_pids() {
                return r;
            }
        }
        match ns.parent() {
            Some(p) => ns = p.clone(),
            None => return ptr::null(),
        }
    }
}

/// Port of `do_exit()` for processes: exit_notify, then switch away for
/// good. Called through `sched::exit_current`.
pub fn do_exit(code: i32) -> ! {
    let me = current();
    me.set_exit_code(code);
    exit_notify(me);
    sched::exit_final()
}

/// Port of `exit_notify()` (with `forget_original_parent`).
fn exit_notify(me: &Task) {
    // A dying namespace init stops pid allocation first (Linux:
    // zap_pid_ns_processes -> disable_pid_allocation, outside the lock).
    // Borrowed, not an Arc clone: this runs on every exit.
    // SAFETY: `me` is the current task; only its own release_task (below)
    // detaches its pid.
    if let Some(pid) = unsafe { me.links().pids[PidType::Pid as usize].as_ref() } {
        let ns = pid.ns();
        if ns.child_reaper().map(NonZeroUsize::get) == Some(me as *const Task as usize) {
            disable_pid_allocation(ns);
        }
    }
    let mut wake: *const Task = ptr::null();
    let autoreap;
    {
        let _g = write_lock_irq(&TASKLIST_LOCK);
        assert_irqs_off();
        // SAFETY: tasklist_lock is held for writing.
        unsafe {
            if !me.children.is_empty() {
                let reaper = find_new_reaper(me);
                assert!(
                    !reaper.is_null(),
                    "no reaper for the children of {}",
                    me.name()
                );
                let mut zombie_moved = false;
                loop {
                    let n = me.children.first();
                    if n.is_null() {
                        break;
                    }
                    let child = &*task_of_sibling(n);
                    HlistNode::del_init(n);
                    child.links().parent = reaper;
                    (*reaper).children.add_head(n);
                    zombie_moved |= child.state() == TaskState::Zombie;
                }
                if zombie_moved {
                    wake = reaper;
                }
            }
            let links = me.links();
            autoreap = links.thread || links.parent.is_null();
            if autoreap {
                // EXIT_DEAD is set by release_task below.
            } else {
                me.set_state(TaskState::Zombie);
                // do_notify_parent -> __wake_up_parent
                sched::wake_up_process(&*links.parent);
            }
            if !wake.is_null() {
                sched::wake_up_process(&*wake);
            }
        }
    }
    if autoreap {
        // SAFETY: the link reference taken in copy_process; an autoreaped
        // task is released exactly once, here.
        release_task(unsafe { TaskRef::from_raw(me) });
    }
}

/// Port of `struct release_task_post`: the pids to free after the unlock.
struct ReleasePost {
    pids: [Option<PidRef>; PIDTYPE_MAX],
}

/// Port of `__change_pid(.., NULL)`/`detach_pid()`: unlinks `t` from its
/// pid of type `ty`; if the pid has no task left, frees it now (stock) or
/// hands it to `post` (deferred).
///
/// # Safety
/// tasklist_lock is held for writing.
unsafe fn detach_pid(post: &mut ReleasePost, t: &Task, ty: usize, stock: bool) {
    // SAFETY: per the contract.
    let Some(pid) = (unsafe { t.links().pids[ty].take() }) else {
        return;
    };
    // SAFETY: the node is on `pid`'s list for `ty`, under tasklist_lock.
    unsafe { HlistNode::del_init(&raw const t.pid_links[ty] as *mut _) };
    if (0..PIDTYPE_MAX).any(|i| pid.pid_has_task(pid_type(i))) {
        return; // drops our reference only
    }
    if stock {
        free_pid(pid);
    } else {
        post.pids[ty] = Some(pid);
    }
}

/// Port of `release_task()`: detaches the pids under `tasklist_lock`,
/// unlinks the task from its parent, feeds its run time to the entropy
/// pool, marks it Dead (waking a joiner) and drops the link reference.
fn release_task(p: TaskRef) {
    let stock = ReleaseStrategy::from_u8(p.release_strategy.load(Ordering::Relaxed))
        == ReleaseStrategy::Stock;
    let mut post = ReleasePost {
        pids: [None, None, None, None],
    };
    let runtime = p.runtime().to_le_bytes();
    {
        let _g = write_lock_irq(&TASKLIST_LOCK);
        assert_irqs_off();
        // SAFETY: tasklist_lock is held for writing.
        unsafe {
            // __exit_signal()
            if stock {
                add_device_randomness(&runtime);
            }
            let (thread, leader, live_threads) = {
                let links = p.links();
                (links.thread, links.group_leader, links.live_threads)
            };
            debug_assert_eq!(live_threads, 0, "{} released with live threads", p.name());
            // __unhash_process()
            detach_pid(&mut post, &p, PidType::Pid as usize, stock);
            if !thread {
                for ty in 1..PIDTYPE_MAX {
                    detach_pid(&mut post, &p, ty, stock);
                }
                HlistNode::del_init(&raw const p.sibling as *mut _);
            } else {
                (*leader).links().live_threads -= 1;
            }
        }
    }
    if !stock {
        add_device_randomness(&runtime);
        // free_pids()
        for pid in post.pids.iter_mut().filter_map(Option::take) {
            free_pid(pid);
        }
    }
    STATS[cpu_id()].releases.fetch_add(1, Ordering::Relaxed);
    sched::mark_dead_and_wake_joiner(&p);
    // put_task_struct_rcu_user(): the link reference.
    drop(p);
}

/// Port of `do_wait()`/`wait_task_zombie()`: reaps a zombie child of the
/// current task (`target`, or any) and returns its pid in the caller's
/// namespace and its exit code. ECHILD when there is no such child;
/// EAGAIN when `block` is false and it has not exited yet (Linux's WNOHANG
/// returns 0 instead).
pub fn wait_child(target: Option<&Task>, block: bool) -> Result<(i32, i32), Errno> {
    let me = current();
    loop {
        let mut any = false;
        let mut reaped: *const Task = ptr::null();
        let mut nr = 0;
        {
            let _g = read_lock(&TASKLIST_LOCK);
            for_each_child(me, |c| {
                if target.is_some_and(|t| !ptr::eq(t, c)) {
                    return true;
                }
                any = true;
                // EXIT_ZOMBIE -> EXIT_DEAD claims it (one waiter wins).
                if c.transition(TaskState::Zombie, TaskState::Dead) {
                    reaped = c;
                    // The pid as the waiter's namespace sees it.
                    // SAFETY: tasklist_lock is held for reading; `me` is
                    // current, so its own pid is stable.
                    nr = unsafe {
                        match (
                            c.links().pids[PidType::Pid as usize].as_ref(),
                            me.links().pids[PidType::Pid as usize].as_ref(),
                        ) {
                            (Some(p), Some(mine)) => crate::pid::pid_nr_ns(p, mine.ns()),
                            (Some(p), None) => p.nr(),
                            _ => 0,
                        }
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
            return Ok((nr, code));
        }
        if !any {
            return Err(Errno::ECHILD);
        }
        if !block {
            return Err(Errno::EAGAIN);
        }
        sched::block_until(|| {
            let _g = read_lock(&TASKLIST_LOCK);
            let mut ready = false;
            let mut gone = true;
            for_each_child(me, |c| {
                if target.is_none_or(|t| ptr::eq(t, c)) {
                    gone = false;
                    ready |= c.state() == TaskState::Zombie;
                }
                !ready
            });
            ready || gone
        });
    }
}

/// Entry of a task that waits until asked to exit ([`Task::request_exit`]
/// plus a wake-up), then exits with the requested code.
pub fn park(_: usize) {
    let me = current();
    sched::block_until(|| me.exit_request().is_some());
    do_exit(me.exit_request().unwrap_or(0))
}

/// Asks a parked task to exit with `code`.
pub fn request_exit(t: &Task, code: i32) {
    t.request_exit(code);
    sched::wake_up_process(t);
}

/// Makes the boot task init: pid 1 of the root namespace, its own TGID,
/// process group and session, and the root's child reaper.
pub fn init_task_pids(init: &Task) -> Result<(), Errno> {
    let ns = init_pid_ns();
    let pid = alloc_pid(ns, &[], AllocPidStrategy::Stock, true)?;
    let _g = write_lock_irq(&TASKLIST_LOCK);
    // SAFETY: tasklist_lock is held for writing; init is the current task.
    unsafe {
        let links = init.links();
        links.group_leader = init;
        for ty in 0..PIDTYPE_MAX {
            links.pids[ty] = Some(pid.clone());
            pid.tasks(pid_type(ty))
                .add_head(&raw const init.pid_links[ty] as *mut _);
        }
    }
    ns.set_child_reaper(NonZeroUsize::new(init as *const Task as usize));
    Ok(())
}

/// Children of `t` (for `ps` and checks).
pub fn nr_children(t: &Task) -> usize {
    let _g = read_lock(&TASKLIST_LOCK);
    let mut n = 0;
    for_each_child(t, |_| {
        n += 1;
        true
    });
    n
}
