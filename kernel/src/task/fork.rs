//! Creating processes and threads (Linux's kernel/fork.c): [`CloneArgs`],
//! [`copy_process`], and the boot task's pids.
//!
//! `copy_process` allocates the task and its stack, calls `alloc_pid`
//! (in the caller's namespace or a new child one), then under
//! `write_lock_irq(&tasklist_lock)` rechecks that the namespace still
//! accepts pids, attaches the pids (PID, TGID, PGID, SID; a thread only
//! PID; PGID and SID are the parent's, or with `setsid` the child's own),
//! links a process at the tail of its parent's `children` (a thread goes on
//! its group's `thread_head` instead, never on `children`). A failure
//! unwinds everything.

use crate::pid::namespace::Reaper;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicPtr, Ordering};

use super::sched::{self, current};
use super::signal::SignalRef;
use super::stats;
use super::tasklist::{active_ns, write_lock_irq_tasklist};
use super::{Task, TaskFn, TaskRef, cgroup, shared};
use crate::klib::errno::Errno;
use crate::klib::lockctx::{self, Site};
use crate::pid::namespace::{PidNamespace, create_pid_namespace, init_pid_ns};
use crate::pid::{PidType, alloc_pid, alloc_pid_as, free_pid_as};
use crate::platform::cpu_id;
use crate::strategy::StrategyPair;

/// What to create (the subset of `struct kernel_clone_args` we model).
#[derive(Clone, Copy)]
pub(crate) struct CloneArgs<'a> {
    pub(crate) name: &'a str,
    /// The CPU to run on; `None` is the current CPU.
    pub(crate) cpu: Option<usize>,
    pub(crate) entry: TaskFn,
    pub(crate) arg: usize,
    /// `CLONE_THREAD`: a thread of the caller's group, autoreaped, only
    /// its PID attached.
    pub(crate) thread: bool,
    /// `CLONE_NEWPID`: the child is init of a new child namespace of the
    /// caller's.
    pub(crate) newns: bool,
    /// The child starts as leader of a new session and process group, as
    /// if its first act were `setsid()`: its PGID and SID are its own pid,
    /// not the caller's. Not for threads.
    pub(crate) setsid: bool,
    /// Kernel-internal: allocate in this namespace instead of the caller's
    /// (`pid_ns_for_children` set up beforehand, as `unshare` does).
    pub(crate) pid_ns: Option<&'a Arc<PidNamespace>>,
    /// `set_tid`, innermost level first.
    pub(crate) set_tid: &'a [i32],
    /// The caller has CAP_CHECKPOINT_RESTORE over the namespaces.
    pub(crate) cap: bool,
    /// Which `alloc_pid` this call runs and which `release_task` the child
    /// will.
    pub(crate) strategy: &'static StrategyPair,
}

impl<'a> CloneArgs<'a> {
    /// A process running `entry(arg)` on the current CPU, stock strategies.
    pub(crate) fn new(name: &'a str, entry: TaskFn, arg: usize) -> Self {
        CloneArgs {
            name,
            cpu: None,
            entry,
            arg,
            thread: false,
            newns: false,
            setsid: false,
            pid_ns: None,
            set_tid: &[],
            cap: true,
            strategy: StrategyPair::stock(),
        }
    }
}

/// The current task's namespace (for pidctl and the benchmark).
pub(crate) fn current_ns() -> Arc<PidNamespace> {
    // SAFETY: `current()` is the running task.
    active_ns(unsafe { current().own_pid() }.as_deref())
}

/// `depth` namespaces below `root`, each with a parked init (pid 1 there,
/// running `strategy`), and `root` itself given one if `root_init`: the
/// inits, outermost first (reap them innermost first), and the innermost
/// namespace. For benchmarks and tests that spawn some levels down.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) fn ns_chain(
    root: Arc<PidNamespace>,
    depth: u32,
    root_init: bool,
    strategy: &'static StrategyPair,
) -> Result<(alloc::vec::Vec<TaskRef>, Arc<PidNamespace>), Errno> {
    let mut inits = alloc::vec::Vec::new();
    let mut ns = root;
    for level in 0..=depth {
        if level > 0 {
            ns = create_pid_namespace(&ns)?;
        } else if !root_init {
            continue;
        }
        let mut args = CloneArgs::new("nsinit", super::exit::park, 0);
        args.pid_ns = Some(&ns);
        args.strategy = strategy;
        inits.push(copy_process(&args)?);
    }
    Ok((inits, ns))
}

/// Port of `copy_process()` + `wake_up_new_task()`: a new process (or
/// thread) of the current task, made runnable. Returns a reference to it
/// (for joining threads); its parent reaps a process with
/// [`wait_child`](super::wait::wait_child).
///
/// Errors: EINVAL (thread with newns, pid_ns or setsid, bad CPU, bad
/// set_tid), ENOMEM (no memory, or the namespace no longer accepts pids),
/// ENOSPC (namespace depth), EPERM, EEXIST, EAGAIN (from `alloc_pid`). A
/// failure unwinds everything (pid, stack, task, new namespace).
pub(crate) fn copy_process(args: &CloneArgs<'_>) -> Result<TaskRef, Errno> {
    let r = crate::strategy::per_version!(args.strategy.index, copy_process_inner(args));
    stats::count_fork(r.is_ok());
    r
}

/// `copy_process` as the version at index `V` (`args.strategy`) compiles
/// it.
// A function of its own, as fork.c's copy_process is in Linux (a compilation
// unit of its own): see `per_version!` in strategy.rs.
#[inline(never)]
fn copy_process_inner<const V: u8>(args: &CloneArgs<'_>) -> Result<TaskRef, Errno> {
    let version = StrategyPair::of::<V>();
    let me = current();
    if args.thread && (args.newns || args.pid_ns.is_some() || args.setsid) {
        return Err(Errno::EINVAL);
    }
    let cpu = args.cpu.unwrap_or_else(cpu_id);
    if cpu >= crate::arch::smp::online() {
        return Err(Errno::EINVAL);
    }
    // Borrowed, not counted: the caller's own pid keeps its namespace
    // alive, and this runs on every spawn.
    // SAFETY: `me` is the running task.
    let mine = unsafe { me.own_pid() };
    let new_ns;
    let ns: &PidNamespace = match args.pid_ns {
        Some(ns) => ns,
        None if args.newns => {
            new_ns = create_pid_namespace(&active_ns(mine.as_deref()))?;
            &new_ns
        }
        None => mine.as_deref().map_or(&**init_pid_ns(), |p| p.ns()),
    };
    let t = Task::create(args.name, cpu, args.entry, args.arg).map_err(|_| Errno::ENOMEM)?;
    // copy_signal(): a process gets its own group, a thread shares ours.
    let signal = if args.thread {
        me.signal()
            .expect("a thread's creator is a process")
            .clone()
    } else {
        SignalRef::new().ok_or(Errno::ENOMEM)?
    };
    // SAFETY: `t` is not visible to anyone yet.
    unsafe { t.set_signal(signal) };
    t.set_version(version);
    if args.thread {
        t.set_thread();
    }
    let pid = alloc_pid_as::<V>(ns, args.set_tid, args.cap)?;
    cgroup::cgroup_can_fork();
    sched::prepare_new_stack(&t);
    run_alloc_window_hook(ns);

    let mut g = write_lock_irq_tasklist();
    // Don't start children in a dying pid namespace.
    if !ns.accepts_pids() {
        drop(g);
        cgroup::cgroup_cancel_fork();
        free_pid_as::<V>(pid);
        return Err(Errno::ENOMEM);
    }
    // spin_lock(&current->sighand->siglock), held while the child is
    // attached.
    let my_signal = me.signal().expect("copy_process from a process");
    let siglock = my_signal.lock_siglock();
    if args.thread {
        let (my_leader, my_parent) = {
            let my = me.links(&g);
            (my.group_leader, my.parent)
        };
        let leader = if my_leader.is_null() {
            me as *const Task
        } else {
            my_leader
        };
        // SAFETY: the group leader outlives its threads (it joins them),
        // so it is alive.
        unsafe { &*leader }.links_mut(&mut g).live_threads += 1;
        // current->signal->nr_threads++, under siglock only.
        my_signal.add_threads(&siglock, 1);
        let links = t.links_mut(&mut g);
        links.thread = true;
        links.group_leader = leader;
        links.parent = my_parent;
        // list_add_tail_rcu(&p->thread_node, &p->signal->thread_head)
        // SAFETY: under the write lock (and siglock, as Linux has it); the
        // node is on no list yet, and the task stays pinned until
        // release_task unlinks it.
        unsafe {
            my_signal
                .thread_head
                .add_tail(&raw const t.thread_node as *mut _)
        };
    } else {
        let (pgid, sid) = if args.setsid {
            // ksys_setsid(): the new group and session are the child's pid.
            (Some(pid.clone()), Some(pid.clone()))
        } else {
            let my = me.links(&g);
            (
                my.pid(PidType::Pgid).cloned(),
                my.pid(PidType::Sid).cloned(),
            )
        };
        let links = t.links_mut(&mut g);
        links.group_leader = &*t;
        links.parent = me;
        t.set_pid_link(&mut g, PidType::Tgid, Some(pid.clone()));
        t.set_pid_link(&mut g, PidType::Pgid, pgid);
        t.set_pid_link(&mut g, PidType::Sid, sid);
        if pid.numbers()[pid.level() as usize].nr == 1 {
            // is_child_reaper()
            ns.set_child_reaper(Some(Reaper::of(&t)));
        }
        // Port of `list_add_tail(&p->sibling, &p->real_parent->children)`
        // (the leader branch only), and copy_signal()'s `thread_head` with
        // the group's first task on it.
        // SAFETY: under the write lock; `t` is on no list yet and stays
        // pinned until release_task unlinks it; `me` is pinned.
        unsafe {
            me.children.add_tail(&raw const t.sibling as *mut _);
            t.signal()
                .expect("set above")
                .thread_head
                .add_tail(&raw const t.thread_node as *mut _);
        }
    }
    t.set_pid_link(&mut g, PidType::Pid, Some(pid));
    lockctx::record(Site::ForkAttach);
    for ty in PidType::ALL {
        if let Some(p) = t.links(&g).pid(ty) {
            // SAFETY: under the write lock; the node is on no list yet.
            unsafe { p.tasks(ty).add_head(&raw const t.pid_links[ty] as *mut _) };
        }
    }
    // The link reference, given back by release_task.
    let _ = t.clone().into_raw();
    drop(siglock);
    drop(g);
    // The shared lines every fork writes outside the locks: the user's
    // and the cgroup's counts, and a thread's process's refcounts.
    shared::charge_fork();
    if args.thread {
        my_signal.lines.thread_forked();
    }
    cgroup::cgroup_post_fork(&t);
    sched::wake_up_new_task(t.clone());
    Ok(t)
}

/// A test's `fn(&PidNamespace)` run by `copy_process` between `alloc_pid`
/// and taking `tasklist_lock`, or null: the window in which a namespace's
/// init may die, which the PIDNS_ADDING recheck under the lock covers.
static ALLOC_WINDOW_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Sets (None: clears) the hook `copy_process` runs between `alloc_pid`
/// and `tasklist_lock`, with the namespace it allocated in.
pub(crate) fn set_alloc_window_hook(hook: Option<fn(&PidNamespace)>) {
    let p = hook.map_or(core::ptr::null_mut(), |f| f as *mut ());
    ALLOC_WINDOW_HOOK.store(p, Ordering::Release);
}

#[inline]
fn run_alloc_window_hook(ns: &PidNamespace) {
    let p = ALLOC_WINDOW_HOOK.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: only `set_alloc_window_hook` stores here, and it stores
        // a `fn(&PidNamespace)`.
        let hook: fn(&PidNamespace) = unsafe { core::mem::transmute(p) };
        hook(ns);
    }
}

/// Makes the boot task init: pid 1 of the root namespace, its own TGID,
/// process group and session, and the root's child reaper.
pub(crate) fn init_task_pids(init: &Task) -> Result<(), Errno> {
    let ns = init_pid_ns();
    let signal = SignalRef::new().ok_or(Errno::ENOMEM)?;
    // SAFETY: init runs on the boot CPU and nothing has looked at it yet.
    unsafe { init.set_signal(signal) };
    let pid = alloc_pid(ns, &[], StrategyPair::stock(), true)?;
    let mut g = write_lock_irq_tasklist();
    init.links_mut(&mut g).group_leader = init;
    // SAFETY: under the write lock; init's node is on no list yet and init
    // never goes away.
    unsafe {
        init.signal()
            .expect("set above")
            .thread_head
            .add_tail(&raw const init.thread_node as *mut _)
    };
    for ty in PidType::ALL {
        init.set_pid_link(&mut g, ty, Some(pid.clone()));
        // SAFETY: under the write lock; init's nodes are on no list yet.
        unsafe {
            pid.tasks(ty)
                .add_head(&raw const init.pid_links[ty] as *mut _)
        };
    }
    drop(g);
    ns.set_child_reaper(Some(Reaper::of(init)));
    Ok(())
}

/// Parks `n` processes in the root pid namespace, children of the caller,
/// as a booted system has its services and kernel threads there: the pids
/// a benchmark's allocations find taken. They never exit (the caller keeps
/// the references).
pub(crate) fn park_in_root(n: u32) -> Result<alloc::vec::Vec<TaskRef>, Errno> {
    (0..n)
        .map(|_| {
            let mut args = CloneArgs::new("parked", super::exit::park, 0);
            args.pid_ns = Some(init_pid_ns());
            copy_process(&args)
        })
        .collect()
}
