//! RCU on real CPUs: grace periods wait for every reader that began before
//! them on all CPUs, callbacks run, and a reader that never ends is
//! reported as a stall that fails the run.

use std::time::{Duration, Instant};

use pidlab_tests::Boot;

#[test]
fn grace_periods_wait_for_readers_on_eight_cpus() {
    let run = Boot::new().smp(8).tcg_single().params("test=rcu").run();
    run.expect_success().expect_serial("selftest rcu: ok");
    let line = run.line("selftest rcu: 8 cpus");
    assert!(line.contains("grace periods"), "{line}");
}

#[test]
fn grace_periods_wait_for_readers_on_two_parallel_cpus() {
    Boot::new()
        .smp(2)
        .params("test=rcu")
        .run()
        .expect_success()
        .expect_serial("selftest rcu: ok");
}

#[test]
fn a_reader_that_never_ends_is_a_reported_stall() {
    let start = Instant::now();
    Boot::new()
        .smp(2)
        .params("test=rcu-stall")
        .timeout(Duration::from_secs(30))
        .run()
        .expect_failure_with("rcu: stall: grace period")
        .expect_failure_with("cpu 1 (read-side nesting 1)");
    assert!(start.elapsed() < Duration::from_secs(25));
}
