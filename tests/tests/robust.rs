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

#[test]
fn a_task_stack_overflow_hits_the_guard_and_names_cpu_and_task() {
    let start = std::time::Instant::now();
    Boot::new()
        .smp(2)
        .params("test=task-stack-overflow")
        .run()
        .expect_failure_with("stack overflow on CPU 0 in task overflow")
        .expect_serial("stacks: guarded region at 0x");
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
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
