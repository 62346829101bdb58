//! Host tests of the command-line parser: every key, every error, both
//! ends of every range, and property tests that no input makes it panic.

use proptest::prelude::*;

use super::*;
use crate::bench::threadspawn::MAX_WORKER_COUNTS;
use crate::klib::fuzz::arbitrary_text;
use crate::strategy::PAIRS;

#[test]
fn empty_line_gives_defaults() {
    let c = parse("  ").unwrap();
    assert_eq!(c.bench, Bench::Threadspawn);
    assert_eq!(c.threadspawn, ThreadspawnParams::default());
    assert_eq!(c.heap, HeapSize::Auto);
    assert_eq!(c.loglevel, log::LevelFilter::Info);
    assert_eq!(c.tests, "");
    assert_eq!(c.lock_wait_ms, 2000);
    assert!(c.nohz, "idle CPUs stop their tick unless nohz=off");
    assert!(!parse("nohz=off").unwrap().nohz);
}

#[test]
fn the_software_tlb_is_grown_under_tcg_unless_told() {
    assert_eq!(parse("").unwrap().softtlb(), SOFTTLB_DEFAULT);
    assert_eq!(parse("accel=tcg").unwrap().softtlb(), SOFTTLB_DEFAULT);
    assert_eq!(parse("accel=kvm").unwrap().softtlb(), 0, "KVM has none");
    assert_eq!(parse("softtlb=off").unwrap().softtlb(), 0);
    assert_eq!(parse("softtlb=1024").unwrap().softtlb(), 1024);
    assert_eq!(parse("accel=kvm softtlb=1024").unwrap().softtlb(), 1024);
}

#[test]
fn lock_choice_and_host_cores() {
    let c = parse("").unwrap();
    assert_eq!((c.lock, c.host_cpus), (LockChoice::Auto, None));
    for algo in LockAlgo::ALL {
        let line = std::format!("lock={}", algo.name());
        assert_eq!(parse(&line).unwrap().lock, LockChoice::Force(algo));
    }
    assert_eq!(parse("lock=auto").unwrap().lock, LockChoice::Auto);
    for bad in ["lock=mcs", "lock=", "host_cpus=two"] {
        let err = parse(bad).unwrap_err();
        assert!(
            matches!(err, CmdlineError::BadValue { .. }),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn parses_every_key() {
    assert_eq!(parse("bench=locks").unwrap().bench, Bench::Locks);
    assert_eq!(Bench::Locks.name(), "locks");
    let c = parse("bench=none heap=64M loglevel=debug test=a,b accel=tcg hz=250").unwrap();
    assert_eq!(c.timer_hz, 250);
    assert_eq!(c.bench, Bench::None);
    assert_eq!(c.heap, HeapSize::Bytes(64 << 20));
    assert_eq!(c.loglevel, log::LevelFilter::Debug);
    assert_eq!(c.tests, "a,b");
    assert_eq!(c.accel, Some(Accel::Tcg));
}

#[test]
fn rejects_unknown_key_naming_it_and_the_known_ones() {
    let err = parse("bench=none frobnicate=1").unwrap_err();
    assert_eq!(err, CmdlineError::UnknownKey("frobnicate"));
    let text = err.to_string();
    assert!(
        text.contains("frobnicate") && text.contains("bench"),
        "{text}"
    );
}

#[test]
fn rejects_bad_values_naming_what_is_accepted() {
    for line in [
        "bench=bogus",
        "heap=12Q",
        "heap=100",
        "heap=",
        "loglevel=loud",
        "test=",
        "test=a,,b",
        "accel=hvf",
        "hz=5",
        "hz=fast",
        "workers=0",
        "workers=1,,2",
        "workers=65",
        "workers=1,2,3,4,5,6,7,8,9",
        "samples=0",
        "sample_ms=x",
        "ns_depth=32",
        "strategies=stock,stock",
        "strategies=fast",
        "strategies=",
        "lockstat=yes",
    ] {
        let err = parse(line).unwrap_err();
        assert!(
            matches!(err, CmdlineError::BadValue { .. }),
            "{line}: {err:?}"
        );
        assert!(err.to_string().contains("accepts"), "{line}");
    }
}

#[test]
fn parses_threadspawn_keys() {
    let c = parse(
        "bench=threadspawn workers=1,3 samples=2 sample_ms=50 ns_depth=3 strategies=both,stock lockstat=on placement=same max_steal=35",
    )
    .unwrap();
    let t = c.threadspawn;
    assert_eq!(t.workers.as_deref(), Some(&[1, 3][..]));
    assert_eq!((t.samples, t.sample_ms, t.ns_depth), (2, 50, 3));
    let names: Vec<&str> = t.strategies.iter().map(|p| p.name).collect();
    assert_eq!(names, ["both", "stock"]);
    assert!(t.lockstat);
    assert_eq!(t.placement, Placement::Same);
    assert_eq!(t.max_steal, 35);
    assert_eq!(ThreadspawnParams::default().placement, Placement::Same);
}

#[test]
fn benches_get_a_booted_systems_root_and_pidctl_a_fresh_one() {
    let c = parse("bench=threadspawn").unwrap();
    assert_eq!((c.root_pids(), c.pid_max()), (300, 4_194_304));
    let c = parse("bench=script").unwrap();
    assert_eq!((c.root_pids(), c.pid_max()), (0, 32_768));
    let c = parse("bench=script root_pids=5 pid_max=1000").unwrap();
    assert_eq!((c.root_pids(), c.pid_max()), (5, 1000));
}

#[test]
fn parses_pidalloc_live_counts() {
    let c = parse("bench=pidalloc live=0,1000,100000").unwrap();
    assert_eq!(c.pidalloc_live.as_deref(), Some(&[0, 1000, 100_000][..]));
    assert_eq!(parse("").unwrap().pidalloc_live, None);
    for bad in ["", "1,", "1k", "1,2,3,4,5,6,7,8,9"] {
        bad_value_for(&format!("live={bad}"), "live");
    }
}

#[test]
fn rejects_words_without_equals_and_duplicates() {
    assert_eq!(
        parse("bench").unwrap_err(),
        CmdlineError::NotKeyValue("bench")
    );
    assert_eq!(
        parse("heap=1M heap=2M").unwrap_err(),
        CmdlineError::Duplicate("heap")
    );
}

#[test]
fn sizes() {
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("64K"), Some(64 << 10));
    assert_eq!(parse_size("3m"), Some(3 << 20));
    assert_eq!(parse_size("2G"), Some(2 << 30));
    assert_eq!(parse_size("G"), None);
    assert_eq!(parse_size("-1M"), None);
    assert_eq!(parse_size("99999999999999999999G"), None);
    assert_eq!(parse_size("18014398509481984G"), None);
}

// ---- Range edges of every key ----

/// A numeric key's accepted range and where the parsed value lands.
struct Range {
    key: &'static str,
    lo: u64,
    hi: u64,
    value: fn(&Cmdline<'_>) -> u64,
}

/// Every numeric key with the range it documents, written out here rather
/// than read from the parser, so a parser that drifts from it fails.
const RANGES: &[Range] = &[
    Range {
        key: "hz",
        lo: 10,
        hi: 10_000,
        value: |c| c.timer_hz.into(),
    },
    Range {
        key: "ops",
        lo: 1,
        hi: 1_000_000_000_000,
        value: |c| c.soak.ops,
    },
    // 0 (off) is accepted too: see `lockup_bounds_can_be_off`.
    Range {
        key: "softlockup_ms",
        lo: 1000,
        hi: 600_000,
        value: |c| c.softlockup_ms.into(),
    },
    Range {
        key: "hardlockup_ms",
        lo: 1000,
        hi: 600_000,
        value: |c| c.hardlockup_ms.into(),
    },
    Range {
        key: "samples",
        lo: 1,
        hi: 1000,
        value: |c| c.threadspawn.samples.into(),
    },
    Range {
        key: "sample_ms",
        lo: 1,
        hi: 60_000,
        value: |c| c.threadspawn.sample_ms.into(),
    },
    Range {
        key: "ns_depth",
        lo: 0,
        hi: 31,
        value: |c| c.threadspawn.ns_depth.into(),
    },
    Range {
        key: "host_cpus",
        lo: 1,
        hi: 4096,
        value: |c| c.host_cpus.map_or(0, u64::from),
    },
    Range {
        key: "lockwait_ms",
        lo: 10,
        hi: 600_000,
        value: |c| c.lock_wait_ms,
    },
    Range {
        key: "max_steal",
        lo: 0,
        hi: 100,
        value: |c| c.threadspawn.max_steal.into(),
    },
    Range {
        key: "root_pids",
        lo: 0,
        hi: 100_000,
        value: |c| c.root_pids.map_or(u64::MAX, u64::from),
    },
    Range {
        key: "pid_max",
        lo: 301,
        hi: 4_194_304,
        value: |c| c.pid_max.map_or(u64::MAX, u64::from),
    },
    Range {
        key: "profile_hz",
        lo: 100,
        hi: 20_000,
        value: |c| c.profile.hz.into(),
    },
    // Each live-pid count in the list.
    Range {
        key: "live",
        lo: 0,
        hi: 4_000_000,
        value: |c| c.pidalloc_live.as_ref().map_or(u64::MAX, |l| l[0].into()),
    },
    // Each worker count in the list.
    Range {
        key: "workers",
        lo: 1,
        hi: 64,
        value: |c| c.threadspawn.workers.as_ref().map_or(0, |w| w[0].into()),
    },
];

/// Keys whose values are words or lists: values each accepts and rejects.
const WORDS: &[(&str, &[&str], &[&str])] = &[
    (
        "bench",
        &[
            "none",
            "threadspawn",
            "locks",
            "pidalloc",
            "script",
            "shell",
            "soak",
        ],
        &["", "None", "bogus"],
    ),
    (
        "loglevel",
        &["off", "error", "warn", "info", "debug", "trace"],
        &["", "Info", "loud"],
    ),
    ("test", &["a", "a,b"], &["", ",", "a,", "a,,b"]),
    ("accel", &["tcg", "tcg-single", "kvm"], &["", "TCG", "hvf"]),
    (
        "strategies",
        &[
            "stock",
            "both,stock",
            "stock,pidmap-once,exit-deferred,both",
        ],
        &["", "stock,", "stock,stock", "fast"],
    ),
    ("lockstat", &["on", "off"], &["", "yes", "ON"]),
    ("retranslate", &["on", "off"], &["", "yes", "1"]),
    ("profile", &["on", "off"], &["", "yes", "ON"]),
    ("nohz", &["on", "off"], &["", "1", "Off"]),
    (
        "softtlb",
        &["off", "64", "4096", "65536"],
        &["", "on", "0", "32", "100", "131072", "4k"],
    ),
    (
        "lock",
        &["auto", "ticket", "pv-ticket", "qspinlock", "tas"],
        &["", "mcs", "Ticket"],
    ),
    // The whole u64 range.
    (
        "seed",
        &["0", "18446744073709551615"],
        &["", "-1", "18446744073709551616", "x"],
    ),
    (
        "faults",
        &["off", "1/1", "1/1000", "1/1000000"],
        &["", "on", "1/0", "1/1000001", "2/3", "1000", "1/"],
    ),
    ("placement", &["spread", "same"], &["", "Spread", "other"]),
    (
        "strategy",
        &["stock", "pidmap-once", "exit-deferred", "both"],
        &["", "Stock", "stock,both", "single-lock"],
    ),
];

/// `heap` is a size: at least 1 MiB, at most what a `u64` holds.
const HEAP: &str = "heap";

fn bad_value_for<'a>(line: &'a str, key: &str) -> CmdlineError<'a> {
    let err = parse(line).expect_err(line);
    assert!(
        matches!(&err, CmdlineError::BadValue { key: k, .. } if *k == key),
        "{line}: {err:?}"
    );
    assert!(
        err.to_string().contains(&format!("`{key}`")),
        "{line}: {err}"
    );
    err
}

#[test]
fn every_key_has_its_edges_tested() {
    let mut tested: Vec<&str> = RANGES.iter().map(|r| r.key).collect();
    tested.extend(WORDS.iter().map(|(k, _, _)| *k));
    tested.push(HEAP);
    tested.sort_unstable();
    let mut keys: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    keys.sort_unstable();
    assert_eq!(tested, keys, "a key in KEYS without a range-edge test here");
}

#[test]
fn numeric_keys_accept_both_ends_and_reject_one_past_each() {
    for r in RANGES {
        for n in [r.lo, r.hi] {
            let line = format!("{}={n}", r.key);
            let c = parse(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!((r.value)(&c), n, "{line}");
        }
        let below = r.lo.checked_sub(1).map_or("-1".into(), |n| n.to_string());
        bad_value_for(&format!("{}={below}", r.key), r.key);
        bad_value_for(&format!("{}={}", r.key, r.hi + 1), r.key);
        let accepts = KEYS.iter().find(|(k, _)| *k == r.key).unwrap().1;
        assert!(
            accepts.contains(&format!("{} to {}", r.lo, r.hi)),
            "{}: the message says {accepts:?}",
            r.key
        );
    }
}

#[test]
fn soak_keys() {
    let d = parse("bench=soak").unwrap();
    assert_eq!(d.bench, Bench::Soak);
    assert_eq!(d.soak, SoakParams::default());
    assert_eq!(d.soak.faults, Some(1000), "faults=1/1000 by default");
    assert_eq!(d.soak.ops, 10_000_000);
    let c = parse("ops=2000000 seed=18446744073709551615 faults=off").unwrap();
    assert_eq!(
        c.soak,
        SoakParams {
            ops: 2_000_000,
            seed: u64::MAX,
            faults: None
        }
    );
    assert_eq!(parse("faults=1/7").unwrap().soak.faults, Some(7));
}

#[test]
fn lockup_bounds_can_be_off() {
    let c = parse("softlockup_ms=0 hardlockup_ms=0").unwrap();
    assert_eq!((c.softlockup_ms, c.hardlockup_ms), (0, 0));
    let d = parse("").unwrap();
    assert_eq!(
        (d.softlockup_ms, d.hardlockup_ms),
        (DEFAULT_SOFTLOCKUP_MS, DEFAULT_HARDLOCKUP_MS)
    );
    bad_value_for("softlockup_ms=1", "softlockup_ms");
    bad_value_for("hardlockup_ms=off", "hardlockup_ms");
}

#[test]
fn list_keys_accept_their_longest_list_and_reject_one_more() {
    let eight = ["1"; MAX_WORKER_COUNTS].join(",");
    let line = format!("workers={eight}");
    let c = parse(&line).unwrap();
    assert_eq!(c.threadspawn.workers.unwrap().len(), MAX_WORKER_COUNTS);
    bad_value_for(&format!("workers={eight},1"), "workers");
    bad_value_for("workers=1,65", "workers");
    bad_value_for("workers=0,1", "workers");

    let all: Vec<&str> = PAIRS.iter().map(|p| p.name).collect();
    let line = format!("strategies={}", all.join(","));
    let c = parse(&line).unwrap();
    assert_eq!(c.threadspawn.strategies.len(), PAIRS.len());
    let defaults: Vec<&str> = ThreadspawnParams::default()
        .strategies
        .iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(defaults, ["stock", "exit-deferred", "both", "v7.0"]);
    bad_value_for(&format!("strategies={},stock", all.join(",")), "strategies");
}

#[test]
fn word_keys_accept_their_words_only() {
    for (key, good, bad) in WORDS {
        for v in *good {
            let line = format!("{key}={v}");
            parse(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        for v in *bad {
            bad_value_for(&format!("{key}={v}"), key);
        }
    }
}

#[test]
fn heap_accepts_one_mib_up_to_the_largest_u64() {
    let mib = 1u64 << 20;
    for (text, bytes) in [
        ("1M", mib),
        ("1048576", mib),
        ("18446744073709551615", u64::MAX),
        ("17179869183G", u64::MAX - (1 << 30) + 1),
    ] {
        let line = format!("heap={text}");
        assert_eq!(parse(&line).unwrap().heap, HeapSize::Bytes(bytes), "{line}");
    }
    assert_eq!(parse("heap=auto").unwrap().heap, HeapSize::Auto);
    for text in [
        "1048575",
        "1023K",
        "0",
        "18446744073709551616",
        "17179869184G",
        "",
    ] {
        bad_value_for(&format!("heap={text}"), HEAP);
    }
}

// ---- Property tests: no input makes the parser panic ----

/// What a result says about the line it came from: a success keeps the
/// line, and an error quotes a piece of it.
fn check_line(line: &str) -> Result<(), TestCaseError> {
    match parse(line) {
        Ok(c) => prop_assert_eq!(c.raw, line),
        Err(e) => {
            let text = e.to_string();
            match e {
                CmdlineError::NotKeyValue(w)
                | CmdlineError::UnknownKey(w)
                | CmdlineError::Duplicate(w) => {
                    prop_assert!(line.contains(w) && text.contains(w), "{}", text);
                }
                CmdlineError::BadValue { key, value, .. } => {
                    let word = format!("{key}={value}");
                    prop_assert!(line.contains(&word), "{}", text);
                }
            }
        }
    }
    Ok(())
}

/// A value near what some key accepts: edges, lists, known words, junk.
fn value() -> impl Strategy<Value = String> {
    let words = vec![
        "auto",
        "none",
        "threadspawn",
        "script",
        "on",
        "off",
        "info",
        "tcg",
        "tcg-single",
        "kvm",
        "stock",
        "both",
        "pidmap-once",
        "exit-deferred",
        "1M",
        "64K",
        "2G",
        "",
    ];
    prop_oneof![
        prop::sample::select(words).prop_map(String::from),
        prop::sample::select(&[0i64, 1, 9, 10, 31, 32, 64, 65, 1000, 1001, 60_000, 60_001][..])
            .prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!("{n}G")),
        proptest::collection::vec(0u32..80, 0..11)
            .prop_map(|v| { v.iter().map(u32::to_string).collect::<Vec<_>>().join(",") }),
        "[a-z0-9,=.-]{0,12}",
        "\\PC{0,6}",
    ]
}

/// Values near what `key` accepts: both ends of its range and one past
/// each, or its accepted and rejected words (from the tables above).
fn value_for(key: &'static str) -> BoxedStrategy<String> {
    let near: Vec<String> = if let Some(r) = RANGES.iter().find(|r| r.key == key) {
        let past = r.lo.checked_sub(1).map_or("-1".into(), |n| n.to_string());
        let inside = (r.lo..=r.hi).prop_map(|n| n.to_string());
        let edges = vec![
            past,
            r.lo.to_string(),
            r.hi.to_string(),
            (r.hi + 1).to_string(),
        ];
        return prop_oneof![
            2 => prop::sample::select(edges),
            2 => inside.clone(),
            1 => proptest::collection::vec(inside, 1..10).prop_map(|v| v.join(",")),
            1 => value(),
        ]
        .boxed();
    } else if let Some((_, good, bad)) = WORDS.iter().find(|(k, _, _)| *k == key) {
        good.iter()
            .chain(bad.iter())
            .map(|w| w.to_string())
            .collect()
    } else {
        [
            "auto",
            "1M",
            "1023K",
            "1048576",
            "64m",
            "18446744073709551615",
            "17179869184G",
        ]
        .map(String::from)
        .to_vec()
    };
    prop_oneof![3 => prop::sample::select(near), 1 => value()].boxed()
}

/// One word of a near-valid line: mostly a known key with a value near
/// what it accepts.
fn word() -> impl Strategy<Value = String> {
    let keys: Vec<&'static str> = KEYS.iter().map(|(k, _)| *k).collect();
    prop_oneof![
        6 => prop::sample::select(keys)
            .prop_flat_map(|k| value_for(k).prop_map(move |v| format!("{k}={v}"))),
        1 => ("[a-z_]{0,10}", value()).prop_map(|(k, v)| format!("{k}={v}")),
        1 => "[a-z_=]{0,10}",
    ]
}

#[test]
fn near_valid_lines_reach_every_key_and_every_error() {
    use proptest::strategy::ValueTree;

    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let words = word();
    let mut parsed = std::collections::BTreeSet::new();
    let mut errors = std::collections::BTreeSet::new();
    for _ in 0..3000 {
        let pair = [(); 2].map(|()| words.new_tree(&mut runner).unwrap().current());
        if let Ok(c) = parse(&pair[0]) {
            parsed.extend(c.raw.split_once('=').map(|(k, _)| k.to_string()));
        }
        if let Err(e) = parse(&pair.join(" ")) {
            errors.insert(match e {
                CmdlineError::NotKeyValue(_) => "not key=value",
                CmdlineError::UnknownKey(_) => "unknown key",
                CmdlineError::BadValue { .. } => "bad value",
                CmdlineError::Duplicate(_) => "duplicate",
            });
        }
    }
    let keys: std::collections::BTreeSet<String> =
        KEYS.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(parsed, keys);
    assert_eq!(errors.len(), 4, "{errors:?}");
}

/// A near-valid line: words joined by assorted whitespace.
fn near_valid_line() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(word(), 0..8),
        prop::sample::select(&[" ", "  ", "\t", "\n", " \r\n"][..]),
    )
        .prop_map(|(words, sep)| words.join(sep))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Any input, and near-valid lines that reach every key's checks.
    #[test]
    fn parse_never_panics(line in prop_oneof![arbitrary_text(), near_valid_line()]) {
        check_line(&line)?;
    }
}
