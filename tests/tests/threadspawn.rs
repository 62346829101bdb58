//! The threadspawn benchmark's smoke test: a short run (one sample per
//! configuration) prints a header, progress, a summary and well-formed
//! machine-readable rows, then passes the invariant check; bad parameters
//! are rejected with a message naming the key.

use std::time::Duration;

use pidlab_tests::Boot;

const STRATEGIES: [&str; 4] = ["stock", "pidmap-once", "exit-deferred", "both"];

fn check_rows(serial: &str, workers: &[u32], ns_depth: u32, cpus: u32) {
    let header = serial
        .lines()
        .find(|l| l.starts_with("threadspawn,strategy,"))
        .expect("a header row");
    let cols: Vec<&str> = header.split(',').collect();
    assert_eq!(
        &cols[..6],
        &[
            "threadspawn",
            "strategy",
            "workers",
            "ns_depth",
            "ops_per_sec",
            "stdev"
        ]
    );
    let col = |name: &str| cols.iter().position(|c| *c == name).expect(name);
    let rows: Vec<Vec<&str>> = serial
        .lines()
        .filter(|l| l.starts_with("threadspawn,") && !l.starts_with("threadspawn,strategy,"))
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), workers.len() * STRATEGIES.len(), "{rows:?}");
    for r in &rows {
        assert_eq!(r.len(), cols.len(), "{r:?}");
        assert!(STRATEGIES.contains(&r[1]), "{r:?}");
        let w: u32 = r[col("workers")].parse().expect("workers");
        assert!(workers.contains(&w), "{r:?}");
        assert_eq!(r[col("ns_depth")], ns_depth.to_string());
        let ops: u64 = r[col("ops_per_sec")].parse().expect("ops_per_sec");
        assert!(ops > 0, "no ops measured: {r:?}");
        let _: u64 = r[col("stdev")].parse().expect("stdev");
        assert_eq!(r[col("samples")], "1");
        assert_eq!(r[col("cpus")], cpus.to_string());
        assert_eq!(r[col("accel")], "tcg");
        assert!(
            ["ticket", "pv-ticket", "qspinlock", "tas"].contains(&r[col("lock")]),
            "{r:?}"
        );
        let pidmap: f64 = r[col("pidmap_acq_per_op")].parse().expect("pidmap/op");
        // Stock alloc_pid takes pidmap_lock level + 2 times, the change once
        // (IDR nodes come from the node cache, so the preload pool does not
        // run dry and nothing re-preloads); free_pid once more. The
        // workers' own spawns add a little.
        let stock = (ns_depth + 3) as f64;
        let (lo, hi) = match r[1] {
            "stock" | "exit-deferred" => (stock, stock + 0.5),
            _ => (2.0, 2.1),
        };
        assert!(
            pidmap >= lo && pidmap < hi,
            "pidmap_lock per op {pidmap}, expected {lo} to {hi}: {r:?}"
        );
    }
}

#[test]
fn short_run_prints_well_formed_rows_and_passes_the_invariant_check() {
    let run = Boot::new()
        .smp(2)
        .timeout(Duration::from_secs(120))
        .params("bench=threadspawn samples=1 sample_ms=100 lockstat=on")
        .run();
    run.expect_success()
        .expect_serial("threadspawn: 2 cpus online, workers 1,2, strategies stock,pidmap-once,exit-deferred,both, 1 samples x 100 ms")
        .expect_serial("threadspawn: workers 2 sample 1/1 both: ")
        .expect_serial("threadspawn summary")
        .expect_serial("invariants: ok");
    check_rows(run.serial(), &[1, 2], 0, 2);
}

#[test]
fn three_namespaces_deep_stock_locks_pidmap_six_times_per_op_the_change_twice() {
    let run = Boot::new()
        .smp(2)
        .timeout(Duration::from_secs(120))
        .params("bench=threadspawn workers=2 samples=1 sample_ms=100 ns_depth=3")
        .run();
    run.expect_success().expect_serial("invariants: ok");
    check_rows(run.serial(), &[2], 3, 2);
}

#[test]
fn more_workers_than_cpus_is_a_clear_error() {
    Boot::new()
        .smp(2)
        .params("bench=threadspawn workers=4")
        .run()
        .expect_failure_with("threadspawn: workers=4 needs 4 CPUs, 2 online");
}

#[test]
fn bad_values_name_the_key() {
    Boot::new()
        .params("strategies=stock,fast")
        .run()
        .expect_failure_with("bad value `stock,fast` for `strategies`");
}
