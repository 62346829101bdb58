//! Processes: spawn and reap through alloc_pid and tasklist_lock on every
//! CPU for every strategy pair, threads, namespaces, reaper death, bad
//! arguments, and the invariant check after each.

use std::time::Duration;

use pidlab_tests::Boot;

const PAIRS: [&str; 5] = ["stock", "pidmap-once", "exit-deferred", "both", "v7.0"];

/// The stress: 8 CPUs x 100,000 spawn+reap for each of the four kernel
/// versions. Single-threaded TCG: 8 vCPU threads on fewer host cores would
/// make every lock hand-off wait for the host scheduler (see
/// tests/locks.rs); round-robin vCPUs still interleave the 8 CPUs' critical
/// sections.
#[test]
fn eight_cpus_times_100k_spawn_and_reap_for_every_strategy_pair() {
    let run = Boot::new()
        .smp(8)
        .tcg_single()
        // About 60 s here; 10x for a slow host.
        .timeout(Duration::from_secs(900))
        .params("test=forkstress")
        .run();
    run.expect_success()
        .expect_serial("invariants: ok")
        .expect_serial("selftest forkstress: ok");
    for pair in PAIRS {
        let line = run.line(&format!("selftest fork: {pair}: "));
        assert!(
            line.contains("8 cpus x 100000 spawn+reap = 800000 reaped, 0 failures"),
            "{line}"
        );
    }
}

/// Multi-threaded TCG on 4 CPUs: real parallel contention on the locks.
#[test]
fn spawn_reap_threads_namespaces_and_bad_arguments_on_4_cpus() {
    let run = Boot::new()
        .smp(4)
        .params("test=badargs,fork,threads,pidns")
        .run();
    run.expect_success()
        .expect_serial("selftest badargs: EINVAL, EEXIST, EPERM, ECHILD as Linux")
        .expect_serial("selftest threads: 5 x 1000 threads spawned, joined, released")
        .expect_serial("selftest threads: 5 x 300 threads on another CPU, joined at mm_release; their leader reaped after their release")
        .expect_serial("selftest threads: join returns the exit code of a thread and a process on another CPU, held at the join point")
        .expect_serial("selftest pidns: task 3 namespaces deep has pids [")
        .expect_serial("selftest pidns: spawn after the namespace's init died: ENOMEM")
        .expect_serial("selftest pidns: ok");
    assert_eq!(run.serial().matches("invariants: ok").count(), 4);
    assert!(
        run.line("selftest fork: one cpu, spawn+reap:")
            .contains("both ")
    );
    for pair in PAIRS {
        let line = run.line(&format!("selftest fork: {pair}: "));
        assert!(line.contains("0 failures"), "{line}");
    }
}

/// Each strategy runs free_pid, add_device_randomness, the pidfs calls,
/// IDR node allocation, `__exit_signal`'s fold and `copy_process`'s attach
/// in the lock context of the kernel it stands for, and a release that
/// frees two pids frees them in its order: detach order before the exit
/// change, last type first after (the in-kernel case asserts every call's
/// context and count, and the free order). `lockless` runs where 7.0 runs
/// it, without pidmap_lock anywhere.
#[test]
fn side_work_runs_where_each_kernel_version_runs_it() {
    let run = Boot::new().smp(2).params("test=lockctx").run();
    run.expect_success()
        .expect_serial("selftest lockctx: ok")
        .expect_serial("invariants: ok");
    for (pair, order) in [
        ("stock", "[child, leader] (detach order)"),
        ("pidmap-once", "[child, leader] (detach order)"),
        (
            "exit-deferred",
            "[leader, child] (free_pids: last type first)",
        ),
        ("both", "[leader, child] (free_pids: last type first)"),
        ("v7.0", "[leader, child] (free_pids: last type first)"),
    ] {
        let line = run.line(&format!("selftest lockctx: {pair}: "));
        assert!(line.contains("600 spawns"), "{line}");
        assert!(
            line.ends_with(&format!("a release that frees two pids freed {order}")),
            "{line}"
        );
    }
    // The lock-free prototype: processes only, never under pidmap_lock.
    let line = run.line("selftest lockctx: lockless: ");
    assert!(line.contains("400 spawns"), "{line}");
}

/// A wait takes the children of every task of the caller's thread group,
/// its own first, each list oldest first; WNOHANG answers "nothing yet"
/// while one lives; a child's exit wakes the group's waiter. pidctl's
/// tasks have no threads: the kernel checks this itself (`test=wait`).
#[test]
fn a_wait_reaps_the_children_of_every_thread_of_its_group() {
    let run = Boot::new().smp(1).params("test=wait").run();
    run.expect_success()
        .expect_serial("selftest wait: a wait reaps the children of every task of its group, its own first, oldest first; WNOHANG answers none while one lives; an exit wakes the group's waiter")
        .expect_serial("invariants: ok")
        .expect_serial("selftest wait: ok");
}
