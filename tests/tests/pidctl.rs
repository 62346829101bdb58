//! pidctl scripts: the rules of DESIGN.md, driven through the console the
//! way a user would, one answer line per command.

use pidlab_tests::pidctl_cases::{
    Case, NAMESPACES, NOHANG, ORPHANS_JOIN_THE_END, PID_MAX_PER_LEVEL, REAPER_DEATH,
    REAPER_IN_OWN_NAMESPACE, SET_TID_RULES, WAIT_ANY_ORDER,
};
use pidlab_tests::{Boot, Run};

/// pidctl's `strategy=` values: the kernel versions and the lock-free
/// prototype (whose tasks live in a lock-free root of their own, init
/// pid 1 there, so every answer is the same).
const STRATEGIES: [&str; 6] = [
    "stock",
    "pidmap-once",
    "exit-deferred",
    "both",
    "v7.0",
    "lockless",
];

fn run(script: &str) -> Run {
    run_as(script, "stock")
}

fn run_as(script: &str, strategy: &str) -> Run {
    let run = Boot::new()
        .smp(2)
        .script(script)
        .params(&format!("strategy={strategy}"))
        .run();
    run.expect_success();
    run.expect_serial(&format!("pidctl: tasks run {strategy} (Linux "));
    run
}

/// The answers (`ok ...` / `err ...`) in order.
fn answers(run: &Run) -> Vec<String> {
    run.serial()
        .lines()
        .filter(|l| l.starts_with("ok ") || l.starts_with("err "))
        .map(String::from)
        .collect()
}

fn expect(script: &str, want: &[&str]) -> Run {
    expect_as(script, "stock", want)
}

fn expect_as(script: &str, strategy: &str, want: &[&str]) -> Run {
    let r = run_as(script, strategy);
    let got = answers(&r);
    assert_eq!(got.len(), want.len(), "{strategy}: answers: {got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            g.starts_with(w),
            "{strategy}: expected `{w}...`, got `{g}`\nall: {got:#?}"
        );
    }
    r
}

/// Runs `case` under every kernel version; each must give that version's
/// answers and pass the invariant check.
fn expect_every_version(case: &Case) {
    for strategy in STRATEGIES {
        expect_as(case.script, strategy, &case.answers_for(strategy));
    }
}

#[test]
fn spawn_wait_exit_and_namespaces() {
    expect_every_version(&NAMESPACES);
}

#[test]
fn reaper_death_disables_the_namespace_and_reparents() {
    expect_every_version(&REAPER_DEATH);
}

#[test]
fn orphans_go_to_their_own_namespace_init() {
    expect_every_version(&REAPER_IN_OWN_NAMESPACE);
}

#[test]
fn set_tid_rules() {
    expect_every_version(&SET_TID_RULES);
}

#[test]
fn pid_max_is_per_level() {
    expect_every_version(&PID_MAX_PER_LEVEL);
}

#[test]
fn wait_any_reaps_oldest_child_first() {
    expect_every_version(&WAIT_ANY_ORDER);
}

#[test]
fn orphans_join_the_end_of_their_reapers_children() {
    expect_every_version(&ORPHANS_JOIN_THE_END);
}

#[test]
fn nohang_answers_none_with_live_children_and_echild_without() {
    expect_every_version(&NOHANG);
}

#[test]
fn unknown_strategy_is_refused() {
    let run = Boot::new()
        .smp(1)
        .script("ps\n")
        .params("strategy=single-lock")
        .run();
    run.expect_failure_with("bad value `single-lock` for `strategy`");
}

#[test]
fn pid_max_bounds_and_wrap_to_reserved_pids() {
    // In a new namespace with pid_max 305: pids 2..=304 go to 303 tasks;
    // free 10 and 301; the next spawn wraps, and starts again at 300
    // (RESERVED_PIDS), so it gets 301, not 10.
    let mut s =
        String::from("pid_max init 300\npid_max init 4194305\nspawn n newns\npid_max n 305\n");
    for i in 2..=304 {
        s += &format!("spawn t{i} parent=n\n");
    }
    s += "exit t10\nwait t10\nexit t301\nwait t301\nspawn w parent=n\n";
    let r = run(&s);
    let a = answers(&r);
    assert!(
        a[0].starts_with("err EINVAL") && a[1].starts_with("err EINVAL"),
        "{a:?}"
    );
    assert!(a[2].starts_with("ok n pids=1,"), "{a:?}");
    assert!(a[3].starts_with("ok pid_max=305"), "{a:?}");
    for (k, i) in (2..=304).enumerate() {
        assert!(
            a[4 + k].starts_with(&format!("ok t{i} pids={i},")),
            "{}",
            a[4 + k]
        );
    }
    let last = a.last().unwrap();
    assert!(last.starts_with("ok w pids=301,"), "{last}");
    r.expect_serial("tasks still alive");
}

#[test]
fn bad_commands_and_names_answer_errors() {
    expect(
        "frob\n\
         spawn\n\
         spawn bad/name\n\
         wait nobody\n\
         exit init\n\
         wait init\n\
         spawn a parent=ghost\n\
         spawn a\n\
         spawn a\n\
         exit a code=x\n\
         wait-any\n\
         wait-any a/b\n\
         wait-any a block\n\
         wait-any a nohang x\n\
         exit a\nwait a\nwait a\n",
        &[
            "err EINVAL unknown command",
            "err EINVAL missing",
            "err EINVAL bad task name",
            "err ESRCH",
            "err EPERM",
            "err ECHILD",
            "err ESRCH",
            "ok a pids=",
            "err EEXIST",
            "err EINVAL",
            "err EINVAL missing task name",
            "err EINVAL bad task name `a/b`",
            "err EINVAL bad argument `block` (usage: wait-any PARENT [nohang])",
            "err EINVAL unexpected argument `x`",
            "ok a exited",
            "ok a code=0",
            "err ESRCH",
        ],
    );
}
