//! NO_HZ_IDLE (`nohz=on`, the default): an idle CPU stops its tick while a
//! busy one keeps ticking, grace periods do not wait for idle CPUs, and
//! the lockup detectors tell an idle CPU from a stuck one.

use pidlab_tests::Boot;

/// Over a second, the idle CPU takes fewer than 50 timer interrupts (the
/// periodic tick would be 1000) while the busy one takes at least 100.
#[test]
fn an_idle_cpu_takes_almost_no_ticks_while_a_busy_one_ticks() {
    Boot::new()
        .smp(2)
        .params("test=nohz-idle")
        .run()
        .expect_success()
        .expect_serial("nohz: on: idle CPUs stop their tick")
        .expect_serial("selftest nohz-idle: ok");
}

/// The same case with `nohz=off` fails: the idle CPU takes every tick, so
/// the check sees the mechanism, not the host.
#[test]
fn with_nohz_off_the_idle_cpu_takes_every_tick() {
    Boot::new()
        .smp(2)
        .params("test=nohz-idle nohz=off")
        .run()
        .expect_failure_with("while idle (fewer than 50 a second expected)")
        .expect_serial("nohz: off: idle CPUs take every timer tick");
}

/// Idle for three hard-lockup bounds (1 s each: the idle CPU's watchdog
/// one-shot comes every 400 ms) is no hard lockup, and the one-shots stay
/// under the idle case's bound.
#[test]
fn an_idle_cpu_is_no_hard_lockup() {
    Boot::new()
        .smp(2)
        .params("test=nohz-no-lockup,nohz-idle hardlockup_ms=1000")
        .run()
        .expect_success()
        .expect_serial("waking every 400 ms to check their hard-lockup buddy")
        .expect_serial("selftest nohz-no-lockup: ok")
        .expect_serial("selftest nohz-idle: ok");
}

/// `synchronize_rcu` and a `call_rcu` callback from CPU 0 complete while
/// CPU 1 spins and CPUs 2..7 idle with their ticks stopped; with the
/// hard-lockup detector off nothing wakes them, so they take no timer
/// interrupt at all meanwhile: the grace period counted them quiescent
/// without their ticks.
#[test]
fn a_grace_period_completes_while_six_of_eight_cpus_idle_tickless() {
    Boot::new()
        .smp(8)
        .params("test=nohz-rcu hardlockup_ms=0")
        .run()
        .expect_success()
        .expect_serial("nohz: on: idle CPUs stop their tick (nohz=)")
        .expect_serial("their timer interrupts meanwhile [0, 0, 0, 0, 0, 0]")
        .expect_serial("selftest nohz-rcu: ok");
}

/// The same with the detector on (the idle CPUs' one-shots allowed).
#[test]
fn a_grace_period_completes_beside_the_watchdogs_wake_ups() {
    Boot::new()
        .smp(8)
        .params("test=nohz-rcu")
        .run()
        .expect_success()
        .expect_serial("selftest nohz-rcu: ok");
}

/// CPU 2 is stuck with interrupts off and CPU 1, which watches it, idles
/// with its tick stopped: the idle CPU's watchdog wake-ups still report
/// the hard lockup, with the RIP and the lock.
#[test]
fn a_cpu_stuck_with_irqs_off_is_reported_by_an_idle_watcher() {
    let run = Boot::new().smp(3).params("test=lockup-idle-watcher").run();
    run.expect_failure_with("hard lockup on CPU 2: no timer tick for")
        .expect_failure_with("at RIP 0x")
        .expect_failure_with("in task worker; waiting for lock lockup_idle_buddy");
    let frozen = run.number_after("no timer tick for ");
    assert!((5000..20_000).contains(&frozen), "frozen {frozen} ms");
}
