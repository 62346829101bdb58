//! The scheduler: one FIFO run queue per CPU, no preemption, no migration.
//!
//! A task runs until it blocks, yields or exits; the timer interrupt only
//! counts ticks. Tasks never leave the CPU they were created on, so a run
//! queue is only ever popped by its own CPU (others may push onto it, under
//! its lock, to wake a task there, followed by a wake-up IPI).
//!
//! Blocking follows the usual lost-wake-up-free pattern: the sleeper marks
//! itself Blocked, re-checks its condition, and only then calls
//! [`schedule`]; a waker makes the condition true and then moves the task
//! Blocked -> Running (a compare-and-swap, so exactly one waker enqueues it).
//! `schedule` never re-queues the task it switches away from, so each
//! Running transition puts a task on a queue exactly once.
//!
//! A task that exits is switched away from for the last time; the next task
//! on that CPU, in [`finish_task_switch`], drops the scheduler's reference,
//! so the dead task's stack is freed only once nothing runs on it.

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::kick::IdleKick;
use super::{NoMemory, Task, TaskFn, TaskRef, TaskState, is_process, stats};
use crate::arch::{apic, smp, switch, watchdog};
use crate::platform::{self, MAX_CPUS, Parallel, cpu_id, local_irq_restore, local_irq_save};
use crate::strategy::CgroupUnlink;
use crate::sync::SpinLockIrqSave;
use crate::sync::named_spin_lock_irqsave;

/// A FIFO of runnable tasks, linked through `Task::rq_next`.
struct RunQueue {
    head: *const Task,
    tail: *const Task,
    len: usize,
}

// SAFETY: the queue only holds pointers to tasks kept alive by the
// scheduler's reference; it is only touched under its lock.
unsafe impl Send for RunQueue {}

impl RunQueue {
    const fn new() -> Self {
        RunQueue {
            head: core::ptr::null(),
            tail: core::ptr::null(),
            len: 0,
        }
    }

    fn push(&mut self, t: *const Task) {
        // SAFETY: `t` is a live task not on any queue (see the module doc:
        // one enqueue per Running transition); `rq_next` is ours under the
        // lock.
        unsafe {
            *(*t).rq_next.get() = core::ptr::null();
            if self.tail.is_null() {
                self.head = t;
            } else {
                *(*self.tail).rq_next.get() = t;
            }
        }
        self.tail = t;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<*const Task> {
        if self.head.is_null() {
            return None;
        }
        let t = self.head;
        // SAFETY: `t` is on this queue, so live; `rq_next` is ours under the
        // lock.
        self.head = unsafe { *(*t).rq_next.get() };
        if self.head.is_null() {
            self.tail = core::ptr::null();
        }
        self.len -= 1;
        Some(t)
    }
}

/// One CPU's scheduler state, on cache lines of its own: another CPU only
/// touches it to queue a task (under `rq`) or to read a counter.
#[repr(align(128))]
struct SchedCpu {
    rq: SpinLockIrqSave<RunQueue>,
    /// Whether this CPU may be halted: written by this CPU on its trips
    /// through the idle loop, read by wakers right after they push onto
    /// `rq`, whose line they already hold.
    kick: IdleKick<AtomicU32>,
    /// The task running here (written only by this CPU).
    current: AtomicPtr<Task>,
    idle: AtomicPtr<Task>,
    /// The task just switched away from, for `finish_task_switch`.
    prev: AtomicPtr<Task>,
    /// Context switches (written only by this CPU, plain load and store).
    switches: AtomicU64,
}

static CPUS: [SchedCpu; MAX_CPUS] = [const {
    SchedCpu {
        rq: named_spin_lock_irqsave("rq_lock", RunQueue::new()),
        kick: IdleKick::new(),
        current: AtomicPtr::new(core::ptr::null_mut()),
        idle: AtomicPtr::new(core::ptr::null_mut()),
        prev: AtomicPtr::new(core::ptr::null_mut()),
        switches: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// The task running on this CPU.
#[inline]
pub(crate) fn current() -> &'static Task {
    let p = CPUS[cpu_id()].current.load(Ordering::Relaxed);
    assert!(!p.is_null(), "no current task on cpu {}", cpu_id());
    // SAFETY: the current task is kept alive by the scheduler's reference
    // while it runs, and only this CPU changes its own `current`.
    unsafe { &*p }
}

/// The name of the task running on `cpu`, for fault reports (which may
/// come at any point, even mid-switch); `None` before the CPU has a task.
pub(crate) fn current_name(cpu: usize) -> Option<&'static str> {
    let p = CPUS.get(cpu)?.current.load(Ordering::Relaxed);
    // SAFETY: a current task is kept alive by the scheduler's reference,
    // and `current` only ever holds such tasks.
    (!p.is_null()).then(|| unsafe { (*p).name() })
}

/// A counted reference to the running task.
pub(crate) fn current_ref() -> TaskRef {
    // SAFETY: the current task is live (see `current`).
    unsafe { TaskRef::get(current()) }
}

fn set_current(cpu: usize, t: TaskRef) {
    CPUS[cpu]
        .current
        .store(t.into_raw() as *mut Task, Ordering::Relaxed);
}

/// Makes the running boot context CPU 0's first task (`name`) and gives
/// CPU 0 an idle task. Returns a reference to the boot task.
pub(crate) fn init_boot_cpu(name: &str) -> Result<TaskRef, NoMemory> {
    let boot = Task::adopt(name, 0)?;
    let idle = Task::create("idle/0", 0, idle_entry, 0)?;
    prepare_new_stack(&idle);
    // Boot and idle keep their scheduler reference forever.
    CPUS[0]
        .idle
        .store(idle.into_raw() as *mut Task, Ordering::Relaxed);
    set_current(0, boot.clone());
    Ok(boot)
}

/// Makes the running AP context this CPU's idle task and idles.
pub(crate) fn run_ap_idle(cpu: usize) -> ! {
    let Ok(idle) = Task::adopt("idle", cpu) else {
        panic!("cpu {cpu}: no memory for the idle task");
    };
    set_current(cpu, idle.clone());
    // Release: the boot CPU waits for it (`has_idle_task`).
    CPUS[cpu]
        .idle
        .store(idle.into_raw() as *mut Task, Ordering::Release);
    idle_loop(cpu)
}

/// Whether CPU `cpu` has its idle task yet (an AP makes it as it enters
/// its idle loop, after it came up).
pub(crate) fn has_idle_task(cpu: usize) -> bool {
    !CPUS[cpu].idle.load(Ordering::Acquire).is_null()
}

fn idle_entry(_: usize) {
    idle_loop(cpu_id())
}

fn idle_loop(cpu: usize) -> ! {
    let kick = &CPUS[cpu].kick;
    loop {
        watchdog::touch();
        platform::local_irq_disable();
        if CPUS[cpu].rq.lock().len > 0 {
            schedule();
            platform::local_irq_enable();
        } else {
            platform::local_irq_enable();
            crate::rcu::rcu_idle();
            platform::local_irq_disable();
            // From here wakers send the IPI (see `kick`).
            kick.prepare_halt();
            if CPUS[cpu].rq.lock().len > 0 {
                kick.end_halt();
                continue;
            }
            // The tick stops and RCU stops watching, unless needed.
            super::nohz::idle_enter();
            // `sti; hlt`: a wake-up IPI cannot slip in between.
            x86_64::instructions::interrupts::enable_and_hlt();
            // An interrupt that ended the halt has already ended the idle
            // in its entry; an NMI has not.
            platform::local_irq_disable();
            super::nohz::idle_exit();
            kick.end_halt();
        }
    }
}

/// Builds the first stack frame of a new task.
pub(crate) fn prepare_new_stack(t: &Task) {
    let top = t.stack_top().expect("a new task has a stack");
    // SAFETY: the stack is the task's own, unused yet; we are the only ones
    // touching the task's saved stack pointer before it first runs.
    unsafe {
        let sp = switch::init_stack(top, task_entry, t as *const Task as u64);
        *t.sp.get() = sp;
    }
}

/// First code of every new task, reached from `pidlab_task_start`.
extern "C" fn task_entry(task: u64) -> ! {
    finish_task_switch();
    stats::count_ran();
    platform::local_irq_enable();
    // SAFETY: `task` is the running task (the scheduler keeps it alive).
    let t = unsafe { &*(task as *const Task) };
    if let Some(entry) = t.entry {
        entry(t.arg);
    }
    exit_current(0)
}

/// Creates a kernel task on `cpu` that runs `entry(arg)` and makes it
/// runnable. The returned reference can be used to wait for it.
pub(crate) fn spawn_on(
    name: &str,
    cpu: usize,
    entry: TaskFn,
    arg: usize,
) -> Result<TaskRef, NoMemory> {
    assert!(cpu < smp::online(), "cpu {cpu} is not online");
    let t = Task::create(name, cpu, entry, arg)?;
    prepare_new_stack(&t);
    wake_up_new_task(t.clone());
    Ok(t)
}

/// `wake_up_new_task`: queues a task that has never run. Takes the
/// scheduler's reference.
pub(crate) fn wake_up_new_task(t: TaskRef) {
    enqueue(t.into_raw());
}

fn enqueue(t: *const Task) {
    // SAFETY: the scheduler's reference keeps `t` alive.
    let cpu = unsafe { (*t).cpu() };
    CPUS[cpu].rq.lock().push(t);
    // A busy CPU finds the task at its next schedule(); only a halted one
    // needs the IPI.
    if cpu != cpu_id() && CPUS[cpu].kick.needs_kick() {
        let _ = apic::send_ipi(smp::apic_id_of(cpu), apic::Ipi::Fixed(apic::WAKE_VECTOR));
    }
}

/// Whether `cpu` is idle now: halted in its idle loop, or about to be
/// (what `available_idle_cpu()` answers on Linux).
#[inline]
pub(crate) fn cpu_idle(cpu: usize) -> bool {
    CPUS[cpu].kick.needs_kick()
}

/// `wake_up_process`: makes a Blocked task runnable. False if it was not
/// blocked (already running, or woken by someone else).
pub(crate) fn wake_up_process(t: &Task) -> bool {
    if !t.transition(TaskState::Blocked, TaskState::Running) {
        return false;
    }
    enqueue(t);
    true
}

/// Blocks the current task until `done()` is true. Wakers must make the
/// condition true before calling [`wake_up_process`].
pub(crate) fn block_until(mut done: impl FnMut() -> bool) {
    let me = current();
    loop {
        me.set_state(TaskState::Blocked);
        if done() {
            if me.transition(TaskState::Blocked, TaskState::Running) {
                return;
            }
            // A waker beat us to it and queued us: let that entry run us.
            schedule();
            return;
        }
        schedule();
    }
}

/// Port of `cond_resched()`: a scheduling point for a long loop that
/// neither blocks nor yields otherwise. Lets this CPU's other runnable
/// tasks run, if any, and tells the soft-lockup detector the CPU is not
/// stuck.
pub(crate) fn cond_resched() {
    watchdog::touch();
    crate::rcu::rcu_all_qs();
    if CPUS[cpu_id()].rq.lock().len > 0 {
        yield_now();
    }
}

/// Lets the other runnable tasks of this CPU run, then continues.
pub(crate) fn yield_now() {
    let flags = local_irq_save();
    let me = current() as *const Task;
    CPUS[cpu_id()].rq.lock().push(me);
    schedule();
    local_irq_restore(flags);
}

/// Switches to the next runnable task on this CPU (or its idle task). The
/// caller must be Blocked, dead, idle, or already re-queued.
pub(crate) fn schedule() {
    crate::sync::debug::assert_no_spinlocks_held("schedule()");
    watchdog::touch();
    crate::rcu::rcu_note_context_switch();
    let flags = local_irq_save();
    let cpu = cpu_id();
    let prev = CPUS[cpu].current.load(Ordering::Relaxed);
    let next = CPUS[cpu]
        .rq
        .lock()
        .pop()
        .unwrap_or_else(|| CPUS[cpu].idle.load(Ordering::Relaxed));
    if core::ptr::eq(next, prev) {
        local_irq_restore(flags);
        return;
    }
    let now = platform::cycles();
    // SAFETY: `prev` is this CPU's current task and `next` a runnable (or
    // idle) task of this CPU, both kept alive by the scheduler's
    // references; interrupts are off, so nothing else on this CPU touches
    // their switch state meanwhile.
    unsafe {
        let prev_t = &*prev;
        let next_t = &*next;
        prev_t.add_runtime(now.saturating_sub(*prev_t.switched_in.get()));
        if prev_t.state() == TaskState::Blocked {
            prev_t.count_nvcsw();
        }
        *next_t.switched_in.get() = now;
        assert!(
            prev_t.stack_intact(),
            "task {} overflowed its kernel stack",
            prev_t.name()
        );
        CPUS[cpu]
            .current
            .store(next as *mut Task, Ordering::Relaxed);
        CPUS[cpu].prev.store(prev, Ordering::Relaxed);
        let sw = &CPUS[cpu].switches;
        sw.store(sw.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        switch::switch_context(prev_t.sp.get(), *next_t.sp.get());
    }
    finish_task_switch();
    local_irq_restore(flags);
}

/// Runs on the task just switched to: drops the scheduler's reference to
/// the previous task if it is dead (`finish_task_switch`).
fn finish_task_switch() {
    let cpu = cpu_id();
    let prev = CPUS[cpu]
        .prev
        .swap(core::ptr::null_mut(), Ordering::Relaxed);
    if prev.is_null() {
        return;
    }
    // SAFETY: `prev` still holds the scheduler's reference.
    let state = unsafe { (*prev).state() };
    // A zombie never runs again either; its parent may already have made
    // it Dead while it was on its way here.
    if matches!(state, TaskState::Dead | TaskState::Zombie) {
        // SAFETY: the scheduler's reference, given up in `into_raw` when the
        // task was queued or made current; it is never used again.
        let prev = unsafe { TaskRef::from_raw(prev) };
        // 6.19 on: cgroup_task_dead(), once the task is done switching out.
        if prev.version().cgroup_unlink == CgroupUnlink::TaskDead {
            super::exit::cgroup_unlink_dead(&prev, true);
        }
        drop(prev);
    }
}

/// Ends the current task. A process (a task with pids, made by
/// `process::copy_process`) goes through `do_exit`; a plain kernel task
/// wakes its joiner, is marked dead, and switched away from for good.
pub(crate) fn exit_current(code: i32) -> ! {
    let me = current();
    if is_process(me) {
        super::exit::do_exit_dispatch(code);
    }
    me.set_exit_code(code);
    platform::local_irq_disable();
    // A kernel task's join point is its death: Dead before the joiner is
    // woken, or a joiner on another CPU can return and see it Running (the
    // scheduler's reference keeps it alive until the next switch).
    me.set_state(TaskState::Dead);
    wake_joiner(me);
    exit_final()
}

/// `Task::joiner` once the task has passed its join point: nobody may
/// register any more, and [`join`] returns. Never a task's address (no
/// task lives at its alignment).
const JOINED: *mut Task = core::ptr::dangling_mut();

/// The join point of `t`, the exiting current task (for a process, the
/// `mm_release()` step of `do_exit`: Linux clears the thread's tid there
/// and wakes the futex `pthread_join` sleeps on, before `exit_notify` and
/// `release_task`). Its exit code must be set. One swap decides the race
/// with a joiner registering: the joiner either finds [`JOINED`] and
/// returns at once, or has stored itself and is woken here.
pub(crate) fn wake_joiner(t: &Task) {
    let joiner = t.joiner.swap(JOINED, Ordering::SeqCst);
    if !joiner.is_null() && joiner != JOINED {
        // SAFETY: the joiner stored a counted reference to itself, which
        // nobody else takes back now that the slot holds JOINED.
        let joiner = unsafe { TaskRef::from_raw(joiner) };
        wake_up_process(&joiner);
    }
}

/// Switches away from the current, exited (Zombie or Dead) task for good;
/// the next task drops the scheduler's reference to it.
pub(crate) fn exit_final() -> ! {
    platform::local_irq_disable();
    assert!(
        matches!(current().state(), TaskState::Dead | TaskState::Zombie),
        "exit_final on a live task"
    );
    schedule();
    unreachable!("an exited task was scheduled again");
}

/// Waits for `t` to reach its join point (a join; for a process, early in
/// `do_exit`, so its `exit_notify` and `release_task` may still be running
/// on its CPU when this returns). Returns its exit code. At most one
/// joiner per task.
pub(crate) fn join(t: &TaskRef) -> i32 {
    let me = current_ref().into_raw() as *mut Task;
    match t.joiner.compare_exchange(
        core::ptr::null_mut(),
        me,
        Ordering::SeqCst,
        Ordering::SeqCst,
    ) {
        Ok(_) => block_until(|| t.joiner.load(Ordering::SeqCst) == JOINED),
        Err(JOINED) => {
            // Already past its join point: nobody will take our reference.
            // SAFETY: the reference made above, never shared.
            drop(unsafe { TaskRef::from_raw(me) });
        }
        Err(_) => panic!("task {} joined twice", t.name()),
    }
    t.exit_code()
}

/// One worker's share of a [`Cpus::run`] call, on the caller's stack.
struct WorkerArg<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    index: usize,
    pending: &'a AtomicUsize,
    /// The caller, blocked until `pending` drops to zero.
    caller: &'a TaskRef,
}

fn worker_entry(arg: usize) {
    // SAFETY: `arg` points at a WorkerArg on the stack of `Cpus::run`, which
    // does not return before `pending` drops to zero, i.e. until every
    // worker has made its last access to it (the decrement below; the
    // caller reference is cloned before it).
    let w = unsafe { &*(arg as *const WorkerArg<'_>) };
    (w.f)(w.index);
    let caller = w.caller.clone();
    if w.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        wake_up_process(&caller);
    }
}

/// The machine's CPUs as a [`Parallel`]: worker `i` runs as a kernel task
/// on CPU `i`, and the caller (which must be CPU 0) is worker 0.
pub(crate) struct Cpus;

impl Parallel for Cpus {
    fn cpus(&self) -> usize {
        smp::online()
    }

    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        assert!(cpu_id() == 0, "Cpus::run must be called on CPU 0");
        assert!(
            n >= 1 && n <= smp::online(),
            "asked for {n} CPUs, {} online",
            smp::online()
        );
        let pending = AtomicUsize::new(n - 1);
        let caller = current_ref();
        let args: alloc::vec::Vec<WorkerArg<'_>> = (0..n)
            .map(|index| WorkerArg {
                f,
                index,
                pending: &pending,
                caller: &caller,
            })
            .collect();
        for (cpu, arg) in args.iter().enumerate().skip(1) {
            if spawn_on("worker", cpu, worker_entry, arg as *const _ as usize).is_err() {
                panic!("Cpus::run: no memory for a worker task on cpu {cpu}");
            }
        }
        f(0);
        // Block rather than spin: the last worker to finish wakes us.
        block_until(|| pending.load(Ordering::Acquire) == 0);
    }
}
