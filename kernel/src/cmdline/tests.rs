//! Host tests of the command-line parser: every key, every error.

use super::*;

#[test]
fn empty_line_gives_defaults() {
    let c = parse("  ").unwrap();
    assert_eq!(c.bench, Bench::Threadspawn);
    assert_eq!(c.threadspawn, ThreadspawnParams::default());
    assert_eq!(c.heap, HeapSize::Auto);
    assert_eq!(c.loglevel, log::LevelFilter::Info);
    assert_eq!(c.tests, "");
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
        "bench=threadspawn workers=1,3 samples=2 sample_ms=50 ns_depth=3 strategies=both,stock lockstat=on",
    )
    .unwrap();
    let t = c.threadspawn;
    assert_eq!(t.workers.as_deref(), Some(&[1, 3][..]));
    assert_eq!((t.samples, t.sample_ms, t.ns_depth), (2, 50, 3));
    let names: Vec<&str> = t.strategies.iter().map(|p| p.name).collect();
    assert_eq!(names, ["both", "stock"]);
    assert!(t.lockstat);
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
