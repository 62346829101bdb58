//! The scheduler: kernel tasks spawned and joined on every CPU, a join
//! across CPUs, and tasks and stacks recycled through the per-CPU caches.

use pidlab_tests::Boot;

#[test]
fn spawn_and_join_on_every_cpu() {
    let run = Boot::new().smp(8).params("test=sched").run();
    run.expect_success().expect_serial("selftest sched: ok");
    assert!(
        run.line("selftest sched: cpu 7:")
            .contains("cycles per spawn+join")
    );
}

#[test]
fn spawn_and_join_on_one_cpu() {
    Boot::new()
        .smp(1)
        .params("test=sched")
        .run()
        .expect_success()
        .expect_serial("selftest sched: ok");
}
