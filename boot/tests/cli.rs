//! The runner binary's contract: exit statuses and messages.

use std::process::{Command, Output};

fn pidlab(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pidlab"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running the runner")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn success_is_zero_and_failure_is_one() {
    let ok = pidlab(&["--smp", "1", "bench=none"], &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("bench none: boot complete"));

    let bad = pidlab(&["--smp", "1", "test=panic"], &[]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("deliberate panic"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn timeout_has_its_own_status_and_message() {
    let o = pidlab(&["--smp", "1", "--timeout", "3", "test=hang"], &[]);
    assert_eq!(o.status.code(), Some(124), "{}", stderr(&o));
    assert!(stderr(&o).contains("timeout"), "{}", stderr(&o));
}

#[test]
fn usage_errors_are_two() {
    let o = pidlab(&["--smp", "zero"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--smp zero"), "{}", stderr(&o));
}

#[test]
fn missing_qemu_names_the_package() {
    let o = pidlab(&["bench=none"], &[("PIDLAB_QEMU", "/nonexistent/qemu")]);
    assert_eq!(o.status.code(), Some(127));
    assert!(stderr(&o).contains("qemu-system-x86"), "{}", stderr(&o));
}

#[test]
fn profile_log_reports_a_saved_run_without_booting() {
    let dir = std::env::temp_dir();
    let log = dir.join(format!("pidlab-cli-profile-{}.log", std::process::id()));
    std::fs::write(
        &log,
        "profile,stock,1,0x10;0x20,3\nprofile_total,stock,1,3,10,1000\n",
    )
    .unwrap();
    let log_arg = log.to_str().unwrap();
    let o = pidlab(
        &["--profile-log", log_arg],
        &[("PIDLAB_QEMU", "/nonexistent/qemu")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("profile top 15: stock"), "{out}");
    assert!(out.contains("where the op goes, 1 worker"), "{out}");
    assert!(stderr(&o).contains("unknown to"), "{}", stderr(&o));

    std::fs::write(&log, "threadspawn: no profile\n").unwrap();
    let o = pidlab(&["--profile-log", log_arg], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("no profile rows"), "{}", stderr(&o));
    let o = pidlab(&["--profile-log", log_arg, "bench=none"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let _ = std::fs::remove_file(&log);
}
