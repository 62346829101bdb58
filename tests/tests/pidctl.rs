//! pidctl scripts: the rules of DESIGN.md, driven through the console the
//! way a user would, one answer line per command.

use pidlab_tests::pidctl_cases::{
    NAMESPACES, REAPER_DEATH, REAPER_IN_OWN_NAMESPACE, SET_TID_RULES,
};
use pidlab_tests::{Boot, Run};

fn run(script: &str) -> Run {
    let run = Boot::new().smp(2).script(script).run();
    run.expect_success();
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
    let r = run(script);
    let got = answers(&r);
    assert_eq!(got.len(), want.len(), "answers: {got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            g.starts_with(w),
            "expected `{w}...`, got `{g}`\nall: {got:#?}"
        );
    }
    r
}

#[test]
fn spawn_wait_exit_and_namespaces() {
    let r = expect(NAMESPACES.script, NAMESPACES.answers);
    r.expect_serial("invariants: ok");
}

#[test]
fn reaper_death_disables_the_namespace_and_reparents() {
    expect(REAPER_DEATH.script, REAPER_DEATH.answers);
}

#[test]
fn orphans_go_to_their_own_namespace_init() {
    expect(
        REAPER_IN_OWN_NAMESPACE.script,
        REAPER_IN_OWN_NAMESPACE.answers,
    );
}

#[test]
fn set_tid_rules() {
    expect(SET_TID_RULES.script, SET_TID_RULES.answers);
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
            "ok a exited",
            "ok a code=0",
            "err ESRCH",
        ],
    );
}
