//! Soundness checks that must hold in the kernel's own build: the asserts
//! that guard memory safety are on whatever the profile, every interrupt
//! handler enters through one wrapper, and a task's stack overflow hits a
//! guard page and is named.

use pidlab_tests::Boot;

#[test]
fn a_task_freed_with_its_pid_attached_fails_the_run() {
    Boot::new()
        .params("test=task-freed-with-pids")
        .run()
        .expect_failure_with("task leaky freed with pids attached");
}

#[test]
fn every_interrupt_handler_enters_through_irq_entry() {
    let run = Boot::new().smp(4).params("test=irqs").run();
    run.expect_success().expect_serial("selftest irqs: ok");
    assert!(run.line("selftest irqs: cpu 3:").contains("wake "));
}

/// The guard page's fault names the overflow (a failure, not a timeout:
/// the run ends at once, whatever the host's speed).
#[test]
fn a_task_stack_overflow_hits_the_guard_and_names_cpu_and_task() {
    Boot::new()
        .smp(2)
        .params("test=task-stack-overflow")
        .run()
        .expect_failure_with("stack overflow on CPU 0 in task overflow")
        .expect_serial("stacks: guarded region at 0x");
}

/// The first AP is abandoned right after its start-up IPIs and left
/// running, so it wakes while the next APs are offered: it must take
/// neither their stack nor their index.
#[test]
fn a_late_ap_is_turned_away_by_the_claim_handshake() {
    for _ in 0..3 {
        let run = Boot::new().smp(4).params("test=ap-late").run();
        run.expect_success()
            .expect_serial("cpus online: 3/4 ")
            .expect_serial("cpus failed to start: apic ids [1]")
            .expect_serial("selftest ap-late: APIC id 1 turned away (")
            .expect_serial("selftest smp: 3 cpus, indices distinct, every cpu ticking");
    }
}

/// A CPU spinning forever with interrupts off (for a lock whose own wait
/// bound is off) is caught by the hard-lockup detector: its buddy sees its
/// ticks frozen and NMIs it; the report names the RIP and the lock.
/// The hard-lockup detector, not the soft one (20 s), names it: the frozen
/// time it reports is the guest's own clock, past the 5 s bound and well
/// short of the soft bound, whatever the host's speed.
#[test]
fn a_cpu_stuck_with_interrupts_off_is_a_named_hard_lockup() {
    let run = Boot::new().smp(2).params("test=lockup-irqoff").run();
    run.expect_failure_with("hard lockup on CPU 1: no timer tick for")
        .expect_failure_with("at RIP 0x")
        .expect_failure_with("in task worker; waiting for lock lockup_irqoff")
        .expect_serial("watchdog: lock and spin waits 2000 ms, soft lockup 20000 ms");
    let frozen = run.number_after("no timer tick for ");
    assert!((5000..20_000).contains(&frozen), "frozen {frozen} ms");
}

/// A CPU spinning with interrupts on that never passes a scheduling point
/// is a soft lockup, named by its own tick.
#[test]
fn a_cpu_that_never_schedules_is_a_named_soft_lockup() {
    Boot::new()
        .smp(2)
        .params("test=lockup-soft softlockup_ms=3000")
        .run()
        .expect_failure_with("soft lockup on CPU 1: no scheduling point for")
        .expect_failure_with("in task worker, at RIP 0x");
}
