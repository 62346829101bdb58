//! The `lockctx` case: which locks each kernel version holds, with which
//! IRQ state, at every site of the spawn/exit/reap path it records.

use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use super::procs::{exit_with, expect_invariants, thread_body};
use crate::arch::smp;
use crate::klib::errno::Errno;
use crate::pid::PidType;
use crate::platform;
use crate::selftest::invariants::Baseline;
use crate::strategy::{LOCKLESS, StrategyPair};
use crate::task::exit::request_exit;
use crate::task::fork::{CloneArgs, copy_process, current_ns};
use crate::task::sched;
use crate::task::wait::wait_child;
use crate::task::{Task, TaskRef, TaskState, task_pid};

/// `lockctx`: for every strategy pair, spawn and reap processes and threads
/// in the root and two namespaces deep (`lockless`: processes in a
/// lock-free root and two deep, where pidmap_lock is never held), recording the locks held and the
/// IRQ state at every free_pid, add_device_randomness, pidfs call, IDR
/// node allocation, `__exit_signal` fold and `copy_process` attach; each
/// strategy must match the kernel it stands for, and so must the order in
/// which a release frees two pids ([`free_order`]).
pub(crate) fn lock_contexts() {
    use crate::klib::lockctx::{self, Context, Site};
    const EACH: u64 = 200;
    let base = Baseline::take();
    // A namespace chain two deep below the root, each level with a parked
    // init, for pids with three numbers.
    let (mut inits, deep) =
        crate::task::fork::ns_chain(current_ns(), 2, false, StrategyPair::stock()).expect("chain");
    // The lock-free strategy's: a lock-free root with a parked init and
    // two namespaces below it (processes only: our threads would be in
    // the root namespace).
    let lf_root = crate::pid::namespace::PidNamespace::new_root_lockless();
    let (lf_inits, lf_deep) =
        crate::task::fork::ns_chain(lf_root.clone(), 2, true, &LOCKLESS).expect("lock-free chain");
    inits.extend(lf_inits);
    for strategy in StrategyPair::all() {
        lockctx::reset();
        let was = lockctx::set_enabled(true);
        let mut spawns = 0;
        let lockless = strategy.lockless();
        let nss = if lockless {
            [Some(&lf_root), Some(&lf_deep)]
        } else {
            [None, Some(&deep)]
        };
        for ns in nss {
            for i in 0..EACH {
                let mut args = CloneArgs::new("child", exit_with, 0);
                args.strategy = strategy;
                args.pid_ns = ns;
                let child = copy_process(&args).expect("spawn");
                wait_child(Some(&child)).expect("reap");
                if ns.is_none() {
                    let mut t = CloneArgs::new("thread", thread_body, 0);
                    t.thread = true;
                    t.strategy = strategy;
                    sched::join(&copy_process(&t).expect("thread"));
                    spawns += 1;
                }
                spawns += 1;
                let _ = i;
            }
        }
        lockctx::set_enabled(was);
        let deferred = strategy.release == crate::strategy::ReleaseStrategy::Deferred;
        // 6.14 takes pidmap_lock with IRQs off, 6.15 on with plain spin_lock.
        let irqs_off = strategy.pidmap_irq == crate::strategy::PidmapIrq::Off;
        let check = |site: Site, want: &dyn Fn(&Context) -> bool, total: Option<u64>| {
            let seen = lockctx::counts(site);
            for (c, n) in &seen {
                assert!(
                    want(c),
                    "{}: {n} call(s) of {site:?} in context {c:?}",
                    strategy.name
                );
            }
            if let Some(total) = total {
                let n: u64 = seen.iter().map(|(_, n)| n).sum();
                assert_eq!(n, total, "{}: calls of {site:?}", strategy.name);
            }
        };
        // release_task -> __exit_signal: siglock, then stats_lock, nested
        // in tasklist_lock; the accounting fold runs under all three.
        check(
            Site::ExitSignal,
            &|c| c.tasklist_write && c.siglock && c.stats_write && c.irqs_off && !c.pidmap,
            Some(spawns),
        );
        // copy_process attaches the child under tasklist_lock and the
        // parent's siglock (a thread's nr_threads++ too: under siglock
        // only, no stats_lock, as Linux).
        check(
            Site::ForkAttach,
            &|c| c.tasklist_write && c.siglock && !c.stats_write && c.irqs_off && !c.pidmap,
            Some(spawns),
        );
        // The exit change: free_pid and the entropy pool leave tasklist_lock.
        // In 6.14 __unhash_process (detach_pid -> free_pid) runs inside
        // __exit_signal's stats_lock section, so under siglock too; in 6.15
        // free_pids runs after the unlock, under none of them.
        check(
            Site::FreePid,
            &|c| {
                c.tasklist_write != deferred
                    && c.siglock != deferred
                    && c.stats_write != deferred
                    && c.irqs_off != deferred
                    && !c.pidmap
            },
            Some(spawns),
        );
        // 6.14: __exit_signal calls add_device_randomness under siglock,
        // before write_seqlock(&sig->stats_lock).
        check(
            Site::AddDeviceRandomness,
            &|c| {
                c.tasklist_write != deferred
                    && c.siglock != deferred
                    && !c.stats_write
                    && (deferred || c.irqs_off)
                    && !c.pidmap
            },
            Some(spawns),
        );
        // Up to 6.19 pidfs works under pidmap_lock; 7.0 (and lockless)
        // after it is dropped, under its own bucket locks.
        let pidfs_locked = strategy.pidfs == crate::strategy::PidfsStrategy::UnderPidmapLock;
        check(
            Site::PidfsRemove,
            &|c| {
                c.pidmap == pidfs_locked
                    && c.tasklist_write != deferred
                    && c.siglock != deferred
                    && c.stats_write != deferred
                    && c.irqs_off == irqs_off
            },
            Some(spawns),
        );
        // alloc_pid runs before copy_process takes tasklist_lock.
        let before_tasklist = |c: &Context| !c.tasklist_write && !c.siglock && !c.stats_write;
        check(
            Site::PidfsAdd,
            &|c| {
                before_tasklist(c)
                    && c.pidmap == pidfs_locked
                    && c.irqs_off == (irqs_off && pidfs_locked)
            },
            Some(spawns),
        );
        check(
            Site::IdrNodeAlloc,
            &|c| before_tasklist(c) && c.pidmap != lockless && c.irqs_off == irqs_off,
            None,
        );
        let free_pid_contexts = lockctx::counts(Site::FreePid);
        // The two-pid release needs its orphan reparented to us, root
        // init; a lock-free tree's orphans go to its own init. lockless
        // releases through exit-deferred's release_task.
        let order = if lockless {
            "as exit-deferred (the same release_task; not run: orphans in a lock-free tree go to its init)"
        } else {
            free_order(strategy)
        };
        println!(
            "selftest lockctx: {}: {spawns} spawns, free_pid {free_pid_contexts:?}; a release that frees two pids freed {order}",
            strategy.name,
        );
    }
    while let Some(init) = inits.pop() {
        request_exit(&init, 0);
        wait_child(Some(&init)).expect("reap ns init");
    }
    drop(deep);
    drop(lf_deep);
    drop(lf_root);
    expect_invariants(&base);
}

/// What the session leader in [`free_order`] is told and hands back: the
/// strategy pair for its child, and that child (a raw counted reference).
struct Grandchild {
    strategy: &'static StrategyPair,
    task: AtomicPtr<Task>,
}

/// A session leader's entry: spawns a plain child (so the child's process
/// group and session are the leader's pid), hands it over, and exits.
fn spawn_grandchild_then_exit(arg: usize) {
    // SAFETY: `arg` points to the `Grandchild` on the test's stack, which
    // reaps us and then the grandchild before it returns.
    let slot = unsafe { &*(arg as *const Grandchild) };
    let mut args = CloneArgs::new("grandchild", exit_with, 0);
    args.strategy = slot.strategy;
    let g = copy_process(&args).expect("grandchild");
    slot.task
        .store(g.into_raw() as *mut Task, Ordering::Release);
}

/// A process's pid, by root-level number.
fn nr_of(t: &Task, ty: PidType) -> i32 {
    task_pid(t, ty).map_or(0, |p| p.nr())
}

/// Lets `t` (a child of ours) run to its exit, then reaps it with lockctx
/// recording only that release.
fn reap_recording(t: &Task) -> Result<crate::task::wait::Reaped, Errno> {
    use crate::klib::lockctx;
    while t.state() != TaskState::Zombie {
        sched::yield_now();
    }
    lockctx::reset();
    let was = lockctx::set_enabled(true);
    let reaped = wait_child(Some(t));
    lockctx::set_enabled(was);
    reaped
}

/// The order in which one release frees two pids of different types, as
/// `lockctx` records `free_pid` calls. C (`setsid`, so PGID = SID = C)
/// spawns G and exits; reaping C frees nothing, as G still links C's pid
/// as its PGID and SID; G, reparented to us (root init), is reaped next
/// and frees G's pid (TGID) and C's (SID). 6.14's `__unhash_process`
/// frees each as its last link goes, in detach order: [G, C]; 6.15's
/// `free_pids` goes last type first: [C, G]. Returns the order seen.
fn free_order(strategy: &'static StrategyPair) -> &'static str {
    use crate::klib::lockctx;
    let deferred = strategy.release == crate::strategy::ReleaseStrategy::Deferred;
    let slot = Grandchild {
        strategy,
        task: AtomicPtr::new(ptr::null_mut()),
    };
    let mut args = CloneArgs::new(
        "leader",
        spawn_grandchild_then_exit,
        &slot as *const Grandchild as usize,
    );
    args.setsid = true;
    args.strategy = strategy;
    let c = copy_process(&args).expect("session leader");
    let c_nr = nr_of(&c, PidType::Pid);
    assert_eq!(
        (nr_of(&c, PidType::Pgid), nr_of(&c, PidType::Sid)),
        (c_nr, c_nr),
        "setsid: a new process group and session, led by the child"
    );
    let frees_on_each_cpu = || {
        (0..smp::online())
            .map(lockctx::frees)
            .collect::<Vec<Vec<i32>>>()
    };
    assert_eq!(reap_recording(&c).map(|r| r.nr), Ok(c_nr));
    assert!(
        frees_on_each_cpu().iter().all(Vec::is_empty),
        "{}: reaping C freed {:?}, though its pid is G's PGID and SID",
        strategy.name,
        frees_on_each_cpu()
    );

    let g = slot.task.swap(ptr::null_mut(), Ordering::Acquire);
    assert!(!g.is_null(), "C handed over no child");
    // SAFETY: the counted reference C gave up with into_raw.
    let g = unsafe { TaskRef::from_raw(g) };
    let g_nr = nr_of(&g, PidType::Pid);
    assert_eq!(
        (nr_of(&g, PidType::Pgid), nr_of(&g, PidType::Sid)),
        (c_nr, c_nr),
        "a plain child inherits its parent's process group and session"
    );
    assert_eq!(
        reap_recording(&g).map(|r| r.nr),
        Ok(g_nr),
        "G was reparented to us"
    );
    let (want, order) = if deferred {
        ([c_nr, g_nr], "[leader, child] (free_pids: last type first)")
    } else {
        ([g_nr, c_nr], "[child, leader] (detach order)")
    };
    let mut expected = alloc::vec![Vec::new(); smp::online()];
    expected[platform::cpu_id()] = want.to_vec();
    let seen = frees_on_each_cpu();
    assert_eq!(
        seen, expected,
        "{}: free_pid calls per CPU reaping G (pid {g_nr}, child of C = pid {c_nr})",
        strategy.name
    );
    order
}
