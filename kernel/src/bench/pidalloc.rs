//! The `pidalloc` benchmark core: single-CPU `alloc_pid` + `free_pid` cost
//! against the number of live pids, for every kernel version.
//!
//! A private root namespace (pid_max 4,194,304, with an init as pid 1 and a
//! reaper, like a booted system) is filled with `live` pinned pids, then
//! each version runs `ops` alloc+free pairs (the `lockless` strategy in a
//! lock-free root of its own, filled alike), in `rounds` interleaved
//! slices so that drift (caches, frequency, the host's other load) hits
//! both alike. The pinned pids were allocated cyclically, so the measured
//! pairs walk the cursor through free space above them and, after a wrap,
//! skip over them: the case the IDR's free bitmaps exist for. The goal is
//! that the cost grows at most 2x from 1k to 1M live pids.
//!
//! Time is [`platform::cycles`] (TSC on the machine, nanoseconds on the
//! host), converted with [`platform::cycles_per_sec`]. Output: a table for
//! people, then `pidalloc,...` CSV rows under a header row, and a growth
//! line per strategy. Callers pick the sizes, so a host test runs it small.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use crate::klib::errno::Errno;
use crate::pid::namespace::Reaper;
use crate::pid::namespace::{PID_MAX_LIMIT, PidNamespace, create_pid_namespace};
use crate::pid::{PidRef, alloc_pid, free_pid, pid_stats_this_cpu};
use crate::platform;
use crate::strategy::{DEFAULT_VERSIONS, LOCKLESS, StrategyPair};
use crate::task::Task;

/// The live-pid counts measured by default: none, then 1k to 1M.
pub(crate) const PIDALLOC_DEFAULT_LIVE: [usize; 4] = [0, 1_000, 100_000, 1_000_000];

/// What to measure.
#[derive(Clone, Debug)]
pub(crate) struct PidallocConfig<'a> {
    /// Live pids (besides init) to measure at, in any order.
    pub(crate) live: &'a [usize],
    /// alloc+free pairs per strategy at each point.
    pub(crate) ops: u64,
    /// Slices the pairs are split into, strategies alternating.
    pub(crate) rounds: u32,
    /// Level of the namespace allocated in (0: the root only; n: n
    /// nested namespaces, each pid getting n + 1 numbers).
    pub(crate) level: u32,
    /// The strategy pairs to measure, in this order.
    pub(crate) strategies: &'a [&'static StrategyPair],
}

/// The Linux versions, what `bench=pidalloc` measures unless told.
static LINUX_VERSIONS: &[&StrategyPair] = &DEFAULT_VERSIONS;

impl Default for PidallocConfig<'_> {
    fn default() -> Self {
        PidallocConfig {
            live: &PIDALLOC_DEFAULT_LIVE,
            ops: 200_000,
            rounds: 10,
            level: 0,
            strategies: LINUX_VERSIONS,
        }
    }
}

/// One id space measured: a root of the kind its strategies need, the
/// namespaces below it, their inits and the pinned pids.
struct Space {
    setup: &'static StrategyPair,
    nss: Vec<Arc<PidNamespace>>,
    inits: Vec<PidRef>,
    pinned: Vec<PidRef>,
}

impl Space {
    fn new(lockfree: bool, level: u32, reaper: &Task) -> Result<Space, Errno> {
        let root = if lockfree {
            PidNamespace::new_root_lockless()
        } else {
            PidNamespace::new_root()
        };
        root.set_pid_max(PID_MAX_LIMIT)?;
        // The pids that are not measured (inits, pinned) come from 7.0's
        // path, or the lock-free one's where only it allocates.
        let setup = if lockfree {
            &LOCKLESS
        } else {
            StrategyPair::by_name("v7.0").expect("7.0 is a version")
        };
        let mut space = Space {
            setup,
            nss: alloc::vec![root],
            inits: Vec::new(),
            pinned: Vec::new(),
        };
        for l in 0..=level {
            let ns = space.ns().clone();
            space.inits.push(alloc_pid(&ns, &[], setup, false)?);
            ns.set_child_reaper(Some(Reaper::of(reaper)));
            if l < level {
                space.nss.push(create_pid_namespace(&ns)?);
            }
        }
        Ok(space)
    }

    /// The namespace measured in (the innermost).
    fn ns(&self) -> &Arc<PidNamespace> {
        self.nss.last().expect("a root")
    }

    fn pin_up_to(&mut self, live: usize) -> Result<(), Errno> {
        while self.pinned.len() < live {
            self.pinned
                .push(alloc_pid(self.ns(), &[], self.setup, false)?);
            if self.pinned.len() % 64 == 0 {
                platform::cond_resched();
            }
        }
        Ok(())
    }

    /// Frees every pid it allocated.
    fn teardown(mut self) {
        // Highest addresses first: the linked-list heap's free walks its
        // free blocks in address order, and the pids still parked in the
        // per-CPU caches sit between the ones going back.
        while let Some(pid) = self.pinned.pop() {
            free_pid(pid, self.setup);
            // Frees can be slow here (the heap's free list is long), so a
            // scheduling point every few.
            if self.pinned.len() % 64 == 0 {
                platform::cond_resched();
            }
        }
        for pid in self.inits.drain(..).rev() {
            free_pid(pid, self.setup);
        }
    }
}

/// One measured point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PidallocRow {
    /// The kernel version measured.
    pub(crate) strategy: &'static StrategyPair,
    /// Live pids besides init.
    pub(crate) live_pids: usize,
    /// alloc+free pairs timed.
    pub(crate) ops: u64,
    /// Cycles for all of them.
    pub(crate) cycles: u64,
    /// Nanoseconds per pair, times 10 (one decimal).
    pub(crate) ns_per_op_x10: u64,
    /// pidmap_lock acquisitions per alloc_pid, times 100.
    pub(crate) locks_per_alloc_x100: u64,
    /// pidmap_lock acquisitions per free_pid, times 100.
    pub(crate) locks_per_free_x100: u64,
}

impl PidallocRow {
    /// Cycles per alloc+free pair.
    pub(crate) fn cycles_per_op(&self) -> u64 {
        self.cycles / self.ops.max(1)
    }
}

struct Dec(u64, u64);

impl fmt::Display for Dec {
    /// `value / scale` with as many decimals as `scale` has zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Dec(v, scale) = *self;
        let width = scale.ilog10() as usize;
        // Through `pad`, so the table's column widths apply.
        f.pad(&alloc::format!("{}.{:0width$}", v / scale, v % scale))
    }
}

/// Header of the CSV rows.
pub(crate) const PIDALLOC_CSV_HEADER: &str = "pidalloc,strategy,live_pids,ns_per_op,cycles_per_op,ops,locks_per_alloc,locks_per_free,level,cycles_per_sec";

/// Runs the benchmark and prints it to `out`. Errors are `alloc_pid`'s
/// (e.g. ENOMEM when the heap cannot hold the live pids).
pub(crate) fn pidalloc(
    cfg: &PidallocConfig<'_>,
    out: &mut dyn Write,
) -> Result<Vec<PidallocRow>, Errno> {
    let mut sizes: Vec<usize> = cfg.live.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    let rounds = cfg.rounds.max(1) as u64;
    let per_round = (cfg.ops / rounds).max(1);
    let hz = platform::cycles_per_sec();

    // Each level's reaper; declared first so it outlives the namespaces.
    let reaper = Task::adopt("pidalloc-reaper", platform::cpu_id()).map_err(|_| Errno::ENOMEM)?;
    let strategies = cfg.strategies;
    // Indexed by `lockless()`: the Linux versions' space, the lock-free one;
    // each built only if a strategy measured needs it.
    let mut spaces: [Option<Space>; 2] = [None, None];
    for lockfree in [false, true] {
        if strategies.iter().any(|s| s.lockless() == lockfree) {
            spaces[usize::from(lockfree)] = Some(Space::new(lockfree, cfg.level, &reaper)?);
        }
    }
    // The namespace each kind measures in.
    let nss = spaces
        .each_ref()
        .map(|sp| sp.as_ref().map(|sp| sp.ns().clone()));
    let ns_of = |s: &StrategyPair| -> &PidNamespace {
        nss[usize::from(s.lockless())]
            .as_deref()
            .expect("built above")
    };

    let _ = writeln!(
        out,
        "pidalloc: alloc_pid+free_pid on one CPU, namespace level {}, pid_max {}, {} pairs per point in {} interleaved rounds, {} cycles/s; live pids do not count the init",
        cfg.level,
        PID_MAX_LIMIT,
        per_round * rounds,
        rounds,
        hz
    );
    let _ = writeln!(
        out,
        "  {:<12} {:>10} {:>10} {:>10} {:>12} {:>11}",
        "strategy", "live_pids", "ns/op", "cycles/op", "locks/alloc", "locks/free"
    );
    let mut rows = Vec::new();
    let result = (|| {
        for &live in &sizes {
            for space in spaces.iter_mut().flatten() {
                space.pin_up_to(live)?;
            }
            let mut acc = alloc::vec![(0u64, 0u64, 0u64, 0u64); strategies.len()];
            // Warm up every path (caches, the preload pool).
            for &strategy in strategies {
                let ns = ns_of(strategy);
                for _ in 0..per_round.min(1000) {
                    free_pid(alloc_pid(ns, &[], strategy, false)?, strategy);
                }
            }
            for _ in 0..rounds {
                for (i, &strategy) in strategies.iter().enumerate() {
                    let ns = ns_of(strategy);
                    let s0 = pid_stats_this_cpu();
                    let t0 = platform::cycles();
                    for i in 0..per_round {
                        free_pid(alloc_pid(ns, &[], strategy, false)?, strategy);
                        // A scheduling point, where RCU callbacks (the
                        // freed pids and IDR nodes) run, as in a kernel
                        // loop that calls cond_resched().
                        if i % 64 == 63 {
                            platform::cond_resched();
                        }
                    }
                    let t1 = platform::cycles();
                    let d = pid_stats_this_cpu().since(&s0);
                    acc[i].0 += t1 - t0;
                    acc[i].1 += d.alloc_locks;
                    acc[i].2 += d.free_locks;
                    acc[i].3 += per_round;
                    platform::cond_resched();
                }
            }
            for (i, &strategy) in strategies.iter().enumerate() {
                let (cycles, alloc_locks, free_locks, ops) = acc[i];
                let row = PidallocRow {
                    strategy,
                    live_pids: live,
                    ops,
                    cycles,
                    ns_per_op_x10: (u128::from(cycles) * 10_000_000_000
                        / (u128::from(hz.max(1)) * u128::from(ops)))
                        as u64,
                    locks_per_alloc_x100: alloc_locks * 100 / ops,
                    locks_per_free_x100: free_locks * 100 / ops,
                };
                let _ = writeln!(
                    out,
                    "  {:<12} {:>10} {:>10} {:>10} {:>12} {:>11}",
                    strategy.name,
                    live,
                    Dec(row.ns_per_op_x10, 10),
                    row.cycles_per_op(),
                    Dec(row.locks_per_alloc_x100, 100),
                    Dec(row.locks_per_free_x100, 100)
                );
                rows.push(row);
            }
        }
        Ok(())
    })();
    for space in spaces.into_iter().flatten() {
        space.teardown();
    }
    result?;

    let _ = writeln!(out, "{PIDALLOC_CSV_HEADER}");
    for r in &rows {
        let _ = writeln!(
            out,
            "pidalloc,{},{},{},{},{},{},{},{},{}",
            r.strategy.name,
            r.live_pids,
            Dec(r.ns_per_op_x10, 10),
            r.cycles_per_op(),
            r.ops,
            Dec(r.locks_per_alloc_x100, 100),
            Dec(r.locks_per_free_x100, 100),
            cfg.level,
            hz
        );
    }
    if let (Some(&lo), Some(&hi)) = (sizes.iter().find(|&&s| s > 0), sizes.last()) {
        for &strategy in strategies {
            let at = |live| {
                rows.iter()
                    .find(|r| core::ptr::eq(r.strategy, strategy) && r.live_pids == live)
                    .map(|r| r.cycles)
            };
            if let (Some(a), Some(b)) = (at(lo), at(hi))
                && lo != hi
            {
                let _ = writeln!(
                    out,
                    "pidalloc: {} cost at {} live pids is {}x that at {} (goal: at most 2x)",
                    strategy.name,
                    hi,
                    Dec(b * 100 / a.max(1), 100),
                    lo
                );
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::AllocPidStrategy;
    use alloc::string::String;

    #[test]
    fn decimals_fill_the_table_columns() {
        assert_eq!(alloc::format!("{:>8}|", Dec(12345, 10)), "  1234.5|");
        assert_eq!(alloc::format!("{}", Dec(7, 100)), "0.07");
    }

    /// Every pair: the Linux versions and the lock-free one.
    fn all() -> Vec<&'static StrategyPair> {
        StrategyPair::all().collect()
    }

    #[test]
    fn small_run_prints_rows_for_every_point() {
        let all = all();
        let n = all.len();
        let cfg = PidallocConfig {
            live: &[1000, 0, 100],
            ops: 2000,
            rounds: 2,
            level: 0,
            strategies: &all,
        };
        let mut out = String::new();
        let rows = pidalloc(&cfg, &mut out).unwrap();
        assert_eq!(rows.len(), 3 * n);
        let csv: Vec<&str> = out.lines().filter(|l| l.starts_with("pidalloc,")).collect();
        assert_eq!(csv[0], PIDALLOC_CSV_HEADER);
        assert_eq!(csv.len(), 1 + 3 * n);
        for (line, row) in csv[1..].iter().zip(&rows) {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), PIDALLOC_CSV_HEADER.split(',').count());
            assert_eq!(f[1], row.strategy.name);
            assert_eq!(f[2].parse::<usize>().unwrap(), row.live_pids);
            assert!(f[3].parse::<f64>().unwrap() > 0.0);
            assert_eq!(f[5], "2000");
        }
        let by = |s: AllocPidStrategy| rows.iter().filter(move |r| r.strategy.alloc == s);
        assert!(by(AllocPidStrategy::Stock).all(|r| r.locks_per_alloc_x100 == 200));
        // One insertion never needs more than a full pool: no re-preloads.
        assert!(
            by(AllocPidStrategy::SingleLock).all(|r| r.locks_per_alloc_x100 == 100),
            "{out}"
        );
        assert!(by(AllocPidStrategy::Lockless).all(|r| r.locks_per_alloc_x100 == 0));
        assert!(
            rows.iter()
                .all(|r| r.locks_per_free_x100 == if r.strategy.lockless() { 0 } else { 100 })
        );
        assert_eq!(
            rows.iter().map(|r| r.live_pids).collect::<Vec<_>>(),
            [vec![0; n], vec![100; n], vec![1000; n]].concat()
        );
        assert!(out.contains("at most 2x"), "{out}");
    }

    #[test]
    fn nested_namespace_counts_locks_per_level() {
        let all = all();
        let cfg = PidallocConfig {
            live: &[0, 100],
            ops: 1000,
            rounds: 1,
            level: 1,
            strategies: &all,
        };
        let rows = pidalloc(&cfg, &mut String::new()).unwrap();
        for r in rows {
            match r.strategy.alloc {
                AllocPidStrategy::Stock => assert_eq!(r.locks_per_alloc_x100, 300),
                // With few live pids the cursor runs into ids that need a
                // taller tree at both levels (4 nodes each): more than one
                // pool's worth, so the second level re-preloads.
                AllocPidStrategy::SingleLock => {
                    assert!((100..200).contains(&r.locks_per_alloc_x100), "{r:?}")
                }
                AllocPidStrategy::Lockless => assert_eq!(r.locks_per_alloc_x100, 0),
            }
        }
    }

    /// The full benchmark on the host:
    /// `cargo test --release -p pidlab-kernel pidalloc_full -- --ignored --nocapture`
    #[test]
    #[ignore = "takes seconds; run by hand with --release"]
    fn pidalloc_full() {
        let mut out = String::new();
        let r = pidalloc(&PidallocConfig::default(), &mut out);
        std::print!("{out}");
        r.unwrap();
    }
}
