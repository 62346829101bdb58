//! In-kernel cases for the process paths: spawn and reap on every CPU for
//! every strategy pair, bad arguments, the leak check itself and the pid
//! soaks. Each ends with the invariant check. Threads, namespaces and lock
//! contexts have files of their own.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::smp;
use crate::klib::errno::Errno;
use crate::pid::namespace::init_pid_ns;
use crate::platform;
use crate::selftest::invariants::{Baseline, heap_fallthroughs};
use crate::strategy::{PAIRS, StrategyPair};
use crate::task::exit::park;
use crate::task::fork::{CloneArgs, copy_process};
use crate::task::sched;
use crate::task::wait::{Reaped, wait_child, wait_child_nohang};

pub(super) fn exit_with(code: usize) {
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
        match wait_child(Some(&child)) {
            Ok(Reaped { nr, code: got, .. }) if got == code as i32 && nr > 0 => {}
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
        wait_child(None).expect("a worker to reap");
    }
    (st.failures.load(Ordering::Relaxed), platform::cycles() - t0)
}

/// A task body that returns at once.
pub(super) fn thread_body(_: usize) {}

pub(super) fn expect_invariants(base: &Baseline) {
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
        wait_child_nohang(None),
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
    assert_eq!(wait_child_nohang(None), Err(Errno::ECHILD));
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
    assert_eq!(wait_child(None), Err(Errno::ECHILD));
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
