//! `bench=soak`: short soaks with fault injection at every allocation
//! site; each must end with every injected failure accounted for as its
//! site's errno and `invariants: ok`.

use pidlab_tests::Boot;

/// Numbers after `name ` in `line` (e.g. "pid 15 (ENOMEM 15, ...").
fn count_after(line: &str, name: &str) -> u64 {
    let at = line
        .find(&format!(" {name} "))
        .unwrap_or_else(|| panic!("no {name:?} in {line:?}"));
    line[at + name.len() + 2..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_short_soak_injects_faults_everywhere_and_leaks_nothing() {
    let run = Boot::new()
        .smp(4)
        .tcg_single()
        .params("bench=soak ops=40000 faults=1/200")
        .run();
    run.expect_success()
        .expect_serial("soak: 40000 ops on 4 cpus")
        .expect_serial("invariants: ok");
    let faults = run.line("soak: injected faults by site:");
    for site in ["pid", "task", "stack"] {
        let fired = count_after(faults, site);
        assert!(fired > 0, "no {site} fault: {faults}");
        assert!(
            faults.contains(&format!(" {site} {fired} (ENOMEM {fired}, absorbed 0)")),
            "{site}: {faults}"
        );
    }
    assert!(count_after(faults, "idr-node") > 0, "{faults}");
    assert!(count_after(faults, "preload-fill") > 0, "{faults}");
    let kinds = run.line("soak: ops by kind:");
    for kind in ["process", "thread", "pid_max"] {
        assert!(count_after(kinds, kind) > 0, "{kinds}");
    }
    let errnos = run.line("soak: errnos:");
    assert!(
        errnos.split(" (").next().unwrap().contains("ENOMEM"),
        "{errnos}"
    );
}

/// Two CPUs in parallel (multi-threaded TCG), and with faults off no
/// ENOMEM may appear at all.
#[test]
fn a_soak_without_faults_sees_no_enomem() {
    let run = Boot::new()
        .smp(2)
        .params("bench=soak ops=10000 faults=off seed=7")
        .run();
    run.expect_success()
        .expect_serial("faults off")
        .expect_serial("invariants: ok");
    let errnos = run.line("soak: errnos:");
    let counts = errnos.split(" (").next().unwrap();
    assert!(!counts.contains("ENOMEM"), "{errnos}");
    let faults = run.line("soak: injected faults by site:");
    assert_eq!(count_after(faults, "pid"), 0, "{faults}");
}

/// The same seed makes the same choices: the operation mix is identical.
#[test]
fn the_seed_decides_the_operations() {
    let kinds = |seed: u32| {
        let run = Boot::new()
            .smp(2)
            .tcg_single()
            .params(&format!("bench=soak ops=6000 seed={seed}"))
            .run();
        run.expect_success();
        run.line("soak: ops by kind:").to_string()
    };
    let a = kinds(3);
    assert_eq!(a, kinds(3));
    assert_ne!(a, kinds(4));
}
