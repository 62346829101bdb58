//! `bench=threadspawn`: will-it-scale's `threadspawn1` inside the kernel.
//!
//! Each worker is a process pinned to its own CPU (worker `i` on CPU `i`)
//! in the innermost namespace of an `ns_depth` chain. It loops: create a
//! thread that does nothing (`copy_process` with `CLONE_THREAD`: alloc_pid,
//! tasklist_lock), wait for it to exit and release itself (`release_task`),
//! count one op. A sample runs every worker for `sample_ms`; the four
//! strategy pairs are interleaved sample by sample (A B C D A B C D ...), so
//! drift hits all alike. CPUs outside the worker set idle in `hlt`.
//!
//! The loop prints nothing, allocates from the per-CPU caches only, and
//! pays for lock statistics only with `lockstat=on`. pidmap_lock
//! acquisitions per op come from the pid code's own per-CPU counters
//! (always on); tasklist_lock's, contention and wait/hold cycles need
//! lockstat.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::arch::{smp, time};
use crate::bench::placement::{Placement, Placer};
use crate::bench::stats::{RATIO_ONE, Ratio, Summary};
use crate::cmdline::{Accel, ThreadspawnParams, accel_name};
use crate::pid::namespace::{PidNamespace, create_pid_namespace};
use crate::pid::pid_stats_total;
use crate::platform;
use crate::selftest::invariants::{Baseline, heap_fallthroughs};
use crate::strategy::StrategyPair;
use crate::sync::lockstat;
use crate::task::exit::{park, request_exit};
use crate::task::fork::{CloneArgs, copy_process, current_ns};
use crate::task::sched;
use crate::task::nr_tasks;
use crate::task::stats::{ProcStats, proc_stats, proc_stats_cpu};
use crate::task::wait::wait_child;

/// What one sample's workers share.
struct Sample {
    workers: usize,
    online: usize,
    placement: Placement,
    strategy: &'static StrategyPair,
    sample_cycles: u64,
    arrived: AtomicUsize,
    start: AtomicU64,
    ops: AtomicU64,
    /// Sum over workers of ops per second (each over its own elapsed time).
    ops_per_sec: AtomicU64,
    failures: AtomicU64,
}

fn nothing(_: usize) {}

fn worker(arg: usize) {
    // SAFETY: `arg` is the `Sample` on the driver's stack; the driver reaps
    // every worker before it returns.
    let s = unsafe { &*(arg as *const Sample) };
    // Start together: the last to arrive stamps the start time.
    if s.arrived.fetch_add(1, Ordering::AcqRel) + 1 == s.workers {
        s.start.store(platform::cycles(), Ordering::Release);
    }
    let mut start = s.start.load(Ordering::Acquire);
    while start == 0 {
        platform::cpu_relax();
        start = s.start.load(Ordering::Acquire);
    }
    let deadline = start + s.sample_cycles;
    let mut args = CloneArgs::new("thread", nothing, 0);
    args.thread = true;
    args.strategy = s.strategy;
    let mut placer = Placer::new(s.placement, platform::cpu_id(), s.workers, s.online);
    let mut ops = 0u64;
    let mut failures = 0u64;
    let mut now = platform::cycles();
    while now < deadline {
        args.cpu = Some(placer.next_cpu(s.online));
        match copy_process(&args) {
            Ok(t) => {
                sched::join(&t);
                ops += 1;
            }
            Err(_) => failures += 1,
        }
        now = platform::cycles();
    }
    let elapsed_ns = time::cycles_to_ns(now - start).max(1);
    s.ops.fetch_add(ops, Ordering::Relaxed);
    s.failures.fetch_add(failures, Ordering::Relaxed);
    s.ops_per_sec.fetch_add(
        (ops as u128 * 1_000_000_000 / elapsed_ns as u128) as u64,
        Ordering::Relaxed,
    );
}

/// One sample's numbers.
#[derive(Clone, Copy, Default)]
struct Measured {
    ops_per_sec: u64,
    ops: u64,
    pidmap_acq: u64,
    tasklist_acq: u64,
    contended: u64,
    acquisitions: u64,
    wait_cycles: u64,
    hold_cycles: u64,
    failures: u64,
}

fn run_sample(
    ns: &Arc<PidNamespace>,
    workers: usize,
    strategy: &'static StrategyPair,
    sample_ms: u32,
    placement: Placement,
) -> Result<Measured, String> {
    let s = Sample {
        workers,
        online: smp::online(),
        placement,
        strategy,
        sample_cycles: time::ns_to_cycles(sample_ms as u64 * 1_000_000),
        arrived: AtomicUsize::new(0),
        start: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        ops_per_sec: AtomicU64::new(0),
        failures: AtomicU64::new(0),
    };
    let pid_before = pid_stats_total();
    let procs_before = proc_stats();
    let tasks_before = nr_tasks();
    if lockstat::enabled() {
        lockstat::reset();
    }
    for cpu in 0..workers {
        let mut args = CloneArgs::new("worker", worker, &s as *const Sample as usize);
        args.cpu = Some(cpu);
        args.pid_ns = Some(ns);
        if let Err(e) = copy_process(&args) {
            panic!("threadspawn: cannot start worker {cpu}: {e:?}");
        }
    }
    for _ in 0..workers {
        wait_child(None, true).expect("threadspawn: a worker to reap");
    }
    drain(&procs_before, tasks_before)?;
    let pid_after = pid_stats_total().since(&pid_before);
    let mut m = Measured {
        ops_per_sec: s.ops_per_sec.load(Ordering::Relaxed),
        ops: s.ops.load(Ordering::Relaxed),
        failures: s.failures.load(Ordering::Relaxed),
        ..Measured::default()
    };
    // Includes each worker's own spawn and reap (one per worker per
    // sample, next to thousands of ops).
    m.pidmap_acq = pid_after.alloc_locks + pid_after.free_locks;
    if lockstat::enabled() {
        for name in ["pidmap_lock", "tasklist_lock"] {
            if let Some(st) = lockstat::read(name) {
                if name == "tasklist_lock" {
                    m.tasklist_acq = st.acquisitions();
                }
                for c in [st.exclusive, st.shared] {
                    m.acquisitions += c.acquisitions;
                    m.contended += c.contended;
                    m.wait_cycles += c.wait_cycles_total;
                    m.hold_cycles += c.hold_cycles_total;
                }
            }
        }
    }
    Ok(m)
}

/// How long the releases still in flight after a sample may take.
const DRAIN_MS: u64 = 10_000;

/// Waits until every process forked since `before` has been released and
/// freed: a worker's join returns at its thread's `mm_release`, so the
/// last threads' `release_task` may still run when the workers are gone
/// (their leader was reaped only after each thread's pids were detached;
/// the rest of `release_task`, the deferred frees, and the freeing of the
/// task by its CPU's next switch come after). Nothing of one sample runs
/// into the next.
fn drain(before: &ProcStats, tasks_before: usize) -> Result<(), String> {
    let limit = platform::cycles() + time::ns_to_cycles(DRAIN_MS * 1_000_000);
    loop {
        let now = proc_stats();
        let in_flight = (now.forks - before.forks).saturating_sub(now.releases - before.releases);
        let tasks = nr_tasks();
        if in_flight == 0 && tasks <= tasks_before {
            return Ok(());
        }
        if platform::cycles() > limit {
            return Err(format!(
                "{in_flight} releases still in flight and {} tasks not freed {DRAIN_MS} ms after the sample",
                tasks.saturating_sub(tasks_before)
            ));
        }
        platform::cpu_relax();
    }
}

/// Per (workers, strategy): the samples.
struct Cell {
    workers: usize,
    strategy: &'static StrategyPair,
    samples: Vec<Measured>,
}

impl Cell {
    fn summary(&self) -> Summary {
        let v: Vec<u64> = self.samples.iter().map(|m| m.ops_per_sec).collect();
        Summary::of(&v)
    }

    fn total(&self, f: impl Fn(&Measured) -> u64) -> u64 {
        self.samples.iter().map(f).sum()
    }

    /// `num / ops` in hundredths.
    fn per_op_x100(&self, f: impl Fn(&Measured) -> u64) -> Option<u64> {
        let ops = self.total(|m| m.ops);
        (ops > 0).then(|| self.total(f) * 100 / ops)
    }
}

fn fixed2(v: Option<u64>) -> String {
    match v {
        Some(v) => format!("{}.{:02}", v / 100, v % 100),
        None => String::from("-"),
    }
}

/// Runs the benchmark as configured and prints its report; an error for a
/// configuration the machine cannot run or a failed invariant check.
pub fn run(p: &ThreadspawnParams, accel: Option<Accel>) -> Result<(), String> {
    let online = smp::online();
    let workers: Vec<usize> = match &p.workers {
        Some(list) => list.iter().map(|&w| w as usize).collect(),
        None => [1, 2, 4, 8].into_iter().filter(|&w| w <= online).collect(),
    };
    if let Some(&w) = workers.iter().find(|&&w| w > online) {
        return Err(format!(
            "workers={w} needs {w} CPUs, {online} online (run with --smp {w} or more)"
        ));
    }
    let strategies = &p.strategies;
    let names: Vec<&str> = strategies.iter().map(|s| s.name).collect();
    let wl: Vec<String> = workers.iter().map(|w| format!("{w}")).collect();
    println!(
        "threadspawn: {online} cpus online, workers {}, strategies {}, {} samples x {} ms after 1 warm-up round, ns_depth {}, accel {}, lockstat {}",
        wl.join(","),
        names.join(","),
        p.samples,
        p.sample_ms,
        p.ns_depth,
        accel_name(accel),
        if p.lockstat { "on" } else { "off" }
    );
    println!(
        "threadspawn: each op = copy_process(CLONE_THREAD) + the thread's exit and self-release + join; pairs are alloc_pid x release_task: stock = Stock x Stock, pidmap-once = SingleLock x Stock, exit-deferred = Stock x Deferred, both = SingleLock x Deferred"
    );

    let base = Baseline::take();
    let heap_before = heap_fallthroughs();
    let forks_before = proc_stats().forks;
    // The namespace chain, each level with a parked init (pid 1 there).
    let mut chain = Vec::new();
    let mut ns = current_ns();
    for _ in 0..p.ns_depth {
        let child = create_pid_namespace(&ns).map_err(|e| format!("ns_depth: {e:?}"))?;
        let mut args = CloneArgs::new("nsinit", park, 0);
        args.pid_ns = Some(&child);
        let init = copy_process(&args).map_err(|e| format!("ns init: {e:?}"))?;
        chain.push(init);
        ns = child;
    }
    let was = lockstat::set_enabled(p.lockstat);

    let mut cells: Vec<Cell> = Vec::new();
    for &w in &workers {
        for &s in strategies {
            cells.push(Cell {
                workers: w,
                strategy: s,
                samples: Vec::new(),
            });
        }
        // Warm-up: one short round of every strategy.
        for &s in strategies {
            run_sample(&ns, w, s, p.sample_ms.min(200), p.placement)?;
        }
        for round in 0..p.samples {
            for &s in strategies {
                let m = run_sample(&ns, w, s, p.sample_ms, p.placement)?;
                println!(
                    "threadspawn: workers {w} sample {}/{} {}: {} ops/s{}",
                    round + 1,
                    p.samples,
                    s.name,
                    m.ops_per_sec,
                    if m.failures > 0 {
                        format!(" ({} failed spawns)", m.failures)
                    } else {
                        String::new()
                    }
                );
                cells
                    .iter_mut()
                    .find(|c| c.workers == w && core::ptr::eq(c.strategy, s))
                    .expect("cell")
                    .samples
                    .push(m);
            }
        }
    }
    lockstat::set_enabled(was);
    while let Some(init) = chain.pop() {
        request_exit(&init, 0);
        wait_child(Some(&init), true).map_err(|e| format!("reaping ns init: {e:?}"))?;
    }
    drop(ns);

    print_report(&cells, p, online, accel);
    println!();
    for cpu in 0..online {
        let st = proc_stats_cpu(cpu);
        println!(
            "spawn/reap cpu {cpu}: {} tasks spawned, {} released, {} failed spawns, {} ran here (since boot)",
            st.forks, st.releases, st.fork_failures, st.ran
        );
    }
    let forks = proc_stats().forks - forks_before;
    let heap = heap_fallthroughs();
    let d: Vec<u64> = heap.iter().zip(heap_before).map(|(a, b)| a - b).collect();
    println!(
        "spawn/reap: global-heap fall-throughs in {forks} spawns: tasks {}, stacks {}, pids {}, IDR nodes {}",
        d[0], d[1], d[2], d[3]
    );
    base.check().map_err(|e| format!("invariants: {e}"))?;
    println!("invariants: ok");
    Ok(())
}

fn print_report(cells: &[Cell], p: &ThreadspawnParams, online: usize, accel: Option<Accel>) {
    println!();
    println!(
        "threadspawn summary (ns_depth {}, {} samples x {} ms, ops/s mean ± stdev; ratio to stock ± spread; per op: lock acquisitions; lockstat columns need lockstat=on)",
        p.ns_depth, p.samples, p.sample_ms
    );
    println!(
        "{:>7} {:<13} {:>10} {:>9} {:>17} {:>7} {:>9} {:>9} {:>10} {:>9} {:>9}",
        "workers",
        "strategy",
        "ops/s",
        "stdev",
        "vs stock",
        "noise?",
        "pidmap/op",
        "tlist/op",
        "contended",
        "wait cyc",
        "hold cyc"
    );
    let mut rows = Vec::new();
    for c in cells {
        let sum = c.summary();
        let stock = cells
            .iter()
            .find(|o| o.workers == c.workers && core::ptr::eq(o.strategy, StrategyPair::stock()))
            .map(Cell::summary);
        let ratio = stock.and_then(|st| Ratio::of(&sum, &st));
        let is_stock = core::ptr::eq(c.strategy, StrategyPair::stock());
        let (ratio_s, noise) = match (ratio, is_stock) {
            (_, true) => (String::from("1.000x"), "-"),
            (Some(r), _) => (
                format!("{r}"),
                if r.inside_noise() {
                    "inside"
                } else {
                    "outside"
                },
            ),
            (None, _) => (String::from("-"), "-"),
        };
        let pidmap = c.per_op_x100(|m| m.pidmap_acq);
        let ls = p.lockstat;
        let tasklist = if ls {
            c.per_op_x100(|m| m.tasklist_acq)
        } else {
            None
        };
        let acq = c.total(|m| m.acquisitions);
        let contended = (ls && acq > 0).then(|| c.total(|m| m.contended) * 10_000 / acq);
        let wait = (ls && acq > 0).then(|| c.total(|m| m.wait_cycles) / acq.max(1));
        let hold = (ls && acq > 0).then(|| c.total(|m| m.hold_cycles) / acq.max(1));
        let opt = |v: Option<u64>| v.map_or(String::from("-"), |v| format!("{v}"));
        let pct = |v: Option<u64>| {
            v.map_or(String::from("-"), |v| {
                format!("{}.{:02}%", v / 100, v % 100)
            })
        };
        println!(
            "{:>7} {:<13} {:>10} {:>9} {:>17} {:>7} {:>9} {:>9} {:>10} {:>9} {:>9}",
            c.workers,
            c.strategy.name,
            sum.mean,
            sum.stdev,
            ratio_s,
            noise,
            fixed2(pidmap),
            fixed2(tasklist),
            pct(contended),
            opt(wait),
            opt(hold)
        );
        let (rv, rs) = match (ratio, is_stock) {
            (_, true) => (format!("{}", RATIO_ONE), String::from("0")),
            (Some(r), _) => (format!("{}", r.value), format!("{}", r.spread)),
            (None, _) => (String::new(), String::new()),
        };
        rows.push(format!(
            "threadspawn,{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            c.strategy.name,
            c.workers,
            p.ns_depth,
            sum.mean,
            sum.stdev,
            sum.n,
            sum.min,
            sum.max,
            rv,
            rs,
            noise,
            fixed2(pidmap),
            fixed2(tasklist),
            contended.map_or(String::new(), |v| format!("{v}")),
            wait.map_or(String::new(), |v| format!("{v}")),
            hold.map_or(String::new(), |v| format!("{v}")),
            online,
            accel_name(accel)
        ));
    }
    println!();
    println!(
        "threadspawn,strategy,workers,ns_depth,ops_per_sec,stdev,samples,min,max,ratio_to_stock_x10000,ratio_spread_x10000,noise,pidmap_acq_per_op,tasklist_acq_per_op,contended_x10000,wait_cycles_per_acq,hold_cycles_per_acq,cpus,accel"
    );
    for r in rows {
        println!("{r}");
    }
}
