//! Reading the kernel's profile rows off the serial console (host only):
//! well-formed output in every row kind, and malformed lines, each of which
//! must come back as an error naming its line and what is wrong, never as
//! a panic or a silently wrong row.

use pidlab_boot::profile::folded::{self, Closing, LockRow, RawFrame, Row, Total};
use pidlab_boot::profile::report::check_totals;

const GOOD: &str = "\
boot noise, not ours
profile: on, 4000 Hz per CPU, NMI from HPET timer 2 (broadcast), kernel_main at 0xffff800000123456
threadspawn: 8 cpus online
profile,version,workers,stack,count
profile,stock,2,0xffff80000001a000;0xffff80000001b123;0xffff80000001c456,1234\r
profile,stock,2,[truncated];0xffff80000001c456,6
profile,stock,2,[dropped],10
profile,exit-deferred,2,0xffff80000001c456,50
profile,-,0,0xffff80000001a000,3
profile_total,version,workers,samples,ops,cpu_cycles
profile_total,stock,2,1250,1234567,650000
profile_total,exit-deferred,2,50,1000,650000
profile: 1303 samples taken, 1303 in rows, 10 dropped (stack table full), 6 truncated unwinds
threadspawn_lock,version,workers,lock,acq_per_op,contended_x10000,wait_cycles,hold_cycles
threadspawn_lock,stock,2,pidmap_lock,3.00,1234,456,789
threadspawn_lock,stock,2,input_pool.lock,1.00,0,0,120
";

#[test]
fn well_formed_output_reads_back_exactly() {
    let p = folded::parse(GOOD);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.kernel_main, Some(0xffff_8000_0012_3456));
    assert!(
        p.banner
            .as_deref()
            .unwrap()
            .starts_with("profile: on, 4000 Hz")
    );
    assert_eq!(p.rows.len(), 5);
    assert_eq!(
        p.rows[0],
        Row {
            version: "stock".into(),
            workers: 2,
            stack: vec![
                RawFrame::Addr(0xffff_8000_0001_a000),
                RawFrame::Addr(0xffff_8000_0001_b123),
                RawFrame::Addr(0xffff_8000_0001_c456),
            ],
            count: 1234,
        },
        "a CRLF line ending is not part of the count"
    );
    assert_eq!(p.rows[1].stack[0], RawFrame::Marker("[truncated]".into()));
    assert_eq!(p.rows[2].stack, [RawFrame::Marker("[dropped]".into())]);
    assert_eq!(p.rows[4].version, folded::OUTSIDE);
    assert_eq!(
        p.totals[0],
        Total {
            version: "stock".into(),
            workers: 2,
            samples: 1250,
            ops: 1234567,
            cpu_cycles: 650000,
        }
    );
    assert_eq!(
        p.closing,
        Some(Closing {
            taken: 1303,
            in_rows: 1303,
            dropped: 10,
            truncated: 6,
        })
    );
    assert_eq!(
        p.locks[0],
        LockRow {
            version: "stock".into(),
            workers: 2,
            lock: "pidmap_lock".into(),
            acq_per_op: 3.0,
            contended_x10000: 1234,
            wait_cycles: 456,
            hold_cycles: 789,
        }
    );
    assert_eq!(p.locks[1].lock, "input_pool.lock");
    assert_eq!(
        p.versions(),
        ["stock", "exit-deferred"],
        "first seen first, `-` apart"
    );
    assert_eq!(p.worker_counts(), [2]);
    assert!(folded::has_profile_rows(GOOD));
    assert!(!folded::has_profile_rows(
        "threadspawn: 8 cpus\nprofile: off\n"
    ));
    assert!(check_totals(&p).is_empty(), "{:?}", check_totals(&p));
}

#[test]
fn lockstat_cycles_per_op() {
    let p = folded::parse(GOOD);
    let pidmap = &p.locks[0];
    // 3 acquisitions per op, 12.34% contended, 456 cycles per contended wait.
    assert!((pidmap.wait_per_op() - 3.0 * 0.1234 * 456.0).abs() < 1e-9);
    assert!((pidmap.hold_per_op() - 3.0 * 789.0).abs() < 1e-9);
}

/// One malformed line after a good header, and what its error must say.
const MALFORMED: &[(&str, &str)] = &[
    ("profile,stock,2,0x10", "3 fields after the tag, expected 4"),
    (
        "profile,stock,2,0x10,1,extra",
        "5 fields after the tag, expected 4",
    ),
    ("profile,stock,2,0xzz,1", "`0xzz` is not a hex address"),
    (
        "profile,stock,2,1234,1",
        "`1234` is not 0x followed by hex digits",
    ),
    (
        "profile,stock,2,0x12345678901234567,1",
        "not a 64-bit hex address",
    ),
    ("profile,stock,2,0x10;;0x20,1", "`` is not 0x"),
    ("profile,stock,2,0x10,", "count `` is not a whole number"),
    (
        "profile,stock,2,0x10,-1",
        "count `-1` is not a whole number",
    ),
    ("profile,stock,2,0x10,1e3", "count `1e3`"),
    ("profile,stock,two,0x10,1", "workers `two`"),
    ("profile,st ock,2,0x10,1", "bad version name `st ock`"),
    ("profile,../x,2,0x10,1", "bad version name `../x`"),
    ("profile,,2,0x10,1", "bad version name ``"),
    (
        "profile_total,stock,2,1,2",
        "4 fields after the tag, expected 5",
    ),
    ("profile_total,stock,2,x,2,3", "samples `x`"),
    ("profile_total,stock,2,1,2,-3", "cpu_cycles `-3`"),
    (
        "threadspawn_lock,stock,2,pidmap_lock,x,1,2,3",
        "acq_per_op `x` is not a number",
    ),
    (
        "threadspawn_lock,stock,2,pidmap_lock,NaN,1,2,3",
        "acq_per_op `NaN`",
    ),
    ("threadspawn_lock,stock,2,,1.00,1,2,3", "empty lock name"),
    (
        "threadspawn_lock,stock,2,pidmap_lock,1.00,1,2",
        "6 fields after the tag, expected 7",
    ),
    (
        "profile: on, 4000 Hz, kernel_main at 0xnope",
        "kernel_main address",
    ),
    (
        "profile: 10 samples taken, 9 in rows",
        "without its four counts",
    ),
    (
        "profile: x samples taken, 1 in rows, 0 dropped, 0 truncated",
        "samples `x`",
    ),
];

#[test]
fn malformed_lines_are_errors_naming_line_and_reason() {
    for (line, reason) in MALFORMED {
        let text = format!("noise\nprofile,stock,2,0x10,5\n{line}\nprofile,stock,2,0x20,7\n");
        let p = folded::parse(&text);
        assert_eq!(p.errors.len(), 1, "{line}: {:?}", p.errors);
        let e = &p.errors[0];
        assert_eq!(e.line, 3, "{line}");
        let shown = e.to_string();
        assert!(shown.contains(reason), "{line}: {shown}");
        assert!(shown.starts_with("serial line 3: "), "{shown}");
        assert!(shown.contains(line), "{shown}");
        // The rows around it still count.
        let counts: Vec<u64> = p.rows.iter().map(|r| r.count).collect();
        assert_eq!(counts, [5, 7], "{line}");
    }
}

#[test]
fn repeats_are_reported_and_merged_or_ignored() {
    let p = folded::parse(
        "profile,stock,1,0x10;0x20,5\n\
         profile,stock,1,0x10;0x20,2\n\
         profile,stock,2,0x10;0x20,1\n\
         profile_total,stock,1,7,10,100\n\
         profile_total,stock,1,9,10,100\n\
         profile: on, kernel_main at 0x1000\n\
         profile: on, kernel_main at 0x2000\n",
    );
    assert_eq!(p.rows.len(), 2, "another worker count is another row");
    assert_eq!(p.rows[0].count, 7);
    assert_eq!(p.totals.len(), 1);
    assert_eq!(p.totals[0].samples, 7, "the first total stands");
    assert_eq!(p.kernel_main, Some(0x1000), "the first kernel_main stands");
    let lines: Vec<usize> = p.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 5, 7], "{:?}", p.errors);
    assert!(p.errors[0].reason.contains("counts added"));
}

#[test]
fn a_long_bad_line_is_shown_shortened() {
    let long = format!("profile,stock,1,0x10,{}", "9".repeat(400));
    let p = folded::parse(&long);
    let shown = p.errors[0].to_string();
    assert!(shown.len() < 250, "{shown}");
    assert!(shown.ends_with("...`"), "{shown}");
}

/// Every prefix of a good row, and every character of it replaced by each
/// separator: a row or an error each time, never a panic.
#[test]
fn mangled_rows_never_panic() {
    let good = "profile,stock,12,0xffff80000001a000;[truncated];0xffff80000001c456,1234";
    let mut lines = Vec::new();
    for end in 0..=good.len() {
        lines.push(good[..end].to_string());
    }
    for i in 0..good.len() {
        for sep in [",", ";", "[", "]", "", " ", "\u{fffd}"] {
            lines.push(format!("{}{sep}{}", &good[..i], &good[i + 1..]));
        }
    }
    for line in &lines {
        let p = folded::parse(line);
        let ours =
            line.starts_with("profile,") && line.as_str() != "profile,version,workers,stack,count";
        assert_eq!(
            p.rows.len() + p.errors.len(),
            usize::from(ours),
            "{line}: {:?} {:?}",
            p.rows,
            p.errors
        );
    }
}

#[test]
fn totals_that_do_not_add_up_are_named() {
    let p = folded::parse(
        "profile,stock,1,0x10,5\n\
         profile,stock,1,0x20,4\n\
         profile,both,1,0x10,3\n\
         profile,-,0,0x10,1\n\
         profile_total,stock,1,10,100,1000\n\
         profile: 13 samples taken, 12 in rows, 0 dropped (stack table full), 0 truncated unwinds\n",
    );
    let problems = check_totals(&p);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].contains("stock at 1 workers: the rows hold 9 samples, profile_total says 10")
    );
    assert!(problems[1].contains("both at 1 workers: rows but no profile_total row"));
    assert!(problems[2].contains("counts 12 samples in rows, the rows hold 13"));
}
