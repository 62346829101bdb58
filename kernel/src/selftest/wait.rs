//! In-kernel case for `do_wait` across a thread group (`test=wait`): a
//! process's leader and its thread each make children; a wait by either
//! one scans its own children first, then the other's (`__do_wait`'s
//! `while_each_thread`), each list oldest first; WNOHANG answers "nothing
//! yet" while a child of the other task lives; a wait for one task takes a
//! child of the other; and a child's exit wakes the task of its parent's
//! group that waits, not only its parent. pidctl's tasks have no threads,
//! so this is where that is checked.
//!
//! Everything runs on one CPU, and the scheduler does not preempt: the
//! leader and its thread take turns through [`PHASE`], and a child runs
//! only when they yield or block, so every step happens in one order.

use core::ptr;
use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering};

use super::procs::{exit_with, expect_invariants};
use crate::klib::errno::Errno;
use crate::selftest::invariants::Baseline;
use crate::task::exit::{park, request_exit};
use crate::task::fork::{CloneArgs, copy_process};
use crate::task::sched::{self, current};
use crate::task::wait::{Reaped, wait_child, wait_child_nohang};
use crate::task::{Task, TaskRef, TaskState};

/// How far the leader and its thread have got (each waits for the other's
/// next number).
static PHASE: AtomicU32 = AtomicU32::new(0);
/// Children the thread made, handed to the leader (raw counted
/// references): c1, c2, e0, e1, e2.
static MADE: [AtomicPtr<Task>; 5] = [const { AtomicPtr::new(ptr::null_mut()) }; 5];
/// The exit code of the child the thread's own wait reaped.
static THREAD_REAPED: AtomicI32 = AtomicI32::new(-1);
/// The leader, for its thread to watch (it outlives the thread: it joins
/// it).
static LEADER: AtomicPtr<Task> = AtomicPtr::new(ptr::null_mut());

fn advance(to: u32) {
    PHASE.store(to, Ordering::Release);
}

fn await_phase(n: u32) {
    while PHASE.load(Ordering::Acquire) < n {
        sched::yield_now();
    }
}

/// A child of the current task, on this CPU, running `entry(arg)`.
fn child(name: &str, entry: fn(usize), arg: usize) -> TaskRef {
    copy_process(&CloneArgs::new(name, entry, arg)).expect("spawn a child")
}

fn hand_over(slot: usize, t: TaskRef) {
    MADE[slot].store(t.into_raw().cast_mut(), Ordering::Release);
}

fn take(slot: usize) -> TaskRef {
    let p = MADE[slot].swap(ptr::null_mut(), Ordering::Acquire);
    assert!(!p.is_null(), "the thread handed over no child {slot}");
    // SAFETY: the counted reference `hand_over` gave up with into_raw.
    unsafe { TaskRef::from_raw(p) }
}

fn until_zombies(ts: &[&TaskRef]) {
    while ts.iter().any(|t| t.state() != TaskState::Zombie) {
        sched::yield_now();
    }
}

/// One WNOHANG wait that must reap `want` with `code`.
fn reaps(who: &str, want: &Task, code: i32) {
    match wait_child_nohang(None) {
        Ok(Some(r @ Reaped { code: got, .. })) if r.is(want) && got == code && r.nr > 0 => {}
        other => panic!("{who}'s wait: {other:?}, expected the child that exits with {code}"),
    }
}

/// The thread: makes children when the leader asks, and waits once.
fn thread_main(_: usize) {
    // c1 exits at once, c2 lives until asked.
    hand_over(0, child("c1", exit_with, 21));
    let c2 = child("c2", park, 0);
    hand_over(1, c2.clone());
    advance(1);
    // SAFETY: the leader set it before creating us and joins us.
    let leader = unsafe { &*LEADER.load(Ordering::Acquire) };
    while PHASE.load(Ordering::Acquire) < 2 {
        // c2's exit_notify wakes its parent's group in the same write
        // section that makes it a zombie, and nothing preempts: a zombie
        // c2 with the leader still blocked is a wake that went missing
        // (the leader would wait forever).
        assert!(
            !(c2.state() == TaskState::Zombie && leader.state() == TaskState::Blocked),
            "c2 exited and the leader, waiting for a child of its group, was not woken"
        );
        sched::yield_now();
    }
    drop(c2);
    hand_over(2, child("e0", exit_with, 30));
    advance(3);
    await_phase(4);
    hand_over(3, child("e1", exit_with, 31));
    advance(5);
    await_phase(6);
    hand_over(4, child("e2", exit_with, 32));
    advance(7);
    await_phase(8);
    // Its own children first, though the leader's d1 is older.
    let r = wait_child_nohang(None).expect("children");
    THREAD_REAPED.store(r.map_or(-1, |r| r.code), Ordering::Release);
    advance(9);
    await_phase(10);
}

/// The leader: checks every rule against its thread's children and its own.
fn leader_main(_: usize) {
    let me = current();
    LEADER.store(ptr::from_ref(me).cast_mut(), Ordering::Release);
    let mut args = CloneArgs::new("waiter-thread", thread_main, 0);
    args.thread = true;
    let thread = copy_process(&args).expect("thread");
    await_phase(1);
    let (c1, c2) = (take(0), take(1));
    until_zombies(&[&c1]);

    // The thread's exited child, found by the leader's wait.
    reaps("the leader", &c1, 21);
    // The thread's live child: nothing yet, not ECHILD; also by target
    // (do_wait_pid: a child of a task of the group). A thread is nobody's
    // child.
    assert_eq!(wait_child_nohang(None), Ok(None), "WNOHANG, a live child");
    assert_eq!(wait_child_nohang(Some(&c2)), Ok(None), "WNOHANG on c2");
    assert_eq!(
        wait_child_nohang(Some(&thread)),
        Err(Errno::ECHILD),
        "a thread waited for"
    );
    // c2 runs only once the leader blocks: its exit must wake the leader,
    // which waits in the group of c2's parent (the thread).
    request_exit(&c2, 22);
    let switches = me.nvcsw();
    let r = wait_child(None).expect("c2, a child of the group");
    assert!(r.is(&c2) && r.code == 22, "{r:?}");
    assert!(me.nvcsw() > switches, "the leader never blocked for c2");

    // e0 (the thread's) is older than d0 (the leader's), e1 younger: the
    // leader's wait takes its own first, then the thread's oldest first.
    advance(2);
    await_phase(3);
    let d0 = child("d0", exit_with, 40);
    advance(4);
    await_phase(5);
    let (e0, e1) = (take(2), take(3));
    until_zombies(&[&e0, &d0, &e1]);
    reaps("the leader", &d0, 40);
    reaps("the leader", &e0, 30);
    reaps("the leader", &e1, 31);

    // d1 (the leader's) is older than e2 (the thread's): the thread's
    // wait takes its own e2.
    let d1 = child("d1", exit_with, 41);
    advance(6);
    await_phase(7);
    let e2 = take(4);
    until_zombies(&[&d1, &e2]);
    advance(8);
    await_phase(9);
    assert_eq!(
        THREAD_REAPED.load(Ordering::Acquire),
        32,
        "the thread's wait"
    );
    reaps("the leader", &d1, 41);
    assert_eq!(wait_child_nohang(None), Err(Errno::ECHILD), "all reaped");
    advance(10);
    sched::join(&thread);
}

/// `wait`: the group's children, in Linux's order, and the group's wake.
pub(crate) fn group_wait() {
    let base = Baseline::take();
    PHASE.store(0, Ordering::Relaxed);
    THREAD_REAPED.store(-1, Ordering::Relaxed);
    let leader = copy_process(&CloneArgs::new("leader", leader_main, 0)).expect("leader");
    assert_eq!(wait_child(Some(&leader)).map(|r| r.code), Ok(0));
    drop(leader);
    println!(
        "selftest wait: a wait reaps the children of every task of its group, its own first, oldest first; WNOHANG answers none while one lives; an exit wakes the group's waiter"
    );
    expect_invariants(&base);
}
