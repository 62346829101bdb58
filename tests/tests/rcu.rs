//! RCU on real CPUs: grace periods wait for every reader that began before
//! them on all CPUs, callbacks run, and a reader that never ends is
//! reported as a stall that fails the run.

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

/// The stall bound is 1 s of guest time (`set_stall_ms(1000)`): the report
/// comes from the stall check, past the bound and before the wait's own
/// watchdog at twice it, as the guest's clock tells (wall time here says
/// nothing: a slow host boots slowly).
#[test]
fn a_reader_that_never_ends_is_a_reported_stall() {
    let run = Boot::new().smp(2).params("test=rcu-stall").run();
    run.expect_failure_with("rcu: stall: grace period")
        .expect_failure_with("cpu 1 (read-side nesting 1)");
    let waited = run.number_after("has waited ");
    assert!((1000..2000).contains(&waited), "reported after {waited} ms");
}
