//! The threadspawn benchmark's smoke tests: short runs print a header,
//! progress, a summary and well-formed machine-readable rows (summary rows
//! with paired ratios and steal, Linux's comparisons, every sample
//! attempt), place threads where `placement=` says, and pass the
//! invariant check; bad parameters are rejected with a message naming the
//! key.

use std::collections::BTreeMap;

use pidlab_tests::Boot;

/// The versions a run compares unless told (pidmap-once by name only).
const STRATEGIES: [&str; 4] = ["stock", "exit-deferred", "both", "v7.0"];

/// The rows of one CSV family (`threadspawn`, `threadspawn_linux`, ...),
/// each as a column-name -> value map, checked against its header.
fn table<'a>(
    serial: &'a str,
    family: &str,
    first_cols: &[&str],
) -> Vec<BTreeMap<&'a str, &'a str>> {
    let prefix = format!("{family},");
    let header = serial
        .lines()
        .find(|l| l.starts_with(&prefix) && l.split(',').nth(1) == Some(first_cols[1]))
        .unwrap_or_else(|| panic!("a {family} header row"));
    let cols: Vec<&str> = header.split(',').collect();
    assert_eq!(&cols[..first_cols.len()], first_cols, "{header}");
    serial
        .lines()
        .filter(|l| l.starts_with(&prefix) && *l != header)
        .map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            assert_eq!(fields.len(), cols.len(), "{l}");
            cols.iter().copied().zip(fields).collect()
        })
        .collect()
}

fn num<T: std::str::FromStr>(r: &BTreeMap<&str, &str>, col: &str) -> T {
    r[col]
        .parse()
        .unwrap_or_else(|_| panic!("`{col}` is not a number: {r:?}"))
}

/// A paired ratio lies within its bounds (all in parts per 10,000).
fn check_paired(r: &BTreeMap<&str, &str>, ratio: &str, lo: &str, hi: &str) {
    let (v, l, h): (u64, u64, u64) = (num(r, ratio), num(r, lo), num(r, hi));
    assert!(l <= v && v <= h, "paired bounds out of order: {r:?}");
    assert!(l > 0, "a paired ratio of 0: {r:?}");
}

/// `noise` agrees with the interval and its coverage.
fn check_noise(r: &BTreeMap<&str, &str>, lo: &str, hi: &str) {
    let coverage: u64 = num(r, "paired_coverage_x10000");
    let (l, h): (u64, u64) = (num(r, lo), num(r, hi));
    let expected = if coverage < 9500 {
        "few"
    } else if l <= 10_000 && 10_000 <= h {
        "inside"
    } else {
        "outside"
    };
    assert_eq!(r["noise"], expected, "{r:?}");
}

fn check_rows(
    serial: &str,
    workers: &[u32],
    strategies: &[&str],
    ns_depth: u32,
    cpus: u32,
    placement: &str,
) {
    let rows = table(
        serial,
        "threadspawn",
        &[
            "threadspawn",
            "strategy",
            "workers",
            "ns_depth",
            "ops_per_sec",
            "stdev",
        ],
    );
    assert_eq!(rows.len(), workers.len() * strategies.len(), "{rows:?}");
    let samples_kept: u64 = num(&rows[0], "samples");
    for r in &rows {
        assert!(strategies.contains(&r["strategy"]), "{r:?}");
        let w: u32 = num(r, "workers");
        assert!(workers.contains(&w), "{r:?}");
        assert_eq!(r["ns_depth"], ns_depth.to_string());
        let ops: u64 = num(r, "ops_per_sec");
        assert!(ops > 0, "no ops measured: {r:?}");
        let _: u64 = num(r, "stdev");
        assert_eq!(num::<u64>(r, "samples"), samples_kept);
        assert_eq!(r["cpus"], cpus.to_string());
        assert_eq!(r["accel"], "tcg");
        assert_eq!(r["placement"], placement);
        assert!(
            ["ticket", "pv-ticket", "qspinlock", "tas"].contains(&r["lock"]),
            "{r:?}"
        );
        check_paired(
            r,
            "paired_ratio_x10000",
            "paired_lo_x10000",
            "paired_hi_x10000",
        );
        if r["strategy"] == "stock" {
            assert_eq!(r["paired_ratio_x10000"], "10000", "{r:?}");
            assert_eq!(r["noise"], "-", "{r:?}");
        } else {
            check_noise(r, "paired_lo_x10000", "paired_hi_x10000");
        }
        for col in ["steal_pct", "steal_max_pct"] {
            let steal: f64 = num(r, col);
            assert!((0.0..=100.0).contains(&steal), "{col} {steal}: {r:?}");
        }
        assert!(num::<f64>(r, "steal_pct") <= num::<f64>(r, "steal_max_pct"));
        let pidmap: f64 = num(r, "pidmap_acq_per_op");
        // Stock alloc_pid takes pidmap_lock level + 2 times, the change once
        // (IDR nodes come from the node cache, so the preload pool does not
        // run dry and nothing re-preloads); free_pid once more. The
        // workers' own spawns add a little.
        let stock = (ns_depth + 3) as f64;
        let (lo, hi) = match r["strategy"] {
            "stock" | "exit-deferred" => (stock, stock + 0.5),
            // No pidmap_lock on its fast path, nor anywhere else it runs.
            "lockless" => (0.0, 0.005),
            _ => (2.0, 2.1),
        };
        assert!(
            pidmap >= lo && pidmap < hi,
            "pidmap_lock per op {pidmap}, expected {lo} to {hi}: {r:?}"
        );
        // css_set_lock three times per thread in every version (fork,
        // post_fork, the dead task's unlink); the workers' own add a little.
        let css: f64 = num(r, "css_acq_per_op");
        assert!(
            (3.0..3.1).contains(&css),
            "css_set_lock per op {css}, expected 3.00: {r:?}"
        );
    }
    check_samples(serial, &rows);
}

/// Every attempt has a row; each (workers, strategy, round) keeps exactly
/// one attempt per half of the round, and the two kept halves together
/// (weighted by length) lie within its summary row's min and max; the
/// re-runs add up.
fn check_samples(serial: &str, summary: &[BTreeMap<&str, &str>]) {
    let rows = table(
        serial,
        "threadspawn_sample",
        &[
            "threadspawn_sample",
            "strategy",
            "workers",
            "ns_depth",
            "round",
            "attempt",
            "ops_per_sec",
            "steal_pct",
            "kept",
            "placement",
            "cpus",
            "accel",
            "position",
            "half",
            "ms",
            "line_ns",
        ],
    );
    // (workers, strategy, round) -> the kept halves' (half, ops/s, ms).
    type Halves = Vec<(u32, u64, u64)>;
    let mut kept: BTreeMap<(&str, &str, &str), Halves> = BTreeMap::new();
    let mut reruns: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for r in &rows {
        let steal: f64 = num(r, "steal_pct");
        assert!((0.0..=100.0).contains(&steal), "steal_pct {steal}: {r:?}");
        let cell = (r["workers"], r["strategy"]);
        match r["kept"] {
            "yes" => kept.entry((cell.0, cell.1, r["round"])).or_default().push((
                num(r, "half"),
                num(r, "ops_per_sec"),
                num(r, "ms"),
            )),
            "no" => *reruns.entry(cell).or_default() += 1,
            other => panic!("kept is {other}: {r:?}"),
        }
        assert!((1..=3).contains(&num::<u32>(r, "attempt")), "{r:?}");
        // Workers 0 and 1 time a line's round trip around every sample
        // with two workers or more; one worker has no partner.
        if num::<u32>(r, "workers") >= 2 {
            let ns: u64 = num(r, "line_ns");
            assert!(ns > 0, "{r:?}");
        } else {
            assert_eq!(r["line_ns"], "", "{r:?}");
        }
    }
    check_line_rows(serial, summary);
    for (k, halves) in &kept {
        let mut which: Vec<u32> = halves.iter().map(|h| h.0).collect();
        which.sort();
        assert_eq!(
            which,
            [1, 2],
            "{k:?} keeps one attempt per half: {halves:?}"
        );
        let ms: u64 = halves.iter().map(|h| h.2).sum();
        let joined = halves.iter().map(|h| h.1 * h.2).sum::<u64>() / ms;
        let s = summary
            .iter()
            .find(|s| (s["workers"], s["strategy"]) == (k.0, k.1))
            .unwrap_or_else(|| panic!("no summary row for {k:?}"));
        assert!(
            num::<u64>(s, "min") <= joined && joined <= num::<u64>(s, "max"),
            "{k:?} {halves:?} {s:?}"
        );
    }
    for s in summary {
        let cell = (s["workers"], s["strategy"]);
        let rounds = kept.keys().filter(|k| (k.0, k.1) == cell).count();
        assert_eq!(rounds as u64, num::<u64>(s, "samples"), "{s:?}");
        assert_eq!(
            reruns.get(&cell).copied().unwrap_or(0),
            num::<u64>(s, "reruns"),
            "{s:?}"
        );
    }
    let total: u64 = reruns.values().sum();
    assert!(
        serial.contains(&format!("re-run: {total} samples over max_steal")),
        "the summary's re-run count"
    );
}

/// One `threadspawn_line` row per summary row with two workers or more:
/// quantiles in order, a correlation in [-1, 1] when there are three
/// rounds or more.
fn check_line_rows(serial: &str, summary: &[BTreeMap<&str, &str>]) {
    let multi: Vec<_> = summary
        .iter()
        .filter(|s| num::<u32>(s, "workers") >= 2)
        .collect();
    if multi.is_empty() {
        assert!(
            !serial.contains("\nline transfer ("),
            "no line table under one worker"
        );
        return;
    }
    let rows = table(
        serial,
        "threadspawn_line",
        &[
            "threadspawn_line",
            "strategy",
            "workers",
            "line_ns_median",
            "line_ns_p10",
            "line_ns_p90",
            "ops_line_corr_x100",
        ],
    );
    assert_eq!(rows.len(), multi.len(), "{rows:?}");
    for s in multi {
        let r = rows
            .iter()
            .find(|r| (r["workers"], r["strategy"]) == (s["workers"], s["strategy"]))
            .unwrap_or_else(|| panic!("no line row for {s:?}"));
        let (p10, med, p90): (u64, u64, u64) = (
            num(r, "line_ns_p10"),
            num(r, "line_ns_median"),
            num(r, "line_ns_p90"),
        );
        assert!(0 < p10 && p10 <= med && med <= p90, "{r:?}");
        if num::<u32>(s, "samples") >= 3 && !r["ops_line_corr_x100"].is_empty() {
            let c: i64 = num(r, "ops_line_corr_x100");
            assert!((-100..=100).contains(&c), "{r:?}");
        }
    }
}

/// Linux's comparisons: one row per change and worker count.
fn check_linux_rows(serial: &str, workers: &[u32]) {
    check_comparison_rows(serial, workers, &["exit", "pidmap", "pidfs"]);
}

/// The comparison rows: one per worker count for each of `changes`.
fn check_comparison_rows(serial: &str, workers: &[u32], changes: &[&str]) {
    let rows = table(
        serial,
        "threadspawn_linux",
        &[
            "threadspawn_linux",
            "change",
            "workers",
            "ns_depth",
            "ratio_x10000",
            "spread_x10000",
            "noise",
        ],
    );
    assert_eq!(rows.len(), changes.len() * workers.len(), "{rows:?}");
    for w in workers {
        for &change in changes {
            let r = rows
                .iter()
                .find(|r| r["change"] == change && r["workers"] == w.to_string())
                .unwrap_or_else(|| panic!("no {change} row for {w} workers"));
            check_paired(r, "ratio_x10000", "paired_lo_x10000", "paired_hi_x10000");
            check_noise(r, "paired_lo_x10000", "paired_hi_x10000");
            let (v, lo, hi, spread): (u64, u64, u64, u64) = (
                num(r, "ratio_x10000"),
                num(r, "paired_lo_x10000"),
                num(r, "paired_hi_x10000"),
                num(r, "spread_x10000"),
            );
            assert_eq!(spread, (v - lo).max(hi - v), "{r:?}");
        }
    }
    if changes.contains(&"exit") {
        assert!(serial.contains("exit   = exit-deferred / stock: "));
        assert!(serial.contains("pidmap = both / exit-deferred: "));
        assert!(serial.contains("pidfs  = v7.0 / both: "));
    }
}

/// `ran here` of `spawn/reap cpu N`.
fn ran_here(serial: &str, cpu: u32) -> u64 {
    let prefix = format!("spawn/reap cpu {cpu}: ");
    let line = serial
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line"));
    let before = line
        .split(" ran here")
        .next()
        .and_then(|s| s.rsplit(", ").next())
        .unwrap_or_else(|| panic!("no `ran here` in {line}"));
    before.parse().unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn short_run_prints_well_formed_rows_and_passes_the_invariant_check() {
    let run = Boot::new()
        .smp(2)
        .params("bench=threadspawn samples=1 sample_ms=100 lockstat=on")
        .run();
    run.expect_success()
        .expect_serial("threadspawn: 2 cpus online, workers 1,2, strategies stock,exit-deferred,both,v7.0, 1 samples x 100 ms")
        .expect_serial("placement same, max_steal 20%")
        .expect_serial("root pid namespace: pid_max 4194304, 300 parked tasks besides init")
        .expect_serial("css_set_lock")
        .expect_serial("threadspawn: workers 2 sample 1/1 both: ")
        .expect_serial("threadspawn summary")
        .expect_serial("invariants: ok");
    check_rows(run.serial(), &[1, 2], &STRATEGIES, 0, 2, "same");
    check_linux_rows(run.serial(), &[1, 2]);
}

#[test]
fn three_namespaces_deep_stock_locks_pidmap_six_times_per_op_the_change_twice() {
    let run = Boot::new()
        .smp(2)
        .params("bench=threadspawn workers=2 samples=1 sample_ms=100 ns_depth=3")
        .run();
    run.expect_success().expect_serial("invariants: ok");
    check_rows(run.serial(), &[2], &STRATEGIES, 3, 2, "same");
}

/// The lock-free prototype beside 6.14 and 7.0, three namespaces deep:
/// no pidmap_lock per op at all, and its ratio to 7.0 reported.
#[test]
fn lockless_takes_no_pidmap_lock_and_is_compared_with_7_0() {
    let run = Boot::new()
        .smp(2)
        .params("bench=threadspawn workers=2 samples=1 sample_ms=100 ns_depth=3 strategies=stock,v7.0,lockless")
        .run();
    run.expect_success()
        .expect_serial("lockless = Linux 7.0 + a lock-free alloc_pid")
        .expect_serial("lockless = lockless / v7.0: ")
        .expect_serial("lockless: the lock-free maps' slow paths in this run: ")
        .expect_serial("invariants: ok");
    check_rows(
        run.serial(),
        &[2],
        &["stock", "v7.0", "lockless"],
        3,
        2,
        "same",
    );
    check_comparison_rows(run.serial(), &[2], &["lockless"]);
}

/// One worker on CPU 0: spread sends every thread to CPU 1. With
/// `retranslate=off`, nothing of the kernel's code is rewritten.
#[test]
fn spread_runs_the_threads_of_one_worker_on_the_other_cpu() {
    let run = Boot::new()
        .smp(2)
        .params("bench=threadspawn workers=1 samples=1 sample_ms=100 strategies=stock,both placement=spread retranslate=off")
        .run();
    run.expect_success()
        .expect_serial("retranslate off (each round")
        .expect_serial("invariants: ok");
    assert!(
        !run.serial()
            .contains("translation of the kernel's code dropped"),
        "retranslate=off dropped translations"
    );
    check_rows(run.serial(), &[1], &["stock", "both"], 0, 2, "spread");
    assert!(
        ran_here(run.serial(), 1) > 1000,
        "threads did not run on cpu 1"
    );
}

/// `placement=same` keeps every thread on its worker's CPU; six rounds
/// give a 95% paired interval (coverage 96.9%), so noise? is decided;
/// Linux's comparisons say what strategies= lacks instead of a row;
/// `max_steal=100` re-runs nothing; QEMU's translation of the kernel's
/// code is dropped before every round (the default under TCG), and its
/// software TLB, grown at boot, still has its size after the rounds.
#[test]
fn same_placement_six_rounds_and_missing_comparisons() {
    let run = Boot::new()
        .smp(2)
        .params("bench=threadspawn workers=1 samples=6 sample_ms=30 strategies=stock,both placement=same max_steal=100")
        .run();
    run.expect_success()
        .expect_serial("placement same, max_steal 100%")
        .expect_serial("interval covering 96.9%")
        .expect_serial("exit   = exit-deferred / stock: not run (strategies= lacks exit-deferred)")
        .expect_serial("pidmap = both / exit-deferred: not run (strategies= lacks exit-deferred)")
        .expect_serial("re-run: 0 samples over max_steal 100%")
        .expect_serial("retranslate on (each round")
        .expect_serial("softtlb 16384 (QEMU's software TLB on every CPU)")
        .expect_serial(
            "threadspawn: after the rounds, QEMU's software TLB still has 16384 entries on every CPU the benchmark ran on (cpus 0)",
        )
        .expect_serial("invariants: ok");
    // Before each round, every page of the kernel's text was written back
    // (QEMU drops its translations of them) and the kernel ran on.
    let pages: u64 = run
        .serial()
        .lines()
        .find_map(|l| {
            l.strip_prefix("threadspawn: workers 1: QEMU's translation of the kernel's code dropped before each of 6 rounds (")?
                .strip_suffix(" pages of text)")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no retranslate line for 6 rounds:\n{}", run.serial()));
    assert!(pages >= 16, "{pages} pages of text");
    check_rows(run.serial(), &[1], &["stock", "both"], 0, 2, "same");
    let both = table(run.serial(), "threadspawn", &["threadspawn", "strategy"])
        .into_iter()
        .find(|r| r["strategy"] == "both")
        .expect("a both row");
    assert_eq!(both["paired_coverage_x10000"], "9687");
    assert_ne!(both["noise"], "few");
    assert!(
        table(
            run.serial(),
            "threadspawn_linux",
            &["threadspawn_linux", "change"]
        )
        .is_empty()
    );
    assert_eq!(ran_here(run.serial(), 1), 0, "a thread ran on cpu 1");
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
    Boot::new()
        .params("placement=numa")
        .run()
        .expect_failure_with("bad value `numa` for `placement`");
    Boot::new()
        .params("max_steal=101")
        .run()
        .expect_failure_with("bad value `101` for `max_steal`");
}

/// The versions' order in each round, as the sample lines give it.
fn round_orders(serial: &str) -> Vec<(String, String)> {
    serial
        .lines()
        .filter(|l| l.starts_with("threadspawn: workers ") && l.contains("[position "))
        .map(|l| {
            let name = l
                .split(": ")
                .nth(1)
                .and_then(|s| s.rsplit(' ').next())
                .unwrap_or("?")
                .to_string();
            let pos = l.rsplit("[position ").next().unwrap_or("?").to_string();
            (name, pos)
        })
        .collect()
}

/// Each round runs the versions in a fresh random order, from a seed the
/// banner prints, then the same order reversed (a mirrored round: every
/// version's mean position is the same): the same seed replays it, another
/// one changes it. Every boot prints the same guest layout.
#[test]
fn the_round_order_follows_the_seed() {
    let layouts = std::cell::RefCell::new(Vec::new());
    let boot = |seed: u64| {
        let run = Boot::new()
            .smp(2)
            .params(&format!(
                "bench=threadspawn workers=1 samples=8 sample_ms=6 strategies=stock,exit-deferred,both,v7.0 max_steal=100 seed={seed}"
            ))
            .run();
        run.expect_success()
            .expect_serial(&format!("seed {seed} (rounds in random order"));
        let layout = run
            .serial()
            .lines()
            .find(|l| l.starts_with("threadspawn: layout ns 0x"))
            .unwrap_or_else(|| panic!("no layout line:\n{}", run.serial()))
            .to_string();
        layouts.borrow_mut().push(layout);
        round_orders(run.serial())
    };
    let a = boot(42);
    assert_eq!(a.len(), 8 * 8, "{a:?}");
    for (r, round) in a.chunks(8).enumerate() {
        let names: Vec<&str> = round.iter().map(|(n, _)| n.as_str()).collect();
        let mut mirrored = names[..4].to_vec();
        mirrored.reverse();
        assert_eq!(
            names[4..],
            mirrored[..],
            "round {r} is not mirrored: {round:?}"
        );
        for (i, (_, pos)) in round.iter().enumerate() {
            let half = if i < 4 { 1 } else { 2 };
            assert_eq!(
                pos,
                &format!("{} of 8, half {half} of 2]", i + 1),
                "{round:?}"
            );
        }
    }
    assert_eq!(a, boot(42), "the same seed replays the order");
    assert_ne!(a, boot(43), "another seed changes it");
    // The guest places what the ops touch first alike in every boot (the
    // seed only orders the rounds, after the layout line).
    let layouts = layouts.into_inner();
    assert!(
        layouts.iter().all(|l| *l == layouts[0]),
        "the guest's layout differs between boots: {layouts:#?}"
    );
    let firsts: std::collections::BTreeSet<&str> = a
        .iter()
        .filter(|(_, p)| p.starts_with("1 of"))
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(firsts.len() > 1, "one version always ran first: {a:?}");
}

/// A row whose busy vCPUs outnumber the host's cores (here 2 workers on a
/// host said to have 1) is printed with `host-bound` and no verdict, and
/// stays out of the closing table of Linux's figures.
#[test]
fn a_host_bound_row_never_gets_a_verdict() {
    let run = Boot::new()
        .smp(2)
        .params("bench=threadspawn workers=1,2 samples=6 sample_ms=20 strategies=stock,exit-deferred,both max_steal=100 host_cpus=1")
        .run();
    run.expect_success()
        .expect_serial("threadspawn vs Linux")
        .expect_serial("2 workers: host-bound (not compared)");
    let rows = table(
        run.serial(),
        "threadspawn",
        &["threadspawn", "strategy", "workers"],
    );
    for r in &rows {
        let bound = r["workers"] == "2" && r["strategy"] != "stock";
        if bound {
            assert_eq!(r["noise"], "host-bound", "{r:?}");
        } else {
            assert_ne!(r["noise"], "host-bound", "{r:?}");
        }
    }
    let linux = table(
        run.serial(),
        "threadspawn_linux",
        &["threadspawn_linux", "change", "workers"],
    );
    for r in &linux {
        assert_eq!(r["noise"] == "host-bound", r["workers"] == "2", "{r:?}");
        assert!(
            r["workers"] != "2" || !["inside", "outside"].contains(&r["noise"]),
            "{r:?}"
        );
    }
    let vs = run
        .serial()
        .lines()
        .filter(|l| {
            l.starts_with("threadspawn_vs_linux,") && !l.starts_with("threadspawn_vs_linux,change")
        })
        .collect::<Vec<_>>();
    assert!(!vs.is_empty());
    assert!(
        vs.iter().all(|l| l.split(',').nth(4) == Some("1")),
        "{vs:?}"
    );
}
