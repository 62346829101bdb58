//! The sampling profiler (`profile=on`): NMIs from the HPET sample every
//! CPU where its code runs, interrupts off or not; the folded rows add up
//! to the samples taken; per-lock rows name each lock class.

use std::collections::BTreeMap;

use pidlab_tests::Boot;

/// `profile,version,workers,stack,count` rows: (version, workers) -> sum.
fn folded_sums(serial: &str) -> BTreeMap<(String, u32), u64> {
    let mut sums = BTreeMap::new();
    let mut in_rows = false;
    for line in serial.lines() {
        if line == "profile,version,workers,stack,count" {
            in_rows = true;
            continue;
        }
        if !in_rows || !line.starts_with("profile,") {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 5, "{line}");
        let workers: u32 = f[2].parse().expect("workers");
        let count: u64 = f[4].parse().expect("count");
        assert!(count > 0, "{line}");
        let frames: Vec<&str> = f[3].split(';').collect();
        assert!(!frames.is_empty(), "{line}");
        for fr in &frames {
            assert!(
                fr.starts_with("0x") || ["[truncated]", "[dropped]"].contains(fr),
                "frame {fr:?} in {line}"
            );
        }
        *sums.entry((f[1].to_string(), workers)).or_default() += count;
    }
    sums
}

/// `profile_total` rows: (version, workers) -> (samples, ops, cpu_cycles).
fn totals(serial: &str) -> BTreeMap<(String, u32), (u64, u64, u64)> {
    serial
        .lines()
        .filter(|l| l.starts_with("profile_total,") && !l.starts_with("profile_total,version"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 6, "{l}");
            let n = |i: usize| f[i].parse::<u64>().expect("a number");
            ((f[1].to_string(), n(2) as u32), (n(3), n(4), n(5)))
        })
        .collect()
}

/// The closing line's samples taken.
fn taken(serial: &str) -> u64 {
    let line = serial
        .lines()
        .find(|l| l.starts_with("profile: ") && l.contains("samples taken"))
        .expect("the closing profile line");
    line["profile: ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("samples taken")
}

#[test]
fn samples_land_in_the_function_every_cpu_spins_in() {
    let run = Boot::new().smp(2).params("test=profile profile=on").run();
    run.expect_success()
        .expect_serial("profile: on, 4000 Hz per CPU, NMI from HPET timer")
        .expect_serial("selftest profile: ok");
    for cpu in 0..2 {
        let line = run.line(&format!("selftest profile: cpu {cpu}: "));
        let pct: u64 = line
            .rsplit('(')
            .next()
            .and_then(|p| p.strip_suffix("%)"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no percentage in {line}"));
        assert!(pct >= 90, "{line}");
    }
    let sums = folded_sums(run.serial());
    let all: u64 = sums.values().sum();
    assert_eq!(all, taken(run.serial()), "rows add up to the samples taken");
    assert!(
        sums.contains_key(&("selftest-profile".into(), 2)),
        "{sums:?}"
    );
}

#[test]
fn threadspawn_profile_rows_and_lock_classes_add_up() {
    let run = Boot::new()
        .smp(2)
        .params(
            "bench=threadspawn workers=2 samples=1 sample_ms=100 placement=same strategies=stock,both lockstat=on profile=on profile_hz=1000",
        )
        .run();
    run.expect_success()
        .expect_serial("profile: on, 1000 Hz per CPU");
    let sums = folded_sums(run.serial());
    let tot = totals(run.serial());
    for v in ["stock", "both"] {
        let key = (v.to_string(), 2);
        let (samples, ops, cycles) = tot[&key];
        assert_eq!(sums.get(&key).copied().unwrap_or(0), samples, "{v}");
        assert!(samples > 0 && ops > 0 && cycles > 0, "{v}: {:?}", tot[&key]);
    }
    assert_eq!(sums.values().sum::<u64>(), taken(run.serial()));
    // Each lock class on its own row, for each version.
    let header =
        "threadspawn_lock,version,workers,lock,acq_per_op,contended_x10000,wait_cycles,hold_cycles";
    run.expect_serial(header);
    let rows: Vec<Vec<&str>> = run
        .serial()
        .lines()
        .filter(|l| l.starts_with("threadspawn_lock,") && *l != header)
        .map(|l| l.split(',').collect())
        .collect();
    // The workers' own spawn and reap add a little to the per-op counts.
    for (v, pidmap) in [("stock", 3.0), ("both", 2.0)] {
        for lock in ["pidmap_lock", "tasklist_lock", "input_pool.lock", "siglock"] {
            let r = rows
                .iter()
                .find(|r| r[1] == v && r[3] == lock)
                .unwrap_or_else(|| panic!("no {lock} row for {v}"));
            assert_eq!(r.len(), 8, "{r:?}");
            let share: u64 = r[5].parse().expect("contended_x10000");
            assert!(share <= 10_000, "{r:?}");
            if lock == "pidmap_lock" {
                let per_op: f64 = r[4].parse().expect("acq_per_op");
                assert!((pidmap..pidmap + 0.1).contains(&per_op), "{r:?}");
            }
        }
    }
}

#[test]
fn a_bad_profile_rate_is_refused() {
    Boot::new()
        .params("profile_hz=50")
        .run()
        .expect_failure_with("bad value `50` for `profile_hz`");
}
