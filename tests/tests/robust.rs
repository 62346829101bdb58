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
