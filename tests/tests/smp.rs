//! SMP bring-up: every CPU comes online, ticks, and runs work under its own
//! index; a panic on an AP fails the run naming that AP; the TSC clock
//! agrees with the PIT.

use pidlab_tests::Boot;

fn boot_all_cpus(cpus: u32) {
    let run = Boot::new().smp(cpus).params("test=smp").run();
    run.expect_success()
        .expect_serial(&format!("cpus online: {cpus}/{cpus} "))
        .expect_serial(&format!(
            "selftest smp: {cpus} cpus, indices distinct, every cpu ticking"
        ));
}

#[test]
fn one_cpu() {
    boot_all_cpus(1);
}

#[test]
fn two_cpus() {
    boot_all_cpus(2);
}

#[test]
fn four_cpus() {
    boot_all_cpus(4);
}

#[test]
fn eight_cpus() {
    boot_all_cpus(8);
}

#[test]
fn sixteen_cpus() {
    boot_all_cpus(16);
}

#[test]
fn a_panic_on_an_ap_names_it_and_is_printed_once() {
    let run = Boot::new().smp(4).params("test=appanic").run();
    run.expect_failure_with("KERNEL PANIC on cpu 3: selftest: deliberate panic on an AP");
    let reports = run.serial().matches("KERNEL PANIC").count();
    assert_eq!(reports, 1, "the panic was reported {reports} times");
}

#[test]
fn tsc_clock_agrees_with_the_pit() {
    Boot::new()
        .smp(2)
        .params("test=tsc")
        .run()
        .expect_success()
        .expect_serial("selftest tsc: ok");
}
