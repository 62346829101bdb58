//! The pid subsystem on real CPUs: the SMP soak and the pidalloc benchmark.

use std::time::Duration;

use pidlab_tests::Boot;

/// 8 CPUs, 1,000,000 alloc/free operations in all, every kernel version,
/// namespace depth 0 and 3: live pids unique everywhere, every IDR empty
/// and pid_allocated back afterwards, preload pools within bound.
/// Single-threaded TCG: with 8 vCPU threads on fewer host cores, a FIFO
/// lock's hand-off waits for the host scheduler.
#[test]
fn soak_on_8_cpus_one_million_ops() {
    let run = Boot::new().smp(8).tcg_single().params("test=pidsoak").run();
    run.expect_success()
        .expect_serial("invariants: ok")
        .expect_serial("selftest pidsoak: ok");
    let line = run.line("selftest pidsoak: pid_soak: ");
    assert!(line.contains("1000000 ops on 8 CPUs"), "{line}");
    assert!(line.contains("pools <= "), "{line}");
    assert!(line.contains("depth 3"), "{line}");
}

/// The lock-free strategy's soak: 8 CPUs, 1,000,000 operations in a
/// lock-free tree, random set_tids, every 7th node and pid allocation of
/// each CPU failing; ends with the maps back and `invariants: ok`.
#[test]
fn lockless_soak_on_8_cpus_with_set_tid_and_node_failures() {
    let run = Boot::new().smp(8).tcg_single().params("test=lfsoak").run();
    run.expect_success()
        .expect_serial("invariants: ok")
        .expect_serial("selftest lfsoak: ok");
    let line = run.line("selftest lfsoak: pid_soak: ");
    assert!(line.contains("1000000 ops on 8 CPUs"), "{line}");
    assert!(
        line.contains("(stock 0, pidmap-once 0, lockless "),
        "{line}"
    );
    let field = |after: &str| -> u64 {
        let rest = &line[line
            .find(after)
            .unwrap_or_else(|| panic!("{after}: {line}"))
            + after.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(field("lockless ") > 100_000, "{line}");
    assert!(field("frees, ") > 1000, "ENOMEMs ridden out: {line}");
    assert!(field("), ") > 10_000, "set_tids asked: {line}");
    assert!(field("with set_tid (") > 0, "some found taken: {line}");
}

/// The benchmark at 0, 1k and 100k live pids (`live=`: the default adds
/// 1M, minutes of heap work that say nothing more about the rows), every
/// kernel version, rows well formed, stock alloc_pid taking 2 locks per
/// alloc at level 0 and the change 1.
#[test]
fn pidalloc_benchmark_prints_rows_for_every_size_and_strategy() {
    let run = Boot::new()
        .smp(1)
        // 20 to 40 s here; 10x that for a slow host.
        .timeout(Duration::from_secs(600))
        .params("bench=pidalloc live=0,1000,100000")
        .run();
    run.expect_success();
    let s = run.serial();
    let header = s
        .lines()
        .find(|l| l.starts_with("pidalloc,strategy,"))
        .expect("header");
    assert!(header.starts_with("pidalloc,strategy,live_pids,ns_per_op,"));
    let rows: Vec<Vec<&str>> = s
        .lines()
        .filter(|l| l.starts_with("pidalloc,") && !l.starts_with("pidalloc,strategy,"))
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 12, "{rows:?}");
    for live in ["0", "1000", "100000"] {
        for (strategy, locks) in [
            ("stock", "2.00"),
            ("exit-deferred", "2.00"),
            ("both", "1.00"),
            ("v7.0", "1.00"),
        ] {
            let r = rows
                .iter()
                .find(|r| r[1] == strategy && r[2] == live)
                .unwrap_or_else(|| panic!("no row for {strategy} at {live}"));
            let ns: f64 = r[3].parse().expect("ns_per_op");
            assert!(ns > 0.0, "{r:?}");
            assert_eq!(r[6], locks, "{r:?}");
        }
    }
    assert!(s.contains("pidalloc: stock cost at 100000 live pids is "));
}
