//! Soundness checks that must hold in the kernel's own build: the asserts
//! that guard memory safety are on whatever the profile.

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
