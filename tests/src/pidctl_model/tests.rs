//! The model against hand-written answers: the pidctl cases the kernel
//! runs in tests/pidctl.rs, and a wrap, exhaustion and reparenting.

use super::*;
use crate::pidctl_cases::{
    NAMESPACES, NOHANG, ORPHANS_JOIN_THE_END, PID_MAX_PER_LEVEL, REAPER_DEATH,
    REAPER_IN_OWN_NAMESPACE, SET_TID_RULES, WAIT_ANY_ORDER,
};

/// pidctl's `strategy=` values.
const STRATEGIES: [&str; 5] = ["stock", "pidmap-once", "exit-deferred", "both", "v7.0"];

/// Runs `script` on a fresh model of `strategy`; the answers as the kernel
/// prints them (`err` ones without the message).
fn answers_for(script: &str, strategy: &str) -> Vec<String> {
    let mut m = Model::for_strategy(strategy);
    script
        .lines()
        .map(|l| m.run(&Cmd::parse(l)).to_string())
        .collect()
}

fn expect(script: &str, want: &[&str]) {
    expect_for(script, "stock", want)
}

fn expect_for(script: &str, strategy: &str, want: &[&str]) {
    let got = answers_for(script, strategy);
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        let g = g.trim_end_matches(" ...");
        assert!(g.starts_with(w) || w.starts_with(g), "{g} vs {w}\n{got:#?}");
    }
}

#[test]
fn lines_round_trip() {
    for line in [
        "spawn a parent=b newns set_tid=1,-5 nocap",
        "spawn a",
        "exit a code=-3",
        "exit a",
        "wait a",
        "wait-any a",
        "wait-any a nohang",
        "pid_max a 9999999999",
        "ps",
        "check",
    ] {
        assert_eq!(Cmd::parse(line).to_string(), line);
    }
}

#[test]
fn answers_match() {
    let ok = Answer::Ok("a pids=2".into());
    assert!(ok.matches("ok a pids=2"));
    assert!(!ok.matches("ok a pids=2,3"));
    let err = Answer::Err("EINVAL");
    assert!(err.matches("err EINVAL bad"));
    assert!(err.matches("err EINVAL"));
    assert!(!err.matches("err EINVALX"));
    assert!(!err.matches("ok EINVAL"));
}

#[test]
fn the_hand_written_cases_agree() {
    for case in [
        &NAMESPACES,
        &REAPER_DEATH,
        &REAPER_IN_OWN_NAMESPACE,
        &SET_TID_RULES,
        &PID_MAX_PER_LEVEL,
        &WAIT_ANY_ORDER,
        &ORPHANS_JOIN_THE_END,
        &NOHANG,
    ] {
        for strategy in STRATEGIES {
            expect_for(case.script, strategy, &case.answers_for(strategy));
        }
    }
}

#[test]
fn more_tids_than_levels_is_the_parsers_einval() {
    // Before the depth limit a newns spawn would hit.
    let tids = vec!["1"; MAX_PID_NS_LEVEL as usize + 2].join(",");
    expect(&format!("spawn x newns set_tid={tids}"), &["err EINVAL"]);
}

#[test]
fn wrap_to_reserved_pids_and_exhaustion() {
    let mut m = Model::new();
    let mut run = |line: &str| m.run(&Cmd::parse(line)).to_string();
    assert_eq!(run("spawn n newns"), "ok n pids=1,2");
    assert_eq!(
        run("pid_max n 305"),
        "ok pid_max=305 in `n`'s namespace (level 1)"
    );
    for i in 2..=304 {
        assert!(run(&format!("spawn t{i} parent=n")).starts_with(&format!("ok t{i} pids={i},")));
    }
    assert_eq!(run("spawn full parent=n"), "err EAGAIN ...");
    for t in ["t10", "t301"] {
        run(&format!("exit {t}"));
        run(&format!("wait {t}"));
    }
    // The cursor is past RESERVED_PIDS: 10 is not handed out again.
    assert!(run("spawn w parent=n").starts_with("ok w pids=301,"));
    assert_eq!(run("spawn v parent=n"), "err EAGAIN ...");
}

#[test]
fn orphans_go_to_the_nearest_live_init() {
    expect(
        "spawn n newns\nspawn m parent=n newns\nspawn a parent=m\nspawn b parent=a\n\
         exit a\nwait a\nexit m\nwait b\nexit b\nwait b",
        &[
            "ok n pids=1,2",
            "ok m pids=1,2,3",
            "ok a pids=2,3,4",
            "ok b pids=3,4,5",
            "ok a exited",
            // a's orphan b goes to a's namespace's init, m.
            "ok a code=0 pid=2 reaped_by=m",
            // m was that init: b moves out to n.
            "ok m exited",
            "ok none",
            "ok b exited",
            "ok b code=0 pid=4 reaped_by=n",
        ],
    );
}
