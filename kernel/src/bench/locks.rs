//! The lock microbenchmark core behind `bench=locks`.
//!
//! It compares the spinlock algorithms `lock=` can choose, the kernel's
//! dispatched spinlock, the lock disciplines and lockstat, and the rwlock
//! behind `tasklist_lock`, so a choice between them rests on numbers from
//! the machine at hand. Two measurements, [`uncontended`] (the cost of one
//! lock+unlock pair on one CPU) and [`contended`] (throughput and fairness
//! of one lock hammered by several CPUs), each printed by
//! [`run_locks_bench`] as a human table and as CSV rows under
//! [`LOCKS_CSV_HEADER`] (`locks,<lock>,<cpus>,<ops_per_sec>,...`).
//!
//! All spin with `platform::cpu_relax` (`pause`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::platform::{self, Parallel};
use crate::sync::choice::{LockAlgo, lock_algo};
use crate::sync::debug::LOCKDEBUG;
use crate::sync::irq::{Irq, IrqDiscipline, IrqLock, IrqSave, Plain};
use crate::sync::pvticket::PvTickets;
use crate::sync::qspinlock::QSpin;
use crate::sync::raw::{ConstInit, RawSpinLock, SpinProtocol};
use crate::sync::tas::Tas;
use crate::sync::ticket::Tickets;
use crate::sync::{lockstat, named_rwlock_irq, named_spin_lock};

/// The CSV header row printed above the `locks,...` rows.
pub(crate) const LOCKS_CSV_HEADER: &str = "locks,lock,cpus,ops_per_sec,cycles_per_op,bench,ops,millis,min_share_pct,max_share_pct,lockdebug";

/// How long and how wide to run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocksBenchParams {
    /// Duration of each contended point, in milliseconds.
    pub(crate) millis: u64,
    /// Lock+unlock pairs per uncontended measurement.
    pub(crate) uncontended_ops: u64,
    /// Most CPUs to use (also capped at `Parallel::cpus()`).
    pub(crate) max_cpus: usize,
}

impl Default for LocksBenchParams {
    fn default() -> Self {
        LocksBenchParams {
            millis: 1000,
            uncontended_ops: 1_000_000,
            max_cpus: 8,
        }
    }
}

/// One measured point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LocksRow {
    /// An algorithm's name, `dispatch:<algo>`, `ticket+lockstat`,
    /// `ticket_irq`, `ticket_irqsave`, `rwlock_read` or `rwlock_write_irq`.
    pub(crate) lock: &'static str,
    pub(crate) cpus: usize,
    /// `uncontended` or `contended`.
    pub(crate) bench: &'static str,
    /// Lock+unlock pairs completed, over all CPUs.
    pub(crate) ops: u64,
    /// Wall cycles the ops took: TSC cycles on the machine, nanoseconds on
    /// the host.
    pub(crate) cycles: u64,
    /// The clock rate used to turn cycles into time (before TSC calibration
    /// a 1 GHz clock is assumed, and the run says so).
    pub(crate) cycles_per_sec: u64,
    /// Least and most ops of one CPU, in percent of the per-CPU mean.
    pub(crate) min_share_pct: u64,
    pub(crate) max_share_pct: u64,
}

impl LocksRow {
    /// Completed ops per second, over all CPUs.
    pub(crate) fn ops_per_sec(&self) -> u64 {
        (self.ops as u128 * self.cycles_per_sec as u128 / self.cycles.max(1) as u128) as u64
    }

    /// Wall cycles per op, in tenths.
    pub(crate) fn cycles_per_op_x10(&self) -> u64 {
        self.cycles.saturating_mul(10) / self.ops.max(1)
    }

    /// Milliseconds the point ran.
    pub(crate) fn millis(&self) -> u64 {
        (self.cycles as u128 * 1000 / self.cycles_per_sec.max(1) as u128) as u64
    }

    /// The row under [`LOCKS_CSV_HEADER`].
    pub(crate) fn csv(&self) -> String {
        let cpo = self.cycles_per_op_x10();
        format!(
            "locks,{},{},{},{}.{},{},{},{},{},{},{}",
            self.lock,
            self.cpus,
            self.ops_per_sec(),
            cpo / 10,
            cpo % 10,
            self.bench,
            self.ops,
            self.millis(),
            self.min_share_pct,
            self.max_share_pct,
            u8::from(LOCKDEBUG)
        )
    }
}

/// A counter under algorithm `P` taken with discipline `D`.
type Counter<P, D> = lock_api::Mutex<IrqLock<RawSpinLock<P>, D>, u64>;

fn counter<P: SpinProtocol + ConstInit, D: IrqDiscipline>(
    name: &'static str,
) -> Padded<Counter<P, D>> {
    Padded(lock_api::Mutex::from_raw(
        IrqLock::new(RawSpinLock::named(name)),
        0,
    ))
}

/// The row name of the kernel's dispatched spinlock under `algo`.
fn dispatch_name(algo: LockAlgo) -> &'static str {
    match algo {
        LockAlgo::Ticket => "dispatch:ticket",
        LockAlgo::PvTicket => "dispatch:pv-ticket",
        LockAlgo::Qspinlock => "dispatch:qspinlock",
        LockAlgo::Tas => "dispatch:tas",
    }
}

/// Keeps a benchmarked lock off the cache lines of the harness's counters.
#[repr(align(128))]
struct Padded<T>(T);

/// CPU counts to measure: 1, 2, 4, 8 up to `max`, plus `max` itself.
fn cpu_counts(max: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = [1, 2, 4, 8].into_iter().filter(|&n| n <= max).collect();
    if max >= 1 && !counts.contains(&max) {
        counts.push(max);
    }
    counts
}

/// One uncontended flavour: its row name, whether its lock needs IRQs on
/// (an `_irq` unlock enables them), whether lockstat is on, and `n`
/// lock+unlock pairs ([`pairs`]: the pair is inlined in the loop, so the
/// timed loop pays no call per pair).
struct Flavour<'a> {
    name: &'static str,
    needs_irqs: bool,
    lockstat: bool,
    run: &'a (dyn Fn(u64) + Sync),
}

/// `n` runs of `op`, monomorphised so the loop holds `op` inlined.
fn pairs<F: Fn() + Sync>(op: &F) -> impl Fn(u64) + Sync + '_ {
    move |n| {
        for _ in 0..n {
            op();
        }
    }
}

/// Passes over all uncontended flavours; each row keeps its fastest.
const UNCONTENDED_PASSES: u64 = 5;

/// The **uncontended** measurement: one CPU takes and releases a lock it
/// alone uses, timed with `platform::cycles()`.
///
/// Measures every flavour on one CPU, `ops` pairs each, in
/// [`UNCONTENDED_PASSES`] interleaved passes of `ops / passes` pairs; a
/// row's cycles are its fastest pass's, scaled to `ops`, so a pass the host
/// preempted does not count and drift hits all flavours alike; the row's
/// `cycles_per_op` is the cost of one lock+unlock pair. A flavour that
/// needs IRQs on is skipped where they are off.
///
/// Rows: each algorithm in its own type (`ticket`, `pv-ticket`,
/// `qspinlock`, `tas`), the kernel's spinlock (`dispatch:<algo>`, the
/// algorithm `lock=` chose, reached through the run-time dispatch: the
/// difference from the `<algo>` row is what the dispatch costs), the ticket
/// lock with lockstat on and in its `_irq`/`_irqsave` disciplines, and the
/// rwlock's `read_lock` and `write_lock_irq`.
fn uncontended(par: &dyn Parallel, flavours: &[Flavour<'_>], ops: u64, cps: u64) -> Vec<LocksRow> {
    let per_pass = (ops / UNCONTENDED_PASSES).max(1);
    let best: Vec<AtomicU64> = flavours.iter().map(|_| AtomicU64::new(u64::MAX)).collect();
    for _ in 0..UNCONTENDED_PASSES {
        for (f, best) in flavours.iter().zip(&best) {
            let was = lockstat::set_enabled(f.lockstat);
            par.run(1, &|_| {
                if f.needs_irqs && !platform::irqs_enabled() {
                    return;
                }
                (f.run)(per_pass.min(1000));
                let t0 = platform::cycles();
                (f.run)(per_pass);
                best.fetch_min(platform::cycles() - t0, Ordering::Relaxed);
            });
            lockstat::set_enabled(was);
        }
    }
    let mut rows = Vec::new();
    for (f, best) in flavours.iter().zip(&best) {
        let cycles = best.load(Ordering::Relaxed);
        if cycles == u64::MAX {
            println!("locks: {}: skipped (IRQs are off on the bench CPU)", f.name);
            continue;
        }
        rows.push(LocksRow {
            lock: f.name,
            cpus: 1,
            bench: "uncontended",
            ops: per_pass * UNCONTENDED_PASSES,
            cycles: cycles * UNCONTENDED_PASSES,
            cycles_per_sec: cps,
            min_share_pct: 100,
            max_share_pct: 100,
        });
    }
    rows
}

/// The **contended** measurement: runs `op` on `n` CPUs at once for
/// `budget` cycles (timed by CPU 0), each CPU incrementing a plain counter
/// inside one lock. The row's `ops_per_sec` is the total over all CPUs,
/// `cycles_per_op` the wall cycles per critical section (the hand-off
/// cost), and the min/max share columns say how fairly the lock served the
/// CPUs (each CPU's ops as a percentage of the mean).
///
/// Bounded by time, not by a count of ops: CPU 0 reads the clock after
/// every batch of ops, and the batch shrinks to 1 as soon as one batch takes
/// longer than a hundredth of the budget. So when hand-offs collapse (a FIFO
/// lock whose next waiter is a descheduled vCPU, each op waiting out a host
/// time slice) the point still ends within about one op of the budget, and
/// reports the few ops it managed. The elapsed time runs until every CPU has
/// finished its last op, so every counted op happened inside it.
fn contended(
    par: &dyn Parallel,
    name: &'static str,
    n: usize,
    budget: u64,
    cps: u64,
    op: &(impl Fn() + Sync),
) -> LocksRow {
    /// CPU 0 reads the clock at most once per this many ops.
    const MAX_BATCH: u64 = 64;
    let slow_batch = (budget / 100).max(1);
    let arrived = Padded(AtomicUsize::new(0));
    let stop = Padded(AtomicBool::new(false));
    let finished = Padded(AtomicUsize::new(0));
    let elapsed = Padded(AtomicU64::new(0));
    let counts: Vec<Padded<AtomicU64>> = (0..n).map(|_| Padded(AtomicU64::new(0))).collect();
    par.run(n, &|i| {
        arrived.0.fetch_add(1, Ordering::AcqRel);
        while arrived.0.load(Ordering::Acquire) < n {
            platform::cpu_relax();
        }
        let mut done = 0u64;
        if i == 0 {
            let t0 = platform::cycles();
            let mut batch = 1;
            let mut last = t0;
            loop {
                for _ in 0..batch {
                    op();
                }
                done += batch;
                let now = platform::cycles();
                if now - t0 >= budget {
                    stop.0.store(true, Ordering::Relaxed);
                    break;
                }
                batch = if now - last > slow_batch {
                    1
                } else {
                    (batch * 2).min(MAX_BATCH)
                };
                last = now;
            }
            while finished.0.load(Ordering::Acquire) < n - 1 {
                platform::cpu_relax();
            }
            elapsed.0.store(platform::cycles() - t0, Ordering::Relaxed);
        } else {
            while !stop.0.load(Ordering::Relaxed) {
                op();
                done += 1;
            }
            finished.0.fetch_add(1, Ordering::AcqRel);
        }
        counts[i].0.store(done, Ordering::Relaxed);
    });
    let per_cpu: Vec<u64> = counts.iter().map(|c| c.0.load(Ordering::Relaxed)).collect();
    let ops: u64 = per_cpu.iter().sum();
    let mean = (ops / n as u64).max(1);
    let share = |v: u64| v * 100 / mean;
    LocksRow {
        lock: name,
        cpus: n,
        bench: "contended",
        ops,
        cycles: elapsed.0.load(Ordering::Relaxed),
        cycles_per_sec: cps,
        min_share_pct: share(per_cpu.iter().copied().min().unwrap_or(0)),
        max_share_pct: share(per_cpu.iter().copied().max().unwrap_or(0)),
    }
}

/// Runs `f` with lockstat switched to `on`, restoring the switch after.
fn with_lockstat<R>(on: bool, f: impl FnOnce() -> R) -> R {
    let was = lockstat::set_enabled(on);
    let r = f();
    lockstat::set_enabled(was);
    r
}

/// Runs the lock microbenchmark on up to `params.max_cpus` CPUs of `par`,
/// prints the table and the CSV rows, and returns the rows.
///
/// The contended points run on 1, 2, 4, 8 CPUs (capped at
/// `Parallel::cpus()` and `max_cpus`) for `millis` ms each; at each CPU
/// count every algorithm (and the ticket lock with lockstat) runs back to
/// back, so drift hits all alike.
pub(crate) fn run_locks_bench(par: &dyn Parallel, params: &LocksBenchParams) -> Vec<LocksRow> {
    let calibrated = platform::cycles_per_sec();
    let cps = if calibrated == 0 {
        1_000_000_000
    } else {
        calibrated
    };
    let max = par.cpus().min(params.max_cpus).max(1);
    // Rounded up, so a point that ran its budget reports at least
    // `millis` (cps / 1000 truncated would make a 500 ms budget 499.99 ms).
    let budget = (u128::from(params.millis) * u128::from(cps))
        .div_ceil(1000)
        .clamp(1, u128::from(u64::MAX)) as u64;
    let n_ops = params.uncontended_ops.max(1);
    println!(
        "locks: {} CPUs available, up to {max} used; contended points {} ms each; \
         uncontended {n_ops} lock+unlock pairs; cycles at {cps} Hz{}; lockdebug {}",
        par.cpus(),
        params.millis,
        if calibrated == 0 {
            " (uncalibrated: assumed)"
        } else {
            ""
        },
        if LOCKDEBUG { "on" } else { "off" }
    );

    let ticket = counter::<Tickets, Plain>("bench_ticket");
    let pv = counter::<PvTickets, Plain>("bench_pv_ticket");
    let q = counter::<QSpin, Plain>("bench_qspinlock");
    let tas = counter::<Tas, Plain>("bench_tas");
    let ticket_irq = counter::<Tickets, Irq>("bench_ticket_irq");
    let ticket_irqsave = counter::<Tickets, IrqSave>("bench_ticket_irqsave");
    let dispatch = Padded(named_spin_lock("bench_dispatch", 0u64));
    let rw = Padded(named_rwlock_irq("bench_rwlock", 0u64));
    let ticket_op = || *ticket.0.lock() += 1;
    let pv_op = || *pv.0.lock() += 1;
    let q_op = || *q.0.lock() += 1;
    let tas_op = || *tas.0.lock() += 1;
    let algos: [(&'static str, &(dyn Fn() + Sync)); 4] = [
        (LockAlgo::Ticket.name(), &ticket_op),
        (LockAlgo::PvTicket.name(), &pv_op),
        (LockAlgo::Qspinlock.name(), &q_op),
        (LockAlgo::Tas.name(), &tas_op),
    ];

    let dispatch_op = || *dispatch.0.lock() += 1;
    let irq_op = || *ticket_irq.0.lock() += 1;
    let irqsave_op = || *ticket_irqsave.0.lock() += 1;
    let read_op = || {
        black_box(*rw.0.read());
    };
    let write_op = || *rw.0.write() += 1;
    let flavour = |name, run, needs_irqs, lockstat| Flavour {
        name,
        needs_irqs,
        lockstat,
        run,
    };
    let (ticket_run, pv_run, q_run, tas_run) = (
        pairs(&ticket_op),
        pairs(&pv_op),
        pairs(&q_op),
        pairs(&tas_op),
    );
    let (dispatch_run, irq_run, irqsave_run, read_run, write_run) = (
        pairs(&dispatch_op),
        pairs(&irq_op),
        pairs(&irqsave_op),
        pairs(&read_op),
        pairs(&write_op),
    );
    let flavours = [
        flavour(LockAlgo::Ticket.name(), &ticket_run, false, false),
        flavour(LockAlgo::PvTicket.name(), &pv_run, false, false),
        flavour(LockAlgo::Qspinlock.name(), &q_run, false, false),
        flavour(LockAlgo::Tas.name(), &tas_run, false, false),
        flavour(dispatch_name(lock_algo()), &dispatch_run, false, false),
        flavour("ticket+lockstat", &ticket_run, false, true),
        flavour("ticket_irq", &irq_run, true, false),
        flavour("ticket_irqsave", &irqsave_run, false, false),
        flavour("rwlock_read", &read_run, false, false),
        flavour("rwlock_write_irq", &write_run, true, false),
    ];
    let mut rows = uncontended(par, &flavours, n_ops, cps);

    for n in cpu_counts(max) {
        for (name, op) in algos {
            rows.push(with_lockstat(false, || {
                contended(par, name, n, budget, cps, &op)
            }));
            if name == LockAlgo::Ticket.name() {
                rows.push(with_lockstat(true, || {
                    contended(par, "ticket+lockstat", n, budget, cps, &op)
                }));
            }
        }
    }

    print_table(&rows);
    println!("{LOCKS_CSV_HEADER}");
    for row in &rows {
        println!("{}", row.csv());
    }
    rows
}

fn print_table(rows: &[LocksRow]) {
    println!(
        "{:<18} {:>4} {:<12} {:>14} {:>10} {:>12} {:>8} {:>11}",
        "lock", "cpus", "bench", "ops/s", "cycles/op", "ops", "ms", "share min-max%"
    );
    for r in rows {
        let cpo = r.cycles_per_op_x10();
        println!(
            "{:<18} {:>4} {:<12} {:>14} {:>8}.{} {:>12} {:>8} {:>7}-{}",
            r.lock,
            r.cpus,
            r.bench,
            r.ops_per_sec(),
            cpo / 10,
            cpo % 10,
            r.ops,
            r.millis(),
            r.min_share_pct,
            r.max_share_pct
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::platform::HostThreads;

    #[test]
    fn cpu_counts_are_capped() {
        assert_eq!(cpu_counts(1), [1]);
        assert_eq!(cpu_counts(3), [1, 2, 3]);
        assert_eq!(cpu_counts(8), [1, 2, 4, 8]);
        assert_eq!(cpu_counts(64), [1, 2, 4, 8, 64]);
    }

    #[test]
    fn rows_are_well_formed() {
        let _serial = lockstat::test_serial();
        let params = LocksBenchParams {
            millis: 20,
            uncontended_ops: 2000,
            max_cpus: 4,
        };
        let rows = run_locks_bench(&HostThreads(4), &params);
        let columns = LOCKS_CSV_HEADER.split(',').count();
        assert!(LOCKS_CSV_HEADER.starts_with("locks,lock,cpus,ops_per_sec,"));
        // 10 uncontended flavours, then 5 locks at 1, 2 and 4 CPUs.
        assert_eq!(rows.len(), 10 + 5 * 3);
        for row in &rows {
            let csv = row.csv();
            let fields: Vec<&str> = csv.split(',').collect();
            assert_eq!(fields.len(), columns, "{csv}");
            assert_eq!(fields[0], "locks");
            assert_eq!(fields[1], row.lock);
            assert_eq!(fields[2].parse::<usize>().unwrap(), row.cpus);
            assert!(fields[3].parse::<u64>().unwrap() > 0, "{csv}");
            assert!(fields[4].parse::<f64>().unwrap() > 0.0, "{csv}");
            assert!(matches!(fields[5], "uncontended" | "contended"), "{csv}");
            for f in &fields[6..] {
                f.parse::<u64>().unwrap();
            }
            assert!(row.ops > 0);
        }
        assert!(rows.iter().any(|r| r.lock == "dispatch:ticket"));
        for (lock, n) in [
            ("ticket", 4),
            ("ticket+lockstat", 2),
            ("tas", 1),
            ("pv-ticket", 4),
            ("qspinlock", 4),
        ] {
            assert!(
                rows.iter()
                    .any(|r| r.lock == lock && r.cpus == n && r.bench == "contended"),
                "{lock} at {n} CPUs"
            );
        }
        // The lockstat-on run counted into its class.
        let stats = lockstat::read("bench_ticket").expect("bench_ticket class");
        assert!(stats.exclusive.acquisitions > 0);
    }
}
