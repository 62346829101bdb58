//! Tests that fail when what they guard breaks: each was written against a
//! change that left the rest of the suite green (see the commit messages).

use pidlab_tests::Boot;

/// copy_process rechecks, under tasklist_lock, that the namespace still
/// takes pids: its init dies between alloc_pid and that section.
#[test]
fn a_namespace_whose_init_dies_mid_fork_takes_no_child() {
    Boot::new()
        .smp(2)
        .params("test=fork-recheck")
        .run()
        .expect_success()
        .expect_serial("selftest fork-recheck: init died after alloc_pid: ENOMEM, nothing leaked")
        .expect_serial("invariants: ok");
}

/// The leak check, on purpose: a task, a pid, a namespace and heap bytes
/// each fail it by name; once gone it passes again.
#[test]
fn the_invariant_check_names_each_kind_of_leak() {
    let run = Boot::new().smp(2).params("test=invariants-negative").run();
    run.expect_success()
        .expect_serial("selftest invariants-negative: leaked task: ")
        .expect_serial("selftest invariants-negative: leaked pid: root pid namespace: ")
        .expect_serial("selftest invariants-negative: leaked namespace: ")
        .expect_serial("selftest invariants-negative: leaked heap block: heap: ")
        .expect_serial("selftest invariants-negative: ok");
}

/// `join` waits for death, not for the task to stop running: the joined
/// task blocks before it exits.
#[test]
fn join_returns_only_when_the_task_is_dead() {
    for cpus in [1, 2] {
        Boot::new()
            .smp(cpus)
            .params("test=join-blocked")
            .run()
            .expect_success()
            .expect_serial("selftest join-blocked: join returned after the blocked task");
    }
}

/// New stack slots are zeroed (277b5b4): without it a stack could sit in a
/// frame the bootloader ran code in, whose stale QEMU translations made
/// every store of that task take the self-modifying-code path (10-100x
/// slower tasks). With the zeroing removed the first fresh stack reads the
/// bootloader's bytes.
#[test]
fn fresh_stack_frames_are_zeroed() {
    Boot::new()
        .smp(2)
        .params("test=stack-zeroed")
        .run()
        .expect_success()
        .expect_serial("selftest stack-zeroed: 64 new stacks of 8192 bytes read zero")
        .expect_serial("selftest stack-zeroed: ok");
}
