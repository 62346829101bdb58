//! What Linux measured, and the lab's readings of the same comparisons.
//!
//! Linux measured each change against the kernel it was merged into, so
//! each comparison here is a ratio of two versions run in the same rounds
//! (paired per round). A worker count whose busy vCPUs outnumber the
//! host's cores is `host-bound`: the host, not the kernel, decides its
//! ratios, so it gets no verdict and stays out of the closing table.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::report::{Cell, RunInfo, compare, find, opt};
use crate::bench::accel_name;
use crate::bench::stats::{Noise, RATIO_ONE};
// Linux's comparisons and the prototype's, as the runner reads them too.
use pidlab_abi::comparisons::{COMPARISONS, Comparison};

/// How a comparison is printed: `exit   = exit-deferred / stock`.
fn label(c: &Comparison) -> String {
    format!("{:<6} = {} / {}", c.change, c.with, c.without)
}

/// Prints Linux's comparisons per worker count and returns their rows.
pub(super) fn print_linux_changes(cells: &[Cell], info: &RunInfo, coverage: u64) -> Vec<String> {
    let mut workers: Vec<usize> = cells.iter().map(|c| c.workers).collect();
    workers.dedup();
    println!(
        "Linux's comparisons (each change against the kernel it was merged into; paired per round, median [interval]):"
    );
    let mut rows = Vec::new();
    for &w in &workers {
        for c in &COMPARISONS {
            let (row, label, num, den) = (c.change, label(c), c.with, c.without);
            if row == "lockless" && !cells.iter().any(|c| c.strategy.lockless()) {
                continue;
            }
            let (Some(a), Some(b)) = (find(cells, w, num), find(cells, w, den)) else {
                let missing: Vec<&str> = [num, den]
                    .into_iter()
                    .filter(|n| find(cells, w, n).is_none())
                    .collect();
                println!(
                    "{w:>7} {label}: not run (strategies= lacks {})",
                    missing.join(" and ")
                );
                continue;
            };
            let (ratio, paired) = compare(a, b);
            let Some(p) = paired else {
                println!("{w:>7} {label}: no round measured {den}");
                continue;
            };
            let means = ratio.map_or(String::from("-"), |r| format!("{r}"));
            let verdict = info.verdict(w, &p);
            println!(
                "{w:>7} {label}: {:<23} {:<10} (ratio of means {means})",
                format!("{p}"),
                verdict
            );
            rows.push(format!(
                "threadspawn_linux,{row},{w},{},{},{},{},{},{},{},{coverage},{},{},{},{}",
                info.ns_depth,
                p.median,
                p.spread(),
                verdict,
                p.lo,
                p.hi,
                p.n,
                opt(ratio.map(|r| r.value)),
                info.placement.name(),
                info.online,
                accel_name(info.accel)
            ));
        }
    }
    rows
}

/// What upstream measured for a change: (row name, the ratio's range in
/// parts per 10,000, where and how, whose words).
const UPSTREAM: [(&str, u64, u64, &str); 2] = [
    (
        "exit",
        11_500,
        11_500,
        "+15% threadspawn on a 24-core VM (design notes); the 6.15 pull request: +23% process creation (test bots)",
    ),
    (
        "pidmap",
        11_000,
        11_600,
        "+10-16% thread creation/teardown, 'depending on false-sharing luck' (the 7.0 pull request)",
    ),
];

/// The closing table: each Linux change, what upstream measured, and what
/// this run read at the worker counts the host does not decide: the
/// paired median and interval, and whether upstream's figure lies inside
/// it (`agrees`), above it (`lab lower`) or below it (`lab higher`).
pub(super) fn print_vs_linux(cells: &[Cell], info: &RunInfo) -> Vec<String> {
    let mut workers: Vec<usize> = cells.iter().map(|c| c.workers).collect();
    workers.dedup();
    println!();
    println!(
        "threadspawn vs Linux (upstream's figure for each change beside this run's paired reading):"
    );
    let mut rows = Vec::new();
    for (row, lo, hi, said) in UPSTREAM {
        let Some(c) = COMPARISONS.iter().find(|c| c.change == row) else {
            continue;
        };
        let (label, num, den) = (label(c), c.with, c.without);
        println!("  {label}: upstream {} ({said})", range(lo, hi));
        for &w in &workers {
            let Some((a, b)) = find(cells, w, num).zip(find(cells, w, den)) else {
                continue;
            };
            if info.host_bound(w) {
                println!("{w:>9} workers: host-bound (not compared)");
                continue;
            }
            let Some(p) = compare(a, b).1 else { continue };
            let verdict = if p.noise() == Noise::Few {
                "few rounds"
            } else if hi < p.lo {
                "lab higher"
            } else if lo > p.hi {
                "lab lower"
            } else {
                "agrees"
            };
            println!("{w:>9} workers: {p}  {verdict}");
            rows.push(format!(
                "threadspawn_vs_linux,{row},{lo},{hi},{w},{},{},{},{verdict},{},{},{},{}",
                p.median,
                p.lo,
                p.hi,
                info.ns_depth,
                info.placement.name(),
                info.online,
                accel_name(info.accel)
            ));
        }
    }
    rows
}

/// A ratio range in parts per 10,000 as `1.150x` or `1.100x-1.160x`.
fn range(lo: u64, hi: u64) -> String {
    let x = |v: u64| format!("{}.{:03}x", v / RATIO_ONE, v % RATIO_ONE / 10);
    if lo == hi {
        x(lo)
    } else {
        format!("{}-{}", x(lo), x(hi))
    }
}

/// The `threadspawn_vs_linux` CSV header.
pub(super) const VS_LINUX_HEADER: &str = "threadspawn_vs_linux,change,linux_lo_x10000,linux_hi_x10000,workers,ratio_x10000,lo_x10000,hi_x10000,verdict,ns_depth,placement,cpus,accel";
