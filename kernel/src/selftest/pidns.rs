//! In-kernel cases for pid namespaces: numbers at every level, an init
//! that dies (mid-fork too) disabling its namespace.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::procs::expect_invariants;
use crate::klib::errno::Errno;
use crate::pid::namespace::init_pid_ns;
use crate::pid::{PidType, pid_nr_ns};
use crate::selftest::invariants::Baseline;
use crate::task::exit::{park, request_exit};
use crate::task::fork::{CloneArgs, copy_process, current_ns};
use crate::task::sched;
use crate::task::task_pid;
use crate::task::wait::wait_child;

/// `pidns`: a task three namespaces deep has the right pid at every level;
/// the death of a namespace's init makes later spawns there fail with
/// ENOMEM, and nothing leaks.
pub(crate) fn pid_namespaces() {
    let base = Baseline::take();
    // Three levels: init of each new namespace spawns the next.
    let mut chain = Vec::new();
    let mut ns = current_ns();
    for level in 1..=3 {
        let child_ns = crate::pid::namespace::create_pid_namespace(&ns).expect("ns");
        let mut args = CloneArgs::new("nsinit", park, 0);
        args.pid_ns = Some(&child_ns);
        let t = copy_process(&args).expect("ns init");
        let pid = task_pid(&t, PidType::Pid).expect("pid");
        assert_eq!(pid.level(), level);
        assert_eq!(
            pid_nr_ns(&pid, &child_ns),
            1,
            "init of level {level} is pid 1"
        );
        chain.push((t, child_ns.clone()));
        ns = child_ns;
    }
    // A task in the innermost namespace: pid 2 there (after its init), 3
    // in the middle one (after two inits), 4 in the outer one.
    let mut args = CloneArgs::new("deep", park, 0);
    args.pid_ns = Some(&ns);
    let deep = copy_process(&args).expect("deep task");
    let pid = task_pid(&deep, PidType::Pid).expect("pid");
    let nrs: Vec<i32> = pid.numbers().iter().map(|u| u.nr).collect();
    println!("selftest pidns: task 3 namespaces deep has pids {nrs:?} (root first)");
    assert_eq!(nrs.len(), 4);
    assert_eq!(&nrs[1..], &[4, 3, 2]);
    assert_eq!(pid_nr_ns(&pid, init_pid_ns()), nrs[0]);
    assert_eq!(
        crate::pid::find_pid_ns(2, &ns).map(|p| p.nr()),
        Some(nrs[0])
    );
    drop(pid);

    // Reaper death: the innermost init exits; spawning there fails.
    let (inner_init, inner_ns) = chain.pop().expect("chain");
    let inner_nr = task_pid(&inner_init, PidType::Pid).expect("pid").nr();
    request_exit(&inner_init, 7);
    assert_eq!(
        wait_child(Some(&inner_init)).map(|r| (r.nr, r.code, r.is(&inner_init))),
        Ok((inner_nr, 7, true))
    );
    assert!(!inner_ns.accepts_pids());
    let mut args = CloneArgs::new("late", park, 0);
    args.pid_ns = Some(&inner_ns);
    assert_eq!(copy_process(&args).err(), Some(Errno::ENOMEM));
    println!("selftest pidns: spawn after the namespace's init died: ENOMEM");
    // The task that was in it still lives; it exits and is reaped.
    request_exit(&deep, 3);
    assert_eq!(wait_child(Some(&deep)).map(|r| r.code), Ok(3));
    drop((inner_init, inner_ns, deep));
    while let Some((t, _)) = chain.pop() {
        request_exit(&t, 0);
        wait_child(Some(&t)).expect("reap ns init");
    }
    drop(ns);
    expect_invariants(&base);
}

/// The namespace init `init_dies_mid_fork` kills from inside
/// `copy_process` (taken by the hook, so it fires once).
static VICTIM: core::sync::atomic::AtomicPtr<crate::task::Task> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Runs in `copy_process` after `alloc_pid` succeeded: the namespace's
/// init exits now, before the child is attached.
fn kill_init_in_alloc_window(_: &crate::pid::namespace::PidNamespace) {
    let victim = VICTIM.swap(core::ptr::null_mut(), Ordering::SeqCst);
    if victim.is_null() {
        return;
    }
    // SAFETY: the case holds a reference to the init until it is reaped.
    let init = unsafe { &*victim };
    request_exit(init, 9);
    // Its exit_notify wakes us, its parent, once it is a zombie, as it
    // wakes every task of our group that waits for a child (Linux:
    // `signal->wait_chldexit`), so wait as one.
    let me = sched::current();
    me.set_waits_for_children(true);
    sched::block_until(|| init.state() == crate::task::TaskState::Zombie);
    me.set_waits_for_children(false);
}

/// `fork-recheck`: a namespace's init dies between `alloc_pid` (which
/// found the namespace accepting pids) and `copy_process`'s
/// `tasklist_lock` section: the recheck there must refuse the child
/// (ENOMEM), and nothing may leak.
pub(crate) fn init_dies_mid_fork() {
    let base = Baseline::take();
    let ns = crate::pid::namespace::create_pid_namespace(&current_ns()).expect("ns");
    let mut args = CloneArgs::new("nsinit", park, 0);
    args.pid_ns = Some(&ns);
    let init = copy_process(&args).expect("ns init");
    VICTIM.store(init.as_ptr() as *mut crate::task::Task, Ordering::SeqCst);
    crate::task::fork::set_alloc_window_hook(Some(kill_init_in_alloc_window));
    let mut args = CloneArgs::new("late", park, 0);
    args.pid_ns = Some(&ns);
    let r = copy_process(&args);
    crate::task::fork::set_alloc_window_hook(None);
    assert!(
        VICTIM.load(Ordering::SeqCst).is_null(),
        "the hook did not run"
    );
    let got = r.as_ref().err().copied();
    if let Ok(t) = r {
        request_exit(&t, 0);
        let _ = wait_child(Some(&t));
    }
    assert_eq!(
        got,
        Some(Errno::ENOMEM),
        "a child was attached in a namespace whose init died after alloc_pid"
    );
    assert!(!ns.accepts_pids());
    assert_eq!(wait_child(Some(&init)).map(|r| r.code), Ok(9));
    drop((init, ns));
    println!("selftest fork-recheck: init died after alloc_pid: ENOMEM, nothing leaked");
    expect_invariants(&base);
}
