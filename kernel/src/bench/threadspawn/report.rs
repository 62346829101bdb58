//! threadspawn's report: the summary table, Linux's own comparisons, and
//! the machine-readable rows.
//!
//! Strategies run interleaved in rounds, so every ratio is reported two
//! ways: the ratio of means with its propagated spread (`vs stock`), and
//! the paired view that decides `noise?`: per round, the strategy's ops/s
//! over the baseline's in that same round, then the median of those ratios
//! with its order-statistic interval ([`Paired`]). A host phase that slows
//! one round slows both sides of that round's ratio, so the paired view is
//! the one that survives a shared host.
//!
//! Linux measured each change against the kernel it was merged into: the
//! exit change as 6.15 against 6.14 (`exit-deferred / stock`), the pidmap
//! change on a tree that already had the exit change (`both /
//! exit-deferred`). 7.0 then moved pidfs off `pidmap_lock` (`v7.0 /
//! both`). Those comparisons get their own lines and rows, and so does the
//! lock-free prototype against 7.0 (`lockless / v7.0`) when it ran.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::placement::Placement;
use super::worker::{LOCK_CLASSES, Measured};
use crate::bench::accel_name;
use crate::bench::stats::{
    Paired, RATIO_ONE, Ratio, Summary, correlation_x100, median_interval_rank,
};
use crate::strategy::StrategyPair;
use crate::sync::choice::lock_algo;
use pidlab_abi::Accel;

/// One run of one sample, kept or re-run.
#[derive(Clone, Copy)]
pub(super) struct Attempt {
    pub(super) round: u32,
    /// Where in its (mirrored) round it ran (1: first).
    pub(super) position: u32,
    /// Which half of the round (1: the random order, 2: it reversed).
    pub(super) half: u32,
    /// Its length (half of `sample_ms`).
    pub(super) ms: u32,
    pub(super) attempt: u32,
    pub(super) ops_per_sec: u64,
    pub(super) steal_x100: u64,
    /// See [`Measured::line_ns`].
    pub(super) line_ns: Option<u64>,
    pub(super) kept: bool,
}

/// Per (workers, strategy): the kept sample of each round (its two
/// halves' kept attempts joined), in round order, and every attempt.
pub(super) struct Cell {
    pub(super) workers: usize,
    pub(super) strategy: &'static StrategyPair,
    pub(super) samples: Vec<Measured>,
    pub(super) attempts: Vec<Attempt>,
}

impl Cell {
    fn ops(&self) -> Vec<u64> {
        self.samples.iter().map(|m| m.ops_per_sec).collect()
    }

    fn summary(&self) -> Summary {
        Summary::of(&self.ops())
    }

    fn total(&self, f: impl Fn(&Measured) -> u64) -> u64 {
        self.samples.iter().map(f).sum()
    }

    /// `num / ops` in hundredths.
    fn per_op_x100(&self, f: impl Fn(&Measured) -> u64) -> Option<u64> {
        let ops = self.total(|m| m.ops);
        (ops > 0).then(|| self.total(f) * 100 / ops)
    }

    /// Mean and largest steal of the kept samples, in hundredths of a
    /// percent.
    fn steal_x100(&self) -> (u64, u64) {
        let n = self.samples.len().max(1) as u64;
        (
            self.total(|m| m.steal_x100) / n,
            self.samples.iter().map(|m| m.steal_x100).max().unwrap_or(0),
        )
    }

    fn reruns(&self) -> usize {
        self.attempts.iter().filter(|a| !a.kept).count()
    }
}

/// How the run was configured, for the report's headers and rows.
pub(super) struct RunInfo {
    pub(super) ns_depth: u32,
    pub(super) rounds: u32,
    pub(super) sample_ms: u32,
    pub(super) placement: Placement,
    pub(super) max_steal: u32,
    pub(super) lockstat: bool,
    pub(super) online: usize,
    pub(super) accel: Option<Accel>,
    /// The host's cores, as the runner saw them (`host_cpus=`).
    pub(super) host_cpus: Option<u32>,
}

/// Whether `workers` keep more vCPUs busy than the host has cores (see
/// [`RunInfo::host_bound`]).
pub(super) fn host_bound(
    placement: Placement,
    online: usize,
    host_cpus: Option<u32>,
    workers: usize,
) -> bool {
    let busy = match placement {
        Placement::Same => workers,
        Placement::Spread => (2 * workers).min(online),
    };
    host_cpus.is_some_and(|h| busy > h as usize)
}

impl RunInfo {
    /// Whether `workers` keep more vCPUs busy than the host has cores: the
    /// host then decides the ratios (a busy vCPU waits for a core), so
    /// the row gets no verdict. Busy: the workers, and under `spread`
    /// the CPUs their threads run on too.
    pub(super) fn host_bound(&self, workers: usize) -> bool {
        host_bound(self.placement, self.online, self.host_cpus, workers)
    }

    /// The `noise?` of a paired comparison at `workers`: `host-bound`, or
    /// what its interval says.
    pub(super) fn verdict(&self, workers: usize, p: &Paired) -> &'static str {
        if self.host_bound(workers) {
            "host-bound"
        } else {
            p.noise().name()
        }
    }
}

pub(super) fn find<'a>(cells: &'a [Cell], workers: usize, name: &str) -> Option<&'a Cell> {
    cells
        .iter()
        .find(|c| c.workers == workers && c.strategy.name == name)
}

/// `a` against `b`: the ratio of means and the paired view.
pub(super) fn compare(a: &Cell, b: &Cell) -> (Option<Ratio>, Option<Paired>) {
    (
        Ratio::of(&a.summary(), &b.summary()),
        Paired::of(&a.ops(), &b.ops()),
    )
}

/// Hundredths as `x.xx`.
pub(super) fn fixed2(v: u64) -> String {
    format!("{}.{:02}", v / 100, v % 100)
}

fn opt_fixed2(v: Option<u64>) -> String {
    v.map_or(String::from("-"), fixed2)
}

pub(super) fn opt(v: Option<u64>) -> String {
    v.map_or(String::new(), |v| format!("{v}"))
}

pub(super) fn print_report(cells: &[Cell], info: &RunInfo) {
    let (_, coverage) = median_interval_rank(info.rounds as u64);
    let tenths = (coverage + 5) / 10;
    let cover = format!("{}.{}%", tenths / 10, tenths % 10);
    println!();
    println!(
        "threadspawn summary (lock {}, ns_depth {}, placement {}, {} rounds x {} ms; ops/s mean ± stdev; vs stock: ratio of means ± spread; paired: median of the rounds' ratios to stock [interval covering {cover}], noise? from it: inside/outside when 1.0 is in/out of it, few under 6 rounds, host-bound when the busy vCPUs outnumber the host's cores (no verdict: the host decides); steal: mean host steal of the kept samples; per op: lock acquisitions (tlist/op needs lockstat=on, which also prints each lock class below))",
        lock_algo().name(),
        info.ns_depth,
        info.placement.name(),
        info.rounds,
        info.sample_ms
    );
    println!(
        "{:>7} {:<13} {:>10} {:>9} {:>15} {:>23} {:>10} {:>6} {:>9} {:>8} {:>6}",
        "workers",
        "strategy",
        "ops/s",
        "stdev",
        "vs stock",
        "paired",
        "noise?",
        "steal",
        "pidmap/op",
        "tlist/op",
        "css/op",
    );
    let mut rows = Vec::new();
    for c in cells {
        let sum = c.summary();
        let is_stock = core::ptr::eq(c.strategy, StrategyPair::stock());
        let (ratio, paired) = match find(cells, c.workers, StrategyPair::stock().name) {
            Some(stock) if !is_stock => compare(c, stock),
            _ => (None, None),
        };
        let (ratio_s, paired_s, noise) = if is_stock {
            (String::from("1.000x"), String::from("1.000x"), "-")
        } else {
            (
                ratio.map_or(String::from("-"), |r| format!("{r}")),
                paired.map_or(String::from("-"), |p| format!("{p}")),
                paired.map_or("-", |p| info.verdict(c.workers, &p)),
            )
        };
        let pidmap = c.per_op_x100(|m| m.pidmap_acq);
        let css = c.per_op_x100(|m| m.css_acq);
        let ls = info.lockstat;
        let tasklist = if ls {
            c.per_op_x100(|m| m.tasklist_acq)
        } else {
            None
        };
        let acq = c.total(|m| m.acquisitions);
        let contended = (ls && acq > 0).then(|| c.total(|m| m.contended) * 10_000 / acq);
        let wait = (ls && acq > 0).then(|| c.total(|m| m.wait_cycles) / acq);
        let hold = (ls && acq > 0).then(|| c.total(|m| m.hold_cycles) / acq);
        let (steal, steal_max) = c.steal_x100();
        println!(
            "{:>7} {:<13} {:>10} {:>9} {:>15} {:>23} {:>10} {:>5}% {:>9} {:>8} {:>6}",
            c.workers,
            c.strategy.name,
            sum.mean,
            sum.stdev,
            ratio_s,
            paired_s,
            noise,
            fixed2(steal),
            opt_fixed2(pidmap),
            opt_fixed2(tasklist),
            opt_fixed2(css),
        );
        let (rv, rs) = match (ratio, is_stock) {
            (_, true) => (format!("{RATIO_ONE}"), String::from("0")),
            (Some(r), _) => (format!("{}", r.value), format!("{}", r.spread)),
            (None, _) => (String::new(), String::new()),
        };
        let (pm, plo, phi) = match (paired, is_stock) {
            (_, true) => (Some(RATIO_ONE), Some(RATIO_ONE), Some(RATIO_ONE)),
            (Some(p), _) => (Some(p.median), Some(p.lo), Some(p.hi)),
            (None, _) => (None, None, None),
        };
        rows.push(format!(
            "threadspawn,{},{},{},{},{},{},{},{},{rv},{rs},{},{},{},{coverage},{noise},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            c.strategy.name,
            c.workers,
            info.ns_depth,
            sum.mean,
            sum.stdev,
            sum.n,
            sum.min,
            sum.max,
            opt(pm),
            opt(plo),
            opt(phi),
            opt_fixed2(pidmap),
            opt_fixed2(tasklist),
            opt(contended),
            opt(wait),
            opt(hold),
            fixed2(steal),
            fixed2(steal_max),
            c.reruns(),
            info.placement.name(),
            info.online,
            accel_name(info.accel),
            lock_algo().name(),
            opt_fixed2(css)
        ));
    }
    let linux = super::linux::print_linux_changes(cells, info, coverage);
    let reruns: usize = cells.iter().map(Cell::reruns).sum();
    let over = cells
        .iter()
        .flat_map(|c| c.samples.iter())
        .filter(|m| m.steal_x100 > info.max_steal as u64 * 100)
        .count();
    println!(
        "re-run: {reruns} samples over max_steal {}% (each at most twice); {over} kept samples still over it",
        info.max_steal
    );
    let line_rows = print_line(cells);
    println!();
    println!(
        "threadspawn,strategy,workers,ns_depth,ops_per_sec,stdev,samples,min,max,ratio_to_stock_x10000,ratio_spread_x10000,paired_ratio_x10000,paired_lo_x10000,paired_hi_x10000,paired_coverage_x10000,noise,pidmap_acq_per_op,tasklist_acq_per_op,contended_x10000,wait_cycles_per_acq,hold_cycles_per_acq,steal_pct,steal_max_pct,reruns,placement,cpus,accel,lock,css_acq_per_op"
    );
    for r in rows {
        println!("{r}");
    }
    println!(
        "threadspawn_linux,change,workers,ns_depth,ratio_x10000,spread_x10000,noise,paired_lo_x10000,paired_hi_x10000,rounds,paired_coverage_x10000,ratio_of_means_x10000,placement,cpus,accel"
    );
    for r in linux {
        println!("{r}");
    }
    println!(
        "threadspawn_sample,strategy,workers,ns_depth,round,attempt,ops_per_sec,steal_pct,kept,placement,cpus,accel,position,half,ms,line_ns"
    );
    for c in cells {
        for a in &c.attempts {
            println!(
                "threadspawn_sample,{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                c.strategy.name,
                c.workers,
                info.ns_depth,
                a.round,
                a.attempt,
                a.ops_per_sec,
                fixed2(a.steal_x100),
                if a.kept { "yes" } else { "no" },
                info.placement.name(),
                info.online,
                accel_name(info.accel),
                a.position,
                a.half,
                a.ms,
                opt(a.line_ns)
            );
        }
    }
    println!(
        "threadspawn_line,strategy,workers,line_ns_median,line_ns_p10,line_ns_p90,ops_line_corr_x100"
    );
    for r in line_rows {
        println!("{r}");
    }
    let vs_linux = super::linux::print_vs_linux(cells, info);
    println!("{}", super::linux::VS_LINUX_HEADER);
    for r in vs_linux {
        println!("{r}");
    }
    if info.lockstat {
        print_lock_classes(cells);
    }
}

/// With `lockstat=on`: every lock class of [`LOCK_CLASSES`] on its own, per
/// version and worker count, as `/proc/lock_stat` splits them: how often
/// an op takes it, how often it had to wait, the mean wait of a contended
/// acquisition and the mean hold (cycles), from the kept samples.
fn print_lock_classes(cells: &[Cell]) {
    println!();
    println!(
        "lock classes (lockstat=on; acq/op: acquisitions per op; contended: share of acquisitions that waited; wait cyc: mean wait of a contended acquisition; hold cyc: mean hold):"
    );
    println!(
        "{:>7} {:<13} {:<16} {:>7} {:>10} {:>9} {:>9}",
        "workers", "strategy", "lock", "acq/op", "contended", "wait cyc", "hold cyc"
    );
    let mut rows = Vec::new();
    for c in cells {
        let ops = c.total(|m| m.ops).max(1);
        for (i, lock) in LOCK_CLASSES.iter().enumerate() {
            let acq = c.total(|m| m.locks[i].acquisitions);
            let contended = c.total(|m| m.locks[i].contended);
            let wait = c.total(|m| m.locks[i].wait_cycles);
            let hold = c.total(|m| m.locks[i].hold_cycles);
            let per_op = acq * 100 / ops;
            let share = contended * 10_000 / acq.max(1);
            let wait_mean = wait / contended.max(1);
            let hold_mean = hold / acq.max(1);
            println!(
                "{:>7} {:<13} {:<16} {:>7} {:>9}% {:>9} {:>9}",
                c.workers,
                c.strategy.name,
                lock,
                fixed2(per_op),
                fixed2(share),
                wait_mean,
                hold_mean
            );
            rows.push(format!(
                "threadspawn_lock,{},{},{lock},{},{share},{wait_mean},{hold_mean}",
                c.strategy.name,
                c.workers,
                fixed2(per_op)
            ));
        }
    }
    println!(
        "threadspawn_lock,version,workers,lock,acq_per_op,contended_x10000,wait_cycles,hold_cycles"
    );
    for r in rows {
        println!("{r}");
    }
}

/// The `q`-quantile (0..=100) of sorted `v` by nearest rank.
fn quantile(v: &[u64], q: usize) -> u64 {
    v[(v.len() - 1) * q / 100]
}

/// With two workers or more: what a cache line's round trip between CPUs
/// 0 and 1 cost around each kept sample (the host's placement of the two
/// vCPUs sets it), per worker count and version, and how the samples'
/// ops/s follow it. Returns the `threadspawn_line` rows.
fn print_line(cells: &[Cell]) -> Vec<String> {
    let mut rows = Vec::new();
    let mut printed_header = false;
    for c in cells {
        let pairs: Vec<(u64, u64)> = c
            .samples
            .iter()
            .filter_map(|m| m.line_ns.map(|l| (l, m.ops_per_sec)))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        if !printed_header {
            println!(
                "line transfer (a cache line's round trip between CPUs 0 and 1 before and after each sample, the lower of the two, ns: where the host runs the two vCPU threads sets it, and it moves from second to second; corr: Pearson's correlation of the rounds' ops/s with it):"
            );
            println!(
                "{:>7} {:<13} {:>8} {:>8} {:>8} {:>6}",
                "workers", "strategy", "median", "p10", "p90", "corr"
            );
            printed_header = true;
        }
        let mut line: Vec<u64> = pairs.iter().map(|p| p.0).collect();
        let ops: Vec<u64> = pairs.iter().map(|p| p.1).collect();
        let corr = correlation_x100(&line, &ops);
        line.sort_unstable();
        let (med, p10, p90) = (
            quantile(&line, 50),
            quantile(&line, 10),
            quantile(&line, 90),
        );
        let corr_s = corr.map_or(String::from("-"), |r| {
            format!(
                "{}{}.{:02}",
                if r < 0 { "-" } else { "" },
                r.abs() / 100,
                r.abs() % 100
            )
        });
        println!(
            "{:>7} {:<13} {:>8} {:>8} {:>8} {:>6}",
            c.workers, c.strategy.name, med, p10, p90, corr_s
        );
        rows.push(format!(
            "threadspawn_line,{},{},{med},{p10},{p90},{}",
            c.strategy.name,
            c.workers,
            corr.map_or(String::new(), |r| format!("{r}"))
        ));
    }
    rows
}
