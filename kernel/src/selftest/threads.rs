//! In-kernel cases for threads: CLONE_THREAD children autoreaped and
//! joined, joins at `mm_release` with the exit code, leaders that outlive
//! or predecease their threads.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use super::procs::{exit_with, expect_invariants, thread_body};
use crate::arch::smp;
use crate::klib::errno::Errno;
use crate::pid::PidType;
use crate::platform;
use crate::selftest::invariants::Baseline;
use crate::strategy::{PAIRS, StrategyPair};
use crate::task::exit::{park, request_exit};
use crate::task::fork::{CloneArgs, copy_process};
use crate::task::sched;
use crate::task::wait::{wait_child, wait_child_nohang};
use crate::task::{Task, TaskFn, TaskRef, TaskState, read_lock_tasklist, task_pid};

/// `threads`: CLONE_THREAD children are autoreaped and joined.
pub(crate) fn threads() {
    let base = Baseline::take();
    let me = sched::current();
    let group = me.signal().expect("init is a process");
    let dead_before = group.read_stats(|s| s.dead_threads.load(Ordering::Relaxed));
    for strategy in &PAIRS {
        let name = strategy.name;
        for _ in 0..1000 {
            let mut args = CloneArgs::new("thread", thread_body, 0);
            args.thread = true;
            args.strategy = strategy;
            let t = copy_process(&args).expect("thread");
            sched::join(&t);
            assert!(
                task_pid(&t, PidType::Pid).is_none(),
                "{name}: thread not released"
            );
        }
    }
    assert_eq!(
        wait_child_nohang(None),
        Err(Errno::ECHILD),
        "threads are not children"
    );
    let dead = group.read_stats(|s| s.dead_threads.load(Ordering::Relaxed));
    let live = group.nr_threads();
    assert_eq!(
        dead - dead_before,
        1000 * PAIRS.len() as u64,
        "__exit_signal folds every thread in"
    );
    assert_eq!(live, 1, "only init is left in its group");
    println!(
        "selftest threads: {} x 1000 threads spawned, joined, released",
        PAIRS.len()
    );
    if smp::online() > 1 {
        join_returns_before_exit_notify();
        join_returns_the_exit_code();
        for strategy in &PAIRS {
            threads_elsewhere(strategy);
            leader_waits_for_its_thread(strategy);
        }
        println!(
            "selftest threads: {} x {THREADS_ELSEWHERE} threads on another CPU, joined at mm_release; their leader reaped after their release",
            PAIRS.len()
        );
        println!(
            "selftest threads: join returns the exit code of a thread and a process on another CPU, held at the join point"
        );
    }
    expect_invariants(&base);
}

const THREADS_ELSEWHERE: usize = 300;

/// The last thread a leader made, handed to its parent (a raw counted
/// reference).
static LAST_THREAD: AtomicPtr<Task> = AtomicPtr::new(ptr::null_mut());

/// A join returns at the thread's `mm_release`, before its `exit_notify`:
/// holding `tasklist_lock` for reading keeps the thread (on another CPU)
/// from getting past `exit_notify`'s write lock, yet the join returns, and
/// the thread still has its pid. A join that waited for the release would
/// leave the thread spinning on the lock until the lock watchdog fires.
fn join_returns_before_exit_notify() {
    static GO: AtomicBool = AtomicBool::new(false);
    fn wait_for_go(_: usize) {
        while !GO.load(Ordering::Acquire) {
            platform::cpu_relax();
        }
    }
    let mut args = CloneArgs::new("thread", wait_for_go, 0);
    args.thread = true;
    args.cpu = Some((platform::cpu_id() + 1) % smp::online());
    let t = copy_process(&args).expect("thread");
    let g = read_lock_tasklist();
    GO.store(true, Ordering::Release);
    sched::join(&t);
    assert!(
        t.links(&g).pid(PidType::Pid).is_some(),
        "joined thread released while tasklist_lock was read-held"
    );
    drop(g);
}

/// Set by the joiner once `join` has returned and its code is read.
static JOINER_RETURNED: AtomicBool = AtomicBool::new(false);

/// The join-window hook: holds the exiting task right after its join
/// point until the joiner has read the code (bounded, so a joiner that
/// never comes cannot hang the exit). An exit that woke the joiner before
/// setting its code would be read as 0 for certain.
fn hold_until_joiner_returns(_: &Task) {
    let deadline = platform::cycles() + 2 * platform::cycles_per_sec().max(1_000_000);
    while !JOINER_RETURNED.load(Ordering::Acquire) && platform::cycles() < deadline {
        platform::cpu_relax();
    }
}

/// `join` returns the code a thread (or process) on another CPU exited
/// with, for every strategy pair: the code is set before the join point
/// wakes the joiner (`do_exit`: exit code, then `mm_release`).
fn join_returns_the_exit_code() {
    crate::task::exit::set_join_window_hook(Some(hold_until_joiner_returns));
    for (i, strategy) in PAIRS.iter().enumerate() {
        for thread in [true, false] {
            let code = 0x5a10 + 2 * i + usize::from(thread);
            JOINER_RETURNED.store(false, Ordering::Release);
            let mut args = CloneArgs::new(if thread { "thread" } else { "child" }, exit_with, code);
            args.thread = thread;
            args.cpu = Some((platform::cpu_id() + 1) % smp::online());
            args.strategy = strategy;
            let t = copy_process(&args).expect("spawn");
            let got = sched::join(&t);
            JOINER_RETURNED.store(true, Ordering::Release);
            if !thread {
                wait_child(Some(&t)).expect("reap the child");
            }
            assert_eq!(
                got,
                code as i32,
                "{}: join of a {} returned {got:#x}, it exited with {code:#x}",
                strategy.name,
                if thread { "thread" } else { "process" }
            );
        }
    }
    crate::task::exit::set_join_window_hook(None);
}

/// Starts a leader process running `body` with `strategy`'s index in
/// [`PAIRS`] as its argument (the leader's threads use that pair).
fn spawn_leader(body: TaskFn, strategy: &'static StrategyPair) -> TaskRef {
    let index = PAIRS
        .iter()
        .position(|p| ptr::eq(p, strategy))
        .expect("pair");
    copy_process(&CloneArgs::new("leader", body, index)).expect("leader")
}

/// The thread a leader handed over in [`LAST_THREAD`] before exiting.
fn take_last_thread() -> TaskRef {
    let thread = LAST_THREAD.swap(ptr::null_mut(), Ordering::Acquire);
    assert!(!thread.is_null(), "the leader handed over no thread");
    // SAFETY: the counted reference the leader gave up with into_raw.
    unsafe { TaskRef::from_raw(thread) }
}

/// Leaves a parked thread on another CPU behind and exits.
fn spawn_parked_thread_then_exit(strategy: usize) {
    let mut args = CloneArgs::new("parked", park, 0);
    args.thread = true;
    args.cpu = Some((platform::cpu_id() + 1) % smp::online());
    args.strategy = &PAIRS[strategy];
    let t = copy_process(&args).expect("thread");
    LAST_THREAD.store(t.into_raw() as *mut Task, Ordering::Release);
}

/// A leader that exits before its thread is a zombie its parent cannot
/// reap (`delay_group_leader`) until the thread is released, whose
/// release then reports it.
fn leader_waits_for_its_thread(strategy: &'static StrategyPair) {
    let leader = spawn_leader(spawn_parked_thread_then_exit, strategy);
    // The leader runs on this CPU: let it.
    while leader.state() != TaskState::Zombie {
        sched::yield_now();
    }
    // Not reapable, yet waited for: WNOHANG answers "nothing yet" (0).
    assert_eq!(
        wait_child_nohang(Some(&leader)),
        Ok(None),
        "{}: a leader with a live thread was reaped",
        strategy.name
    );
    let thread = take_last_thread();
    request_exit(&thread, 0);
    wait_child(Some(&leader)).expect("reap the leader once its thread is released");
    assert!(task_pid(&thread, PidType::Pid).is_none());
}

fn spawn_threads_elsewhere_then_exit(strategy: usize) {
    let target = (platform::cpu_id() + 1) % smp::online();
    let mut last = None;
    for _ in 0..THREADS_ELSEWHERE {
        let mut args = CloneArgs::new("thread", thread_body, 0);
        args.thread = true;
        args.cpu = Some(target);
        args.strategy = &PAIRS[strategy];
        let t = copy_process(&args).expect("thread");
        sched::join(&t);
        last = Some(t);
    }
    let last = last.expect("a thread").into_raw() as *mut Task;
    LAST_THREAD.store(last, Ordering::Release);
    // Exits while the last thread may still be releasing itself.
}

/// A process makes threads on another CPU, joins each (at its
/// `mm_release`, before its release) and exits right after the last
/// join: its parent must not reap it before that thread is released
/// (`delay_group_leader`), which the thread's detached pid shows.
fn threads_elsewhere(strategy: &'static StrategyPair) {
    let leader = spawn_leader(spawn_threads_elsewhere_then_exit, strategy);
    wait_child(Some(&leader)).expect("reap the leader");
    let last = take_last_thread();
    assert!(
        task_pid(&last, PidType::Pid).is_none(),
        "{}: leader reaped while its last thread still had its pid",
        strategy.name
    );
}
