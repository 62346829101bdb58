//! pidctl scripts: the rules of DESIGN.md, driven through the console the
//! way a user would, one answer line per command.

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
    let r = expect(
        "spawn a\n\
         spawn b parent=a\n\
         spawn c parent=b newns\n\
         spawn d parent=c\n\
         ps\n\
         wait c\n\
         exit d code=3\n\
         wait d\n\
         exit c code=5\n\
         wait c\n\
         exit b\nwait b\nexit a code=1\nwait a\n\
         check\n",
        &[
            "ok a pids=2",
            "ok b pids=3",
            "ok c pids=1,4",
            "ok d pids=2,5",
            "ok 5 tasks: init[1] a[2] b[3] c[1,4] d[2,5]",
            "err EAGAIN",
            "ok d exited code=3",
            "ok d code=3 pid=2 reaped_by=c",
            "ok c exited code=5",
            "ok c code=5 pid=4 reaped_by=b",
            "ok b exited code=0",
            "ok b code=0 pid=3 reaped_by=a",
            "ok a exited code=1",
            "ok a code=1 pid=2 reaped_by=init",
            "ok invariants: ok",
        ],
    );
    r.expect_serial("invariants: ok");
}

#[test]
fn reaper_death_disables_the_namespace_and_reparents() {
    expect(
        "spawn n newns\n\
         spawn m parent=n\n\
         exit n code=7\n\
         spawn late parent=m\n\
         wait n\n\
         wait m\n\
         exit m\n\
         wait m\n\
         check\n",
        &[
            "ok n pids=1,2",
            "ok m pids=2,3",
            "ok n exited code=7",
            // m's namespace lost its init: no more pids there.
            "err ENOMEM",
            "ok n code=7 pid=2 reaped_by=init",
            "err EAGAIN",
            "ok m exited code=0",
            // Reparented to the root's init when its reaper died.
            "ok m code=0 pid=3 reaped_by=init",
            "ok invariants: ok",
        ],
    );
}

#[test]
fn set_tid_rules() {
    expect(
        "spawn x set_tid=1\n\
         spawn x set_tid=5000 nocap\n\
         spawn x set_tid=0\n\
         spawn x set_tid=40000\n\
         spawn x set_tid=1,2\n\
         spawn x set_tid=4000\n\
         spawn y set_tid=4000\n\
         spawn n newns set_tid=1,600\n\
         spawn k parent=n set_tid=9,601\n\
         exit k\nwait k\nexit n\nwait n\nexit x\nwait x\n\
         check\n",
        &[
            "err EEXIST",
            "err EPERM",
            "err EINVAL",
            // Beyond pid_max (32768 by default).
            "err EINVAL",
            // More tids than levels.
            "err EINVAL",
            "ok x pids=4000",
            "err EEXIST",
            "ok n pids=1,600",
            "ok k pids=9,601",
            "ok k exited",
            // wait reports the pid as the parent's namespace sees it.
            "ok k code=0 pid=9 reaped_by=n",
            "ok n exited",
            "ok n code=0 pid=600",
            "ok x exited",
            "ok x code=0 pid=4000",
            "ok invariants: ok",
        ],
    );
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
