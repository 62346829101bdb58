//! QEMU's software TLB (`softtlb=`): the kernel measures every CPU's, grows
//! it at boot to the size asked for, and a RAM too small for that is a
//! clear error.

use pidlab_tests::Boot;

/// The sizes a `... at boot: 256 (cpu 0), 64 (cpus 1-3) ...` list names.
fn sizes(list: &str) -> Vec<u64> {
    list.split(", ")
        .map(|group| {
            let n = group.split(' ').next().unwrap();
            n.parse()
                .unwrap_or_else(|_| panic!("not a size: {n:?} in {list:?}"))
        })
        .collect()
}

/// With `softtlb=off` the kernel only probes: every CPU's table has a
/// finite size the probe found by its collisions (QEMU leaves 256 entries
/// on the boot CPU and 64 on the others), smaller than the default the
/// kernel grows it to.
#[test]
fn the_probe_finds_each_cpus_table_as_qemu_left_it() {
    let run = Boot::new().smp(4).params("bench=none softtlb=off").run();
    run.expect_success();
    let line = run.line("softtlb: off: every CPU keeps the software TLB QEMU left at boot: ");
    let list = line
        .strip_prefix("softtlb: off: every CPU keeps the software TLB QEMU left at boot: ")
        .and_then(|l| l.strip_suffix(" entries (softtlb=)"))
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let found = sizes(list);
    assert!(!found.is_empty());
    for n in found {
        assert!(
            (64..16384).contains(&n) && n.is_power_of_two(),
            "a table of {n} entries in {line:?}"
        );
    }
}

/// By default every CPU's table is grown to 16384 entries, and the probe
/// then finds no collision below that; it was smaller at boot.
#[test]
fn every_cpu_is_grown_to_the_default() {
    let run = Boot::new().smp(4).params("bench=none").run();
    run.expect_success();
    let prefix = "softtlb: QEMU's software TLB set to 16384 entries on every CPU (at boot: ";
    let line = run.line(prefix);
    let list = line
        .strip_prefix(prefix)
        .and_then(|l| l.strip_suffix("; softtlb=)"))
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    assert!(
        sizes(list).iter().all(|&n| n < 16384),
        "nothing to grow in {line:?}"
    );
}

/// Another size is grown to as asked.
#[test]
fn softtlb_sets_the_size() {
    Boot::new()
        .smp(2)
        .params("bench=none softtlb=1024")
        .run()
        .expect_success()
        .expect_serial("softtlb: QEMU's software TLB set to 1024 entries on every CPU (at boot: ");
}

/// Growing to 65536 entries reads 256 MiB of one region; 128 MiB of RAM
/// cannot hold it, and the boot fails saying so instead of probing
/// memory that is not there.
#[test]
fn a_size_the_ram_cannot_hold_is_a_clear_error() {
    Boot::new()
        .smp(2)
        .mem("128M")
        .params("bench=none softtlb=65536")
        .run()
        .expect_failure_with(
            "softtlb=65536: growing to 65536 entries reads 65536 pages of one memory region; \
             the largest has room for 16384 (a power of two): give QEMU more memory (--mem)",
        );
}
