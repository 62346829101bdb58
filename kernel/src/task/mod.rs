//! Tasks: the kernel's `task_struct`, its kernel stack, and its refcount.
//!
//! A task is allocated from a per-CPU object cache and runs on its own
//! kernel stack from another cache, which on the machine takes its stacks
//! from the guarded stack region (`mm::stack`). `TaskRef` is a counted reference
//! (`get_task_struct`/`put_task_struct`): the task and its stack go back to
//! their caches when the last reference is dropped. The scheduler holds one
//! reference from creation until the task has died and been switched away
//! from for the last time, so a task never frees the stack it runs on.
//!
//! This file is portable; switching between tasks is the scheduler's
//! business (`sched`, bare metal only).

pub(crate) mod cgroup;
#[cfg(target_os = "none")]
pub(crate) mod exit;
#[cfg(target_os = "none")]
pub(crate) mod fork;
// The scheduler (bare metal) uses it; the loom model runs on the host.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) mod kick;
#[cfg(target_os = "none")]
pub(crate) mod nohz;
#[cfg(target_os = "none")]
pub(crate) mod sched;
pub(crate) mod shared;
pub(crate) mod signal;
pub(crate) mod stats;
mod tasklist;
#[cfg(target_os = "none")]
pub(crate) mod wait;

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering,
};

use crate::klib::fault_inject::{FaultSite, should_fail};
use crate::klib::hlist::HlistNode;
use crate::klib::list::ListHead;
use crate::mm::cache::{Backing, ObjCache};
use crate::pid::namespace::Reaper;
use crate::pid::{PIDTYPE_MAX, PerPidType, Pid};
use crate::strategy::StrategyPair;
use signal::SignalRef;

pub(crate) use tasklist::{
    ProcLinks, is_process, read_lock_tasklist, task_pid, tasklist_writer_waiting,
    write_lock_irq_tasklist,
};

/// Size of every task's kernel stack (Linux's 16 KiB).
pub(crate) const STACK_SIZE: usize = 16 * 1024;
/// Written at the lowest word of every owned stack; a task whose canary is
/// gone overflowed its stack.
pub(crate) const STACK_CANARY: u64 = 0x5354_4143_4b21_2121;

/// A task's scheduling and exit state (Linux's `__state` and `exit_state`
/// folded into one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum TaskState {
    /// Runnable or running (TASK_RUNNING).
    Running = 0,
    /// Waiting for a wake-up (TASK_INTERRUPTIBLE).
    Blocked = 1,
    /// Exited, waiting to be reaped (EXIT_ZOMBIE).
    Zombie = 2,
    /// Exited and released; only references keep it (EXIT_DEAD).
    Dead = 3,
}

impl TaskState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => TaskState::Running,
            1 => TaskState::Blocked,
            2 => TaskState::Zombie,
            _ => TaskState::Dead,
        }
    }
}

/// A task's short name (like `comm`), NUL-padded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskName([u8; 16]);

impl TaskName {
    /// `name`, truncated to 16 bytes (at a character boundary).
    pub(crate) fn new(name: &str) -> Self {
        let mut end = name.len().min(16);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut b = [0; 16];
        b[..end].copy_from_slice(&name.as_bytes()[..end]);
        TaskName(b)
    }

    pub(crate) fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&c| c == 0).unwrap_or(16);
        core::str::from_utf8(&self.0[..len]).unwrap_or("?")
    }
}

impl core::fmt::Debug for TaskName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a new task runs: `entry(arg)`, then it exits.
pub(crate) type TaskFn = fn(usize);

/// The task structure.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // scheduler fields
pub(crate) struct Task {
    /// Saved stack pointer while switched out (scheduler only).
    pub(crate) sp: UnsafeCell<u64>,
    /// Next task in a run queue (under that run queue's lock).
    pub(crate) rq_next: UnsafeCell<*const Task>,
    usage: AtomicUsize,
    state: AtomicU8,
    /// The CPU the task runs on (tasks do not migrate).
    cpu: u32,
    name: TaskName,
    /// Base of the owned kernel stack (None: a boot or AP stack adopted as
    /// a task, never freed).
    stack: Option<NonNull<u8>>,
    pub(crate) entry: Option<TaskFn>,
    pub(crate) arg: usize,
    exit_code: AtomicI32,
    /// TSC cycles spent running (Linux's `se.sum_exec_runtime`).
    runtime: AtomicU64,
    /// TSC at the last switch to this task (scheduler only).
    pub(crate) switched_in: UnsafeCell<u64>,
    /// The task waiting for this one to exit (a join), if any.
    pub(crate) joiner: AtomicPtr<Task>,
    /// Process links (pids, parent, thread group), reached only through
    /// the `tasklist_lock` guards (see [`tasklist`]).
    links: UnsafeCell<ProcLinks>,
    /// A copy of the PID link's pointer (null when none), so the task can
    /// read its own pid without `tasklist_lock` (`Task::own_pid`).
    own_pid: AtomicPtr<Pid>,
    /// Port of `task->pid_links[]`: this task on its pids' task lists.
    pub(crate) pid_links: PerPidType<HlistNode>,
    /// Port of `task->children`: the processes this task is parent of,
    /// oldest first (threads are never on it).
    pub(crate) children: ListHead,
    /// Port of `task->sibling`: this process on its parent's `children`.
    pub(crate) sibling: ListHead,
    /// Port of `task->thread_node`: this task on its group's
    /// `thread_head`, leader first, then its threads oldest first.
    pub(crate) thread_node: ListHead,
    /// The task waits in `do_wait` for a child (Linux: it is on its
    /// group's `signal->wait_chldexit` queue): a child's exit wakes every
    /// thread of the parent's group that has this set.
    wait_chldexit: AtomicBool,
    /// Port of `task->cg_list`: this task on its css_set's task (or dying)
    /// list, under `css_set_lock` (see [`cgroup`]).
    pub(crate) cg_node: HlistNode,
    /// The task holds a css_set reference (`cgroup_post_fork` ran).
    pub(crate) css_linked: AtomicBool,
    /// A CLONE_THREAD child (set by `copy_process` before the task is
    /// visible; the same as its links' `thread`, readable without a lock).
    is_thread: AtomicBool,
    /// An exit asked for by someone else (`EXIT_NONE` when none); parked
    /// tasks wait for it.
    exit_request: AtomicI32,
    /// Port of `nvcsw`: times the task blocked (written by its own CPU).
    nvcsw: AtomicU64,
    /// The thread group's signal struct (processes only); set before the
    /// task is visible to anyone else and never changed after.
    signal: UnsafeCell<Option<SignalRef>>,
    /// The kernel version (`StrategyPair::index`) whose `release_task` and
    /// `pidmap_lock` this task's exit runs; set by `copy_process` before
    /// the task is visible.
    version: AtomicU8,
}

/// No exit requested.
pub(crate) const EXIT_NONE: i32 = i32::MIN;

static NR_TASKS: AtomicUsize = AtomicUsize::new(0);

/// Tasks allocated and not yet freed (every kind: idle, kernel, process).
pub(crate) fn nr_tasks() -> usize {
    NR_TASKS.load(Ordering::Relaxed)
}

// SAFETY: the UnsafeCell fields are only touched by the scheduler on the
// task's own CPU with interrupts off (sp, switched_in) or under the run
// queue lock (rq_next); everything else is atomic or immutable.
unsafe impl Sync for Task {}
// SAFETY: as above; a task may be referenced from any CPU.
unsafe impl Send for Task {}

/// Tasks start a cache line each and share none (Linux's task_struct
/// cache is aligned to `L1_CACHE_BYTES`), so two CPUs' tasks never share a
/// line by the allocator's chance.
pub(crate) const TASK_LAYOUT: Layout = match Layout::new::<Task>().align_to(64) {
    Ok(l) => l.pad_to_align(),
    Err(_) => panic!("bad task layout"),
};
static TASK_CACHE: ObjCache = ObjCache::new("task", TASK_LAYOUT);
static STACK_CACHE: ObjCache = ObjCache::with_backing(
    "kernel_stack",
    match Layout::from_size_align(STACK_SIZE, 16) {
        Ok(l) => l,
        Err(_) => panic!("bad stack layout"),
    },
    STACK_BACKING,
);

/// Kernel stacks come from the guarded stack region on the machine (an
/// overflow hits an unmapped page), from the heap on the host.
#[cfg(target_os = "none")]
const STACK_BACKING: Backing = Backing {
    alloc: |layout| {
        crate::mm::stack::alloc_stack(layout.size() as u64)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    },
    free: region_free,
};
#[cfg(not(target_os = "none"))]
const STACK_BACKING: Backing = crate::mm::cache::HEAP_BACKING;

/// # Safety
/// As `Backing::free`: a stack from the region, freed once.
#[cfg(target_os = "none")]
unsafe fn region_free(stack: *mut u8, layout: Layout) {
    if let Some(stack) = NonNull::new(stack) {
        // SAFETY: per the contract, a region stack of this size.
        unsafe { crate::mm::stack::free_stack(stack, layout.size() as u64) }
    }
}

/// The cache tasks come from.
pub(crate) fn task_cache() -> &'static ObjCache {
    &TASK_CACHE
}

/// The cache kernel stacks come from.
pub(crate) fn stack_cache() -> &'static ObjCache {
    &STACK_CACHE
}

/// Why a task could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NoMemory;

impl Task {
    /// Allocates a task with its own stack, runnable, with one reference
    /// (the returned one; `wake_up_new_task` takes a reference for the
    /// scheduler).
    /// [`FaultSite::StackAlloc`] and [`FaultSite::TaskAlloc`] make the
    /// two allocations fail.
    pub(crate) fn create(
        name: &str,
        cpu: usize,
        entry: TaskFn,
        arg: usize,
    ) -> Result<TaskRef, NoMemory> {
        if should_fail(FaultSite::StackAlloc) {
            return Err(NoMemory);
        }
        let stack = STACK_CACHE.alloc().ok_or(NoMemory)?;
        // SAFETY: the stack block is STACK_SIZE bytes, 16-aligned, ours.
        unsafe { (stack.as_ptr() as *mut u64).write(STACK_CANARY) };
        match Self::alloc(name, cpu, Some(stack), Some(entry), arg) {
            Ok(t) => Ok(t),
            Err(e) => {
                // SAFETY: the stack came from STACK_CACHE and is unused.
                unsafe { STACK_CACHE.free(stack) };
                Err(e)
            }
        }
    }

    /// Wraps the context already running (a boot or AP stack) as a task.
    pub(crate) fn adopt(name: &str, cpu: usize) -> Result<TaskRef, NoMemory> {
        Self::alloc(name, cpu, None, None, 0)
    }

    fn alloc(
        name: &str,
        cpu: usize,
        stack: Option<NonNull<u8>>,
        entry: Option<TaskFn>,
        arg: usize,
    ) -> Result<TaskRef, NoMemory> {
        if should_fail(FaultSite::TaskAlloc) {
            return Err(NoMemory);
        }
        let mem = TASK_CACHE.alloc().ok_or(NoMemory)?.cast::<Task>();
        // SAFETY: `mem` is a fresh block of TASK_LAYOUT (Task's, aligned to a
        // cache line).
        unsafe {
            mem.as_ptr().write(Task {
                sp: UnsafeCell::new(0),
                rq_next: UnsafeCell::new(core::ptr::null()),
                usage: AtomicUsize::new(1),
                state: AtomicU8::new(TaskState::Running as u8),
                cpu: cpu as u32,
                name: TaskName::new(name),
                stack,
                entry,
                arg,
                exit_code: AtomicI32::new(0),
                runtime: AtomicU64::new(0),
                switched_in: UnsafeCell::new(0),
                joiner: AtomicPtr::new(core::ptr::null_mut()),
                links: UnsafeCell::new(ProcLinks::new()),
                own_pid: AtomicPtr::new(core::ptr::null_mut()),
                pid_links: PerPidType([const { HlistNode::new() }; PIDTYPE_MAX]),
                children: ListHead::new(),
                sibling: ListHead::new(),
                thread_node: ListHead::new(),
                wait_chldexit: AtomicBool::new(false),
                cg_node: HlistNode::new(),
                css_linked: AtomicBool::new(false),
                is_thread: AtomicBool::new(false),
                exit_request: AtomicI32::new(EXIT_NONE),
                nvcsw: AtomicU64::new(0),
                signal: UnsafeCell::new(None),
                version: AtomicU8::new(0),
            })
        };
        NR_TASKS.fetch_add(1, Ordering::Relaxed);
        Ok(TaskRef(mem))
    }

    pub(crate) fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The kernel version this task's exit and release follow.
    pub(crate) fn version(&self) -> &'static StrategyPair {
        StrategyPair::at(usize::from(self.version.load(Ordering::Relaxed)))
    }

    /// Sets the version (`copy_process`, before anyone else sees the task).
    #[cfg_attr(not(target_os = "none"), allow(dead_code))]
    /// Whether the task is a CLONE_THREAD child.
    pub(crate) fn is_thread(&self) -> bool {
        self.is_thread.load(Ordering::Relaxed)
    }

    /// Marks the task a CLONE_THREAD child (before it is visible).
    pub(crate) fn set_thread(&self) {
        self.is_thread.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_version(&self, version: &'static StrategyPair) {
        self.version.store(version.index, Ordering::Relaxed);
    }

    pub(crate) fn cpu(&self) -> usize {
        self.cpu as usize
    }

    pub(crate) fn state(&self) -> TaskState {
        TaskState::from_u8(self.state.load(Ordering::SeqCst))
    }

    pub(crate) fn set_state(&self, s: TaskState) {
        self.state.store(s as u8, Ordering::SeqCst);
    }

    /// Moves `from` -> `to` if the state is `from`.
    pub(crate) fn transition(&self, from: TaskState, to: TaskState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    pub(crate) fn exit_code(&self) -> i32 {
        self.exit_code.load(Ordering::Relaxed)
    }

    pub(crate) fn set_exit_code(&self, code: i32) {
        self.exit_code.store(code, Ordering::Relaxed);
    }

    /// The exit code someone asked this task to exit with, if any.
    pub(crate) fn exit_request(&self) -> Option<i32> {
        let v = self.exit_request.load(Ordering::SeqCst);
        (v != EXIT_NONE).then_some(v)
    }

    /// Asks the task to exit with `code` (it must wake up to see it).
    pub(crate) fn request_exit(&self, code: i32) {
        self.exit_request
            .store(if code == EXIT_NONE { 0 } else { code }, Ordering::SeqCst);
    }

    /// Whether the task waits in `do_wait` for a child to exit.
    pub(crate) fn waits_for_children(&self) -> bool {
        self.wait_chldexit.load(Ordering::SeqCst)
    }

    /// Enters (true) or leaves (false) the wait for a child's exit: the
    /// port of `add_wait_queue(&current->signal->wait_chldexit, ..)` and
    /// its removal.
    #[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
    pub(crate) fn set_waits_for_children(&self, waiting: bool) {
        self.wait_chldexit.store(waiting, Ordering::SeqCst);
    }

    /// The thread group's signal struct, if this is a process.
    pub(crate) fn signal(&self) -> Option<&SignalRef> {
        // SAFETY: written only by `set_signal`, before the task is shared.
        unsafe { (*self.signal.get()).as_ref() }
    }

    /// Gives the task its thread group's signal struct.
    ///
    /// # Safety
    /// No other CPU or task can reach this task yet (it is being created),
    /// or none reads its signal struct before this returns.
    #[cfg_attr(not(target_os = "none"), allow(dead_code))] // the bare-metal process paths
    pub(crate) unsafe fn set_signal(&self, signal: SignalRef) {
        // SAFETY: per the contract, nobody reads the slot meanwhile.
        unsafe { *self.signal.get() = Some(signal) };
    }

    /// Voluntary context switches so far.
    pub(crate) fn nvcsw(&self) -> u64 {
        self.nvcsw.load(Ordering::Relaxed)
    }

    /// Counts one voluntary switch (the scheduler, on the task's CPU).
    #[cfg_attr(not(target_os = "none"), allow(dead_code))] // the scheduler
    pub(crate) fn count_nvcsw(&self) {
        self.nvcsw
            .store(self.nvcsw.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// TSC cycles this task has run.
    pub(crate) fn runtime(&self) -> u64 {
        self.runtime.load(Ordering::Relaxed)
    }

    #[cfg_attr(not(target_os = "none"), allow(dead_code))] // the scheduler
    pub(crate) fn add_runtime(&self, cycles: u64) {
        self.runtime.fetch_add(cycles, Ordering::Relaxed);
    }

    /// Top of the owned stack (16-aligned), if the task has one.
    pub(crate) fn stack_top(&self) -> Option<u64> {
        self.stack.map(|s| s.as_ptr() as u64 + STACK_SIZE as u64)
    }

    /// Whether the stack's bottom canary is intact (true for adopted
    /// stacks, which have none).
    pub(crate) fn stack_intact(&self) -> bool {
        match self.stack {
            // SAFETY: the stack is owned by this task and at least 8 bytes.
            Some(s) => unsafe { (s.as_ptr() as *const u64).read_volatile() == STACK_CANARY },
            None => true,
        }
    }
}

/// A counted reference to a task (`get_task_struct` on clone,
/// `put_task_struct` on drop).
pub(crate) struct TaskRef(NonNull<Task>);

// SAFETY: Task is Sync + Send and the count is atomic.
unsafe impl Send for TaskRef {}
// SAFETY: as above.
unsafe impl Sync for TaskRef {}

impl Reaper {
    /// `t` as its namespace's child reaper.
    pub(crate) fn of(t: &Task) -> Self {
        Reaper::from_raw(NonNull::from(t).cast())
    }

    /// The reaper task (alive while it is some namespace's reaper: it
    /// unsets itself when it exits).
    pub(crate) fn task(self) -> NonNull<Task> {
        self.as_raw().cast()
    }

    /// Whether `t` is this reaper.
    pub(crate) fn is(self, t: &Task) -> bool {
        core::ptr::eq(self.task().as_ptr(), t)
    }
}

impl TaskRef {
    /// Gives up this reference without dropping it (the scheduler keeps
    /// it as a raw pointer).
    pub(crate) fn into_raw(self) -> *const Task {
        let p = self.0.as_ptr();
        core::mem::forget(self);
        p
    }

    /// Takes back a reference given up with [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `p` came from `into_raw` and that reference was not taken back yet.
    pub(crate) unsafe fn from_raw(p: *const Task) -> Self {
        TaskRef(NonNull::new(p as *mut Task).expect("null task"))
    }

    /// A new counted reference from a raw task pointer.
    ///
    /// # Safety
    /// `p` points to a live task (someone holds a reference).
    pub(crate) unsafe fn get(p: *const Task) -> Self {
        // SAFETY: the caller guarantees the task is live.
        let t = unsafe { &*p };
        t.usage.fetch_add(1, Ordering::Relaxed);
        TaskRef(NonNull::new(p as *mut Task).expect("null task"))
    }

    pub(crate) fn as_ptr(&self) -> *const Task {
        self.0.as_ptr()
    }
}

impl Clone for TaskRef {
    fn clone(&self) -> Self {
        self.usage.fetch_add(1, Ordering::Relaxed);
        TaskRef(self.0)
    }
}

impl core::ops::Deref for TaskRef {
    type Target = Task;

    fn deref(&self) -> &Task {
        // SAFETY: a TaskRef keeps the task alive.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        if self.usage.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        core::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: that was the last reference: nobody can reach the task.
        unsafe { free_task(self.0) };
    }
}

/// `free_task`: returns the stack and the task to their caches.
///
/// # Safety
/// No reference to the task remains and it is not running.
unsafe fn free_task(task: NonNull<Task>) {
    // SAFETY: per the contract, we own the task now.
    unsafe {
        // A freed task still on a pid's task list would be reached through
        // it later: refuse, whatever the build.
        assert!(
            (*task.as_ref().links.get()).has_no_pids(),
            "task {} freed with pids attached",
            task.as_ref().name()
        );
        if task.as_ref().css_linked.load(Ordering::Relaxed)
            && let Some(sig) = (*task.as_ref().signal.get()).as_ref()
        {
            // __put_task_struct -> put_cred (real_cred, cred).
            sig.lines.freed();
        }
        cgroup::cgroup_task_free(task.as_ref());
        if let Some(stack) = task.as_ref().stack {
            STACK_CACHE.free(stack);
        }
        core::ptr::drop_in_place(task.as_ptr());
        TASK_CACHE.free(task.cast());
    }
    NR_TASKS.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests;
