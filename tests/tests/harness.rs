//! Tests of the harness itself, and of the boot floor: a good boot passes, a
//! panic is a failure with its message, a hang is a timeout, faults and bad
//! parameters are reported clearly.

use std::time::{Duration, Instant};

use pidlab_tests::{Boot, Status};

#[test]
fn a_good_boot_reports_success_with_memory_and_heap() {
    let run = Boot::new().smp(2).params("bench=none").run();
    run.expect_success()
        .expect_serial("pidlab ")
        .expect_serial(&format!(
            "cmdline: accel=tcg host_cpus={} bench=none",
            pidlab_boot::host_cpus()
        ))
        .expect_serial("bench none: boot complete");
    assert!(run.line("memory: ").contains("MiB usable"));
    assert!(run.line("heap: ").contains("MiB at physical"));
}

#[test]
fn a_panic_is_a_failure_with_its_message_and_cpu() {
    Boot::new()
        .params("test=panic")
        .run()
        .expect_failure_with("KERNEL PANIC on cpu 0: selftest: deliberate panic");
}

#[test]
fn a_hang_is_a_timeout_not_a_hung_test() {
    let start = Instant::now();
    let run = Boot::new()
        .params("test=hang")
        .timeout(Duration::from_secs(20))
        .run();
    run.expect_timeout()
        .expect_serial("selftest hang: spinning forever");
    // Killing QEMU takes a moment past the timeout (scaled by
    // PIDLAB_TEST_TIMEOUT_SCALE), not the host's speed: 30 s is plenty.
    let Status::Timeout(timeout) = run.outcome.status else {
        unreachable!("expect_timeout checked it")
    };
    assert!(
        start.elapsed() < timeout + Duration::from_secs(30),
        "the timeout ({timeout:?}) did not stop QEMU promptly: {:?}",
        start.elapsed()
    );
}

#[test]
fn cpu_exceptions_name_vector_error_code_rip_and_cr2() {
    let run = Boot::new().params("test=pagefault").run();
    run.expect_failure_with("#PF page fault (vector 14)")
        .expect_failure_with("CR2 0x8")
        .expect_failure_with("RIP 0x");
    Boot::new()
        .params("test=stackoverflow")
        .run()
        .expect_failure_with("#DF double fault (vector 8)");
}

#[test]
fn allocation_failure_names_the_request() {
    Boot::new()
        .params("test=oom")
        .run()
        .expect_failure_with("memory allocation of")
        .expect_failure_with("last failed allocation");
}

#[test]
fn heap_size_is_configurable_and_checked() {
    let run = Boot::new().params("heap=64M test=heap").run();
    run.expect_success().expect_serial("selftest heap: ok");
    assert!(
        run.line("heap: ").starts_with("heap: 64 MiB"),
        "{}",
        run.line("heap: ")
    );
    Boot::new()
        .mem("256M")
        .params("heap=4G")
        .run()
        .expect_failure_with("does not fit");
    // The largest size the parser accepts cannot be rounded to a page.
    Boot::new()
        .params("heap=18446744073709551615")
        .run()
        .expect_failure_with("heap=17592186044415 MiB does not fit");
}

#[test]
fn bad_parameters_are_rejected_with_a_clear_error() {
    Boot::new()
        .params("frobnicate=1")
        .run()
        .expect_failure_with("unknown key `frobnicate`");
    Boot::new()
        .params("bench=bogus")
        .run()
        .expect_failure_with("bad value `bogus` for `bench`");
    Boot::new()
        .params("test=nosuchcase")
        .run()
        .expect_failure_with("unknown test case `nosuchcase`");
}
