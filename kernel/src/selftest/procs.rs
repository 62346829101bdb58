//! In-kernel cases for the process paths: spawn and reap on every CPU for
//! every strategy pair, namespaces, reaper death, and bad arguments. Each
//! ends with the invariant check.

use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use crate::arch::smp;
use crate::klib::errno::Errno;
use crate::pid::namespace::init_pid_ns;
use crate::pid::{PidType, pid_nr_ns};
use crate::platform;
use crate::selftest::invariants::{Baseline, heap_fallthroughs};
use crate::strategy::{LOCKLESS, PAIRS, StrategyPair};
use crate::task::exit::{park, request_exit};
use crate::task::fork::{CloneArgs, copy_process, current_ns};
use crate::task::sched;
use crate::task::wait::{Reaped, wait_child};
use crate::task::{Task, TaskFn, TaskRef, TaskState, read_lock_tasklist, task_pid};

fn exit_with(code: usize) {
    sched::exit_current(code as i32)
}

struct Stress {
    iters: u64,
    pair: usize,
    failures: AtomicU64,
}

/// Spawns and reaps `iters` children on the current CPU; returns failures.
fn spawn_reap_loop(iters: u64, pair: usize) -> u64 {
    let strategy = &PAIRS[pair];
    let mut failures = 0;
    for i in 0..iters {
        let code = (i % 200) as usize;
        let mut args = CloneArgs::new("child", exit_with, code);
        args.strategy = strategy;
        let child = match copy_process(&args) {
            Ok(c) => c,
            Err(e) => {
                println!("cpu {}: copy_process: {e:?}", platform::cpu_id());
                failures += 1;
                continue;
            }
        };
        match wait_child(Some(&child), true) {
            Ok(Reaped { nr, code: got }) if got == code as i32 && nr > 0 => {}
            other => {
                println!(
                    "cpu {}: wait: {other:?}, expected code {code}",
                    platform::cpu_id()
                );
                failures += 1;
            }
        }
    }
    failures
}

fn stress_worker(arg: usize) {
    // SAFETY: `arg` points to the `Stress` on init's stack, which waits for
    // every worker before returning.
    let st = unsafe { &*(arg as *const Stress) };
    let f = spawn_reap_loop(st.iters, st.pair);
    st.failures.fetch_add(f, Ordering::Relaxed);
}

/// Runs `iters` spawn+reap on every online CPU (a worker process per CPU)
/// for strategy pair `pair`; returns (failures, elapsed cycles).
fn on_every_cpu(iters: u64, pair: usize) -> (u64, u64) {
    let st = Stress {
        iters,
        pair,
        failures: AtomicU64::new(0),
    };
    let t0 = platform::cycles();
    let cpus = smp::online();
    for cpu in 0..cpus {
        let mut args = CloneArgs::new("worker", stress_worker, &st as *const Stress as usize);
        args.cpu = Some(cpu);
        if let Err(e) = copy_process(&args) {
            panic!("worker on cpu {cpu}: {e:?}");
        }
    }
    for _ in 0..cpus {
        wait_child(None, true).expect("a worker to reap");
    }
    (st.failures.load(Ordering::Relaxed), platform::cycles() - t0)
}

fn expect_invariants(base: &Baseline) {
    if let Err(e) = base.check() {
        panic!("invariants: {e}");
    }
    println!("invariants: ok");
}

/// `fork`: single-CPU cost per strategy pair, then every CPU for every pair,
/// ECHILD, and the invariant check.
pub(crate) fn fork_smoke() {
    run_fork(2_000, 20_000);
}

/// `forkstress`: every CPU x 100,000 spawn+reap for every strategy pair.
pub(crate) fn fork_stress() {
    run_fork(100_000, 0);
}

fn run_fork(per_cpu: u64, single_cpu: u64) {
    let base = Baseline::take();
    assert_eq!(
        wait_child(None, false),
        Err(Errno::ECHILD),
        "init has no children yet"
    );
    if single_cpu > 0 {
        let mut line = alloc::string::String::new();
        for (p, StrategyPair { name, .. }) in PAIRS.iter().enumerate() {
            spawn_reap_loop(100, p); // warm the caches
            let touched = heap_fallthroughs().iter().sum::<u64>();
            let t0 = platform::cycles();
            assert_eq!(spawn_reap_loop(single_cpu, p), 0);
            let per = (platform::cycles() - t0) / single_cpu;
            let heap = heap_fallthroughs().iter().sum::<u64>() - touched;
            use core::fmt::Write;
            let _ = write!(
                line,
                " {name} {per} cycles ({heap} of {single_cpu} spawns touched the heap);"
            );
        }
        println!("selftest fork: one cpu, spawn+reap:{line}");
    }
    for (p, StrategyPair { name, .. }) in PAIRS.iter().enumerate() {
        let touched = heap_fallthroughs().iter().sum::<u64>();
        let (failures, cycles) = on_every_cpu(per_cpu, p);
        let total = per_cpu * smp::online() as u64;
        println!(
            "selftest fork: {name}: {} cpus x {per_cpu} spawn+reap = {total} reaped, {failures} failures, {} ms, {} heap fall-throughs",
            smp::online(),
            crate::arch::time::cycles_to_ns(cycles) / 1_000_000,
            heap_fallthroughs().iter().sum::<u64>() - touched
        );
        assert_eq!(failures, 0);
    }
    assert_eq!(wait_child(None, false), Err(Errno::ECHILD));
    expect_invariants(&base);
}

fn thread_body(_: usize) {}

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
        wait_child(None, false),
        Err(Errno::ECHILD),
        "threads are not children"
    );
    let dead = group.read_stats(|s| s.dead_threads.load(Ordering::Relaxed));
    let live = group.nr_threads();
    assert_eq!(
        dead - dead_before,
        4000,
        "__exit_signal folds every thread in"
    );
    assert_eq!(live, 1, "only init is left in its group");
    println!("selftest threads: 4 x 1000 threads spawned, joined, released");
    if smp::online() > 1 {
        join_returns_before_exit_notify();
        join_returns_the_exit_code();
        for strategy in &PAIRS {
            threads_elsewhere(strategy);
            leader_waits_for_its_thread(strategy);
        }
        println!(
            "selftest threads: 4 x {THREADS_ELSEWHERE} threads on another CPU, joined at mm_release; their leader reaped after their release"
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
                wait_child(Some(&t), true).expect("reap the child");
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
    assert_eq!(
        wait_child(Some(&leader), false),
        Err(Errno::EAGAIN),
        "{}: a leader with a live thread was reaped",
        strategy.name
    );
    let thread = take_last_thread();
    request_exit(&thread, 0);
    wait_child(Some(&leader), true).expect("reap the leader once its thread is released");
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
    wait_child(Some(&leader), true).expect("reap the leader");
    let last = take_last_thread();
    assert!(
        task_pid(&last, PidType::Pid).is_none(),
        "{}: leader reaped while its last thread still had its pid",
        strategy.name
    );
}

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
        wait_child(Some(&inner_init), true),
        Ok(Reaped {
            nr: inner_nr,
            code: 7
        })
    );
    assert!(!inner_ns.accepts_pids());
    let mut args = CloneArgs::new("late", park, 0);
    args.pid_ns = Some(&inner_ns);
    assert_eq!(copy_process(&args).err(), Some(Errno::ENOMEM));
    println!("selftest pidns: spawn after the namespace's init died: ENOMEM");
    // The task that was in it still lives; it exits and is reaped.
    request_exit(&deep, 3);
    assert_eq!(wait_child(Some(&deep), true).map(|r| r.code), Ok(3));
    drop((inner_init, inner_ns, deep));
    while let Some((t, _)) = chain.pop() {
        request_exit(&t, 0);
        wait_child(Some(&t), true).expect("reap ns init");
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
    // Its exit_notify wakes us, its parent, once it is a zombie.
    sched::block_until(|| init.state() == crate::task::TaskState::Zombie);
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
        let _ = wait_child(Some(&t), true);
    }
    assert_eq!(
        got,
        Some(Errno::ENOMEM),
        "a child was attached in a namespace whose init died after alloc_pid"
    );
    assert!(!ns.accepts_pids());
    assert_eq!(wait_child(Some(&init), true).map(|r| r.code), Ok(9));
    drop((init, ns));
    println!("selftest fork-recheck: init died after alloc_pid: ENOMEM, nothing leaked");
    expect_invariants(&base);
}

fn expect_leak(base: &Baseline, what: &str, needle: &str) {
    match base.check() {
        Ok(()) => panic!("invariants: a leaked {what} passed the check"),
        Err(e) => {
            assert!(e.contains(needle), "leaked {what}, the check said: {e}");
            println!("selftest invariants-negative: leaked {what}: {e}");
        }
    }
}

/// `invariants-negative`: the leak check itself, on purpose: an extra
/// task, a pid, a namespace and heap bytes beyond the caches' bound each
/// make it fail naming them, and it passes again once they are gone.
pub(crate) fn invariant_check_catches_leaks() {
    use crate::pid::namespace::create_pid_namespace;
    let base = Baseline::take();
    expect_invariants(&base);

    let task = crate::task::Task::create("leaked", 0, thread_body, 0).expect("task");
    expect_leak(&base, "task", "tasks alive, expected");
    drop(task);
    expect_invariants(&base);

    let pid = crate::pid::alloc_pid(init_pid_ns(), &[], StrategyPair::stock(), true).expect("pid");
    expect_leak(&base, "pid", "root pid namespace: ");
    crate::pid::free_pid(pid, StrategyPair::stock());
    expect_invariants(&base);

    let ns = create_pid_namespace(init_pid_ns()).expect("ns");
    expect_leak(&base, "namespace", "pid namespaces alive, expected");
    drop(ns);
    expect_invariants(&base);

    let bytes: Vec<u8> = Vec::with_capacity(Baseline::cache_bound() + (1 << 20));
    expect_leak(&base, "heap block", "heap: ");
    drop(bytes);
    expect_invariants(&base);
}

/// `badargs`: invalid spawns return errors and leak nothing.
pub(crate) fn bad_args() {
    let base = Baseline::take();
    let mut a = CloneArgs::new("x", park, 0);
    a.thread = true;
    a.newns = true;
    assert_eq!(
        copy_process(&a).err(),
        Some(Errno::EINVAL),
        "thread + newns"
    );
    let mut a = CloneArgs::new("x", park, 0);
    a.thread = true;
    a.setsid = true;
    assert_eq!(
        copy_process(&a).err(),
        Some(Errno::EINVAL),
        "thread + setsid"
    );
    let mut a = CloneArgs::new("x", park, 0);
    a.cpu = Some(smp::online());
    assert_eq!(copy_process(&a).err(), Some(Errno::EINVAL), "offline cpu");
    let mut a = CloneArgs::new("x", park, 0);
    a.set_tid = &[1, 2];
    assert_eq!(
        copy_process(&a).err(),
        Some(Errno::EINVAL),
        "set_tid too long"
    );
    let mut a = CloneArgs::new("x", park, 0);
    a.set_tid = &[1];
    assert_eq!(
        copy_process(&a).err(),
        Some(Errno::EEXIST),
        "pid 1 is init's"
    );
    a.cap = false;
    a.set_tid = &[5000];
    assert_eq!(
        copy_process(&a).err(),
        Some(Errno::EPERM),
        "set_tid without cap"
    );
    assert_eq!(wait_child(None, true), Err(Errno::ECHILD));
    println!("selftest badargs: EINVAL, EEXIST, EPERM, ECHILD as Linux");
    expect_invariants(&base);
}

/// `pidsoak`: every CPU allocates and frees pids (every kernel version,
/// namespace depth 0 and 3), 1,000,000 operations in all; live pids stay
/// unique in every namespace; afterwards every IDR is empty, pid_allocated
/// back, every preload pool within its bound.
pub(crate) fn pid_soak() {
    let base = Baseline::take();
    match crate::selftest::pid_soak::pid_soak(&crate::task::sched::Cpus, 1_000_000, smp::online()) {
        Ok(r) => println!("selftest pidsoak: {r}"),
        Err(e) => panic!("pid soak: {e}"),
    }
    expect_invariants(&base);
}

/// `lfsoak`: the lock-free strategy on every CPU at once, 1,000,000
/// operations in a lock-free tree (root and three levels down), one
/// allocation in eight with a random `set_tid`, every 7th pid struct and
/// node allocation of each CPU failing: live pids unique everywhere,
/// every map back to its inits, counts back, then empty and dead.
pub(crate) fn lockless_soak() {
    use crate::selftest::pid_soak::{SoakConfig, pid_soak_with};
    let base = Baseline::take();
    let cfg = SoakConfig {
        fail_every: 7,
        lockfree: true,
        set_tid: true,
        ..SoakConfig::new(1_000_000, smp::online())
    };
    match pid_soak_with(&crate::task::sched::Cpus, &cfg) {
        Ok(r) => println!("selftest lfsoak: {r}"),
        Err(e) => panic!("lock-free pid soak: {e}"),
    }
    expect_invariants(&base);
}

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
                wait_child(Some(&child), true).expect("reap");
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
        // lockless: pidfs under its own bucket locks, no pidmap_lock.
        check(
            Site::PidfsRemove,
            &|c| {
                c.pidmap != lockless
                    && c.tasklist_write != deferred
                    && c.siglock != deferred
                    && c.stats_write != deferred
                    && c.irqs_off == irqs_off
            },
            Some(spawns),
        );
        // alloc_pid runs before copy_process takes tasklist_lock.
        let before_tasklist =
            |c: &Context| c.pidmap != lockless && !c.tasklist_write && !c.siglock && !c.stats_write;
        check(
            Site::PidfsAdd,
            &|c| before_tasklist(c) && c.irqs_off == irqs_off,
            Some(spawns),
        );
        check(
            Site::IdrNodeAlloc,
            &|c| before_tasklist(c) && c.irqs_off == irqs_off,
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
        wait_child(Some(&init), true).expect("reap ns init");
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
    let reaped = wait_child(Some(t), true);
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
