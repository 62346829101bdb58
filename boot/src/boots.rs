//! `--boots N`: the same command booted N times, and Linux's comparisons
//! read across the boots.
//!
//! One boot's paired interval says how much its rounds disagree; it says
//! nothing about what changes from one boot to the next (where hot objects
//! land in memory, which cache lines they share by chance). So the runner
//! boots again and reports, per comparison and worker count, each boot's
//! median with its interval, the median over boots and the range they
//! span, and whether every boot's median lies inside every other boot's
//! interval (`boots agree`) or not (`boots differ`).

use std::collections::BTreeMap;
use std::fmt::Write;

/// One `threadspawn_linux` row: a comparison at a worker count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxRow {
    pub change: String,
    pub workers: u32,
    /// Paired median and interval, in parts per 10,000.
    pub ratio: u64,
    pub lo: u64,
    pub hi: u64,
    /// `inside`, `outside`, `few` or `host-bound`.
    pub noise: String,
}

/// The data rows of CSV family `family` in a run's serial output, each as
/// a lookup by the column names of the family's header row (the one whose
/// second field is `key`); rows before a header are skipped.
fn family_rows<'a>(
    serial: &'a str,
    family: &str,
    key: &str,
) -> impl Iterator<Item = impl Fn(&str) -> Option<&'a str>> {
    let prefix = format!("{family},");
    let mut cols: Option<Vec<&'a str>> = None;
    serial.lines().filter_map(move |line| {
        if !line.starts_with(&prefix) {
            return None;
        }
        let fields: Vec<&'a str> = line.split(',').collect();
        if fields.get(1) == Some(&key) {
            cols = Some(fields);
            return None;
        }
        let cols = cols.clone()?;
        Some(move |name: &str| {
            cols.iter()
                .position(|c| *c == name)
                .and_then(|i| fields.get(i).copied())
        })
    })
}

/// The `threadspawn_linux` rows of a run's serial output (by the header's
/// column names; rows that do not parse are skipped).
pub fn linux_rows(serial: &str) -> Vec<LinuxRow> {
    let mut rows = Vec::new();
    for get in family_rows(serial, "threadspawn_linux", "change") {
        let num = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
        if let (Some(change), Some(workers), Some(ratio), Some(lo), Some(hi), Some(noise)) = (
            get("change"),
            get("workers").and_then(|w| w.parse().ok()),
            num("ratio_x10000"),
            num("paired_lo_x10000"),
            num("paired_hi_x10000"),
            get("noise"),
        ) {
            rows.push(LinuxRow {
                change: change.to_string(),
                workers,
                ratio,
                lo,
                hi,
                noise: noise.to_string(),
            });
        }
    }
    rows
}

fn x(v: u64) -> String {
    format!("{}.{:03}x", v / 10_000, v % 10_000 / 10)
}

/// The report over boots: a table for people and `threadspawn_boots` rows.
pub fn summary(boots: &[Vec<LinuxRow>]) -> String {
    let mut by: BTreeMap<(u32, String), Vec<&LinuxRow>> = BTreeMap::new();
    for rows in boots {
        for r in rows {
            by.entry((r.workers, r.change.clone())).or_default().push(r);
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "threadspawn over {} boots (each boot's paired median [interval]; the median over boots and their range; boots agree when every boot's median lies in every other's interval):",
        boots.len()
    );
    let mut csv = Vec::new();
    for ((workers, change), rows) in &by {
        let per: Vec<String> = rows
            .iter()
            .map(|r| format!("{} [{}, {}]", x(r.ratio), x(r.lo), x(r.hi)))
            .collect();
        let mut medians: Vec<u64> = rows.iter().map(|r| r.ratio).collect();
        medians.sort_unstable();
        let mid = medians[medians.len() / 2];
        let (min, max) = (medians[0], medians[medians.len() - 1]);
        let host_bound = rows.iter().any(|r| r.noise == "host-bound");
        let agree = rows
            .iter()
            .all(|a| rows.iter().all(|b| (b.lo..=b.hi).contains(&a.ratio)));
        let verdict = if host_bound {
            "host-bound"
        } else if rows.len() < boots.len() {
            "missing in some boots"
        } else if agree {
            "boots agree"
        } else {
            "boots differ"
        };
        let _ = writeln!(
            out,
            "{workers:>7} {change:<8} {}  over boots {} [{}, {}]  {verdict}",
            per.join("  "),
            x(mid),
            x(min),
            x(max)
        );
        for (i, r) in rows.iter().enumerate() {
            csv.push(format!(
                "threadspawn_boots,{change},{workers},{},{},{},{},{mid},{min},{max},{verdict}",
                i + 1,
                r.ratio,
                r.lo,
                r.hi
            ));
        }
    }
    let _ = writeln!(
        out,
        "threadspawn_boots,change,workers,boot,ratio_x10000,lo_x10000,hi_x10000,median_over_boots_x10000,min_over_boots_x10000,max_over_boots_x10000,verdict"
    );
    for r in csv {
        let _ = writeln!(out, "{r}");
    }
    out
}

/// Each worker count's line transfer in one boot: the median over versions
/// of their `threadspawn_line` medians (a cache line's round trip between
/// CPUs 0 and 1, ns), by worker count.
pub fn line_medians(serial: &str) -> BTreeMap<u32, u64> {
    let mut by: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for get in family_rows(serial, "threadspawn_line", "strategy") {
        let num = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
        if let (Some(w), Some(ns)) = (num("workers"), num("line_ns_median")) {
            by.entry(w as u32).or_default().push(ns);
        }
    }
    by.into_iter()
        .map(|(w, mut v)| {
            v.sort_unstable();
            (w, v[v.len() / 2])
        })
        .collect()
}

/// Beside [`summary`]: each boot's line transfer per worker count, so a
/// boot whose host ran the two vCPUs farther apart shows as such.
pub fn line_summary(boots: &[BTreeMap<u32, u64>]) -> String {
    let mut workers: Vec<u32> = boots.iter().flat_map(|b| b.keys().copied()).collect();
    workers.sort_unstable();
    workers.dedup();
    if workers.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "line transfer per boot (a cache line's round trip between CPUs 0 and 1, ns: the median over versions of each version's median; where the host ran the two vCPU threads):\n",
    );
    let mut csv = Vec::new();
    for w in workers {
        let per: Vec<String> = boots
            .iter()
            .enumerate()
            .map(|(i, b)| match b.get(&w) {
                Some(ns) => {
                    csv.push(format!("threadspawn_boots_line,{w},{},{ns}", i + 1));
                    format!("{ns}")
                }
                None => String::from("-"),
            })
            .collect();
        let present: Vec<u64> = boots.iter().filter_map(|b| b.get(&w).copied()).collect();
        let (lo, hi) = (
            present.iter().copied().min().unwrap_or(0),
            present.iter().copied().max().unwrap_or(0),
        );
        // 1.5x apart: the two modes seen here read about 150 and 345 ns.
        let note = if lo > 0 && hi * 2 >= lo * 3 {
            format!(
                "  (boots {:.1}x apart: the host ran the two vCPUs closer in some; compare boots of like line)",
                hi as f64 / lo as f64
            )
        } else {
            String::new()
        };
        let _ = writeln!(out, "{w:>7} workers: {}{note}", per.join(", "));
    }
    let _ = writeln!(out, "threadspawn_boots_line,workers,boot,line_ns");
    for r in csv {
        let _ = writeln!(out, "{r}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "\
threadspawn_linux,change,workers,ns_depth,ratio_x10000,spread_x10000,noise,paired_lo_x10000,paired_hi_x10000,rounds
threadspawn_linux,exit,2,0,11180,500,outside,10680,11600,30
threadspawn_linux,pidmap,2,0,10290,400,inside,9970,10690,30
threadspawn_linux,exit,8,0,15000,9000,host-bound,9000,24000,30
threadspawn_linux,garbage
";

    #[test]
    fn rows_are_read_by_column_name() {
        let rows = linux_rows(RUN);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            LinuxRow {
                change: "exit".into(),
                workers: 2,
                ratio: 11180,
                lo: 10680,
                hi: 11600,
                noise: "outside".into()
            }
        );
    }

    #[test]
    fn boots_agree_when_each_median_is_in_every_interval() {
        let a = linux_rows(RUN);
        let mut b = a.clone();
        b[0].ratio = 10700; // inside a's [10680, 11600] and its own
        b[0].lo = 10300;
        let s = summary(&[a.clone(), b.clone()]);
        assert!(
            s.lines()
                .any(|l| l.contains("exit") && l.ends_with("boots agree")),
            "{s}"
        );
        let mut c = a.clone();
        c[0].ratio = 10330;
        c[0].lo = 10000;
        c[0].hi = 10650;
        let s = summary(&[a.clone(), c]);
        assert!(
            s.lines()
                .any(|l| l.contains(" exit") && l.ends_with("boots differ")),
            "{s}"
        );
        assert!(
            s.lines()
                .any(|l| l.contains("8 exit") && l.ends_with("host-bound")),
            "{s}"
        );
        assert!(s.contains("threadspawn_boots,exit,2,2,10330,"), "{s}");
        assert!(s.contains("over boots 1.118x [1.033x, 1.118x]"), "{s}");
    }

    #[test]
    fn line_medians_take_the_middle_version_per_worker_count() {
        let serial = "\
threadspawn_line,strategy,workers,line_ns_median,line_ns_p10,line_ns_p90,ops_line_corr_x100
threadspawn_line,stock,2,400,150,600,-55
threadspawn_line,both,2,180,150,500,-40
threadspawn_line,v7.0,2,390,160,610,
threadspawn_line,stock,4,700,300,900,-10
";
        let m = line_medians(serial);
        assert_eq!(m.into_iter().collect::<Vec<_>>(), [(2, 390), (4, 700)]);
        let boots = [line_medians(serial), BTreeMap::from([(2, 170)])];
        let out = line_summary(&boots);
        assert!(
            out.contains("      2 workers: 390, 170  (boots 2.3x apart: the host ran the two vCPUs closer in some; compare boots of like line)\n"),
            "{out}"
        );
        assert!(out.contains("      4 workers: 700, -\n"), "{out}");
        assert!(out.contains("threadspawn_boots_line,2,2,170\n"), "{out}");
        // Within 1.5x of each other: no note.
        let out = line_summary(&[BTreeMap::from([(2, 300)]), BTreeMap::from([(2, 210)])]);
        assert!(out.contains("      2 workers: 300, 210\n"), "{out}");
        // One worker has no line rows: nothing to print.
        assert_eq!(line_summary(&[BTreeMap::new()]), "");
    }
}
