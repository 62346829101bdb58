//! One threadspawn sample: the workers' loop, what they measure, and the
//! drain of releases still in flight when it ends.
//!
//! Each worker is a process on its own CPU (worker `i` on CPU `i`). It
//! loops: create a thread that does nothing on the CPU its [`Placer`]
//! picks (`copy_process` with `CLONE_THREAD`: alloc_pid, tasklist_lock),
//! join it (the join returns at the thread's `mm_release`, so its
//! `exit_notify` and `release_task` overlap the next fork), count one op.
//! The loop stamps the TSC once per op, for the deadline and for the steal
//! meter; it prints nothing and allocates from the per-CPU caches only.
//!
//! With two workers or more, workers 0 and 1 first bounce one cache line
//! between their CPUs and time it ([`line_probe`]), and again after their
//! loops: what a line transfer between the two vCPUs costs right then.
//! Under a hypervisor it is the host's to decide (where it runs the two
//! vCPU threads), it changes from second to second, and two workers'
//! ops/s follow it (see docs/threadspawn.md); the report prints it beside
//! the samples. Each worker's clock starts after the probe.
//!
//! When the deadline passes, a worker exits; its parent reaps it once its
//! last thread is released (`delay_group_leader`), and [`run_sample`] then
//! waits until every task forked in the sample is released and freed, so
//! nothing of one sample runs into the next.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::placement::{Placement, Placer};
use crate::arch::{smp, time};
use crate::bench::steal::{STEAL_GAP_US, StealMeter, steal_x100};
use crate::pid::namespace::PidNamespace;
use crate::pid::pid_stats_total;
use crate::platform;
use crate::strategy::StrategyPair;
use crate::sync::lockstat;
use crate::task::cgroup::css_set_lock_acquisitions;
use crate::task::fork::{CloneArgs, copy_process};
use crate::task::nr_tasks;
use crate::task::sched;
use crate::task::stats::{ProcStats, proc_stats};
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
    /// Sums over workers of their elapsed and stolen cycles.
    elapsed: AtomicU64,
    stolen: AtomicU64,
    /// The line workers 0 and 1 bounce, on a line of its own.
    line: ProbeLine,
    /// Worker 0's readings of one round trip, in cycles: before and after
    /// the loops.
    line_cycles: [AtomicU64; 2],
}

#[repr(align(64))]
struct ProbeLine(AtomicU64);

/// Round trips not timed first: the partner may still be finishing its
/// last op.
const PROBE_WARM: u64 = 8;
/// Round trips timed.
const PROBE_TRIPS: u64 = 64;

/// Workers 0 (`me == 0`) and 1 bounce `line` between their CPUs, each
/// waiting for the other's store; worker 0 returns the cycles of one round
/// trip. `base` keeps one probe's values apart from the previous one's.
/// About 100 round trips: tens of microseconds, next to a sample's hundreds
/// of milliseconds.
fn line_probe(line: &AtomicU64, me: usize, base: u64) -> u64 {
    let mut t0 = platform::cycles();
    for i in 0..PROBE_WARM + PROBE_TRIPS {
        if i == PROBE_WARM {
            t0 = platform::cycles();
        }
        let ping = base + 2 * i + 1;
        if me == 0 {
            line.store(ping, Ordering::Release);
            while line.load(Ordering::Acquire) != ping + 1 {
                platform::cpu_relax();
            }
        } else {
            while line.load(Ordering::Acquire) != ping {
                platform::cpu_relax();
            }
            line.store(ping + 1, Ordering::Release);
        }
    }
    (platform::cycles() - t0) / PROBE_TRIPS
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
    let me = platform::cpu_id();
    let probing = s.workers >= 2 && me < 2;
    if probing {
        let c = line_probe(&s.line.0, me, 0);
        if me == 0 {
            s.line_cycles[0].store(c, Ordering::Relaxed);
        }
        start = platform::cycles();
    }
    let deadline = start + s.sample_cycles;
    let mut args = CloneArgs::new("thread", nothing, 0);
    args.thread = true;
    args.strategy = s.strategy;
    let mut placer = Placer::new(s.placement, platform::cpu_id(), s.workers, s.online);
    let mut steal = StealMeter::new(start, time::ns_to_cycles(STEAL_GAP_US * 1000));
    let mut ops = 0u64;
    let mut failures = 0u64;
    let mut now = platform::cycles();
    steal.stamp(now);
    while now < deadline {
        args.cpu = Some(placer.next_cpu(s.online, sched::cpu_idle));
        match copy_process(&args) {
            Ok(t) => {
                sched::join(&t);
                ops += 1;
            }
            Err(_) => failures += 1,
        }
        now = platform::cycles();
        steal.stamp(now);
    }
    let elapsed = (now - start).max(1);
    if probing {
        let c = line_probe(&s.line.0, me, 1 << 32);
        if me == 0 {
            s.line_cycles[1].store(c, Ordering::Relaxed);
        }
    }
    let elapsed_ns = time::cycles_to_ns(elapsed).max(1);
    s.ops.fetch_add(ops, Ordering::Relaxed);
    s.failures.fetch_add(failures, Ordering::Relaxed);
    s.ops_per_sec.fetch_add(
        (ops as u128 * 1_000_000_000 / elapsed_ns as u128) as u64,
        Ordering::Relaxed,
    );
    s.elapsed.fetch_add(elapsed, Ordering::Relaxed);
    s.stolen.fetch_add(steal.stolen(), Ordering::Relaxed);
}

/// One sample's numbers.
#[derive(Clone, Copy, Default)]
pub(super) struct Measured {
    pub(super) ops_per_sec: u64,
    pub(super) ops: u64,
    /// Host steal over the workers' time, in hundredths of a percent.
    pub(super) steal_x100: u64,
    pub(super) pidmap_acq: u64,
    /// `css_set_lock` acquisitions (counted whether lockstat is on or not).
    pub(super) css_acq: u64,
    pub(super) tasklist_acq: u64,
    pub(super) contended: u64,
    pub(super) acquisitions: u64,
    pub(super) wait_cycles: u64,
    pub(super) hold_cycles: u64,
    pub(super) failures: u64,
    /// One round trip of a cache line between CPUs 0 and 1 around the
    /// sample, in ns: the lower of the readings before and after it (none
    /// with one worker).
    pub(super) line_ns: Option<u64>,
    /// Per lock class of [`LOCK_CLASSES`] (with lockstat on).
    pub(super) locks: [LockDelta; LOCK_CLASSES.len()],
}

impl Measured {
    /// This sample (`ms` long) and `other` (`other_ms`) as one: counts
    /// add up, ops/s and steal are weighted by length.
    pub(super) fn joined(&self, ms: u32, other: &Measured, other_ms: u32) -> Measured {
        let (a, b) = (u64::from(ms), u64::from(other_ms));
        let weighted = |x: u64, y: u64| (x * a + y * b) / (a + b).max(1);
        let mut locks = self.locks;
        for (l, o) in locks.iter_mut().zip(&other.locks) {
            l.acquisitions += o.acquisitions;
            l.contended += o.contended;
            l.wait_cycles += o.wait_cycles;
            l.hold_cycles += o.hold_cycles;
        }
        Measured {
            ops_per_sec: weighted(self.ops_per_sec, other.ops_per_sec),
            ops: self.ops + other.ops,
            steal_x100: weighted(self.steal_x100, other.steal_x100),
            pidmap_acq: self.pidmap_acq + other.pidmap_acq,
            css_acq: self.css_acq + other.css_acq,
            tasklist_acq: self.tasklist_acq + other.tasklist_acq,
            contended: self.contended + other.contended,
            acquisitions: self.acquisitions + other.acquisitions,
            wait_cycles: self.wait_cycles + other.wait_cycles,
            hold_cycles: self.hold_cycles + other.hold_cycles,
            failures: self.failures + other.failures,
            line_ns: match (self.line_ns, other.line_ns) {
                (Some(x), Some(y)) => Some(weighted(x, y)),
                (x, y) => x.or(y),
            },
            locks,
        }
    }
}

/// The lock classes threadspawn reports one by one, as `/proc/lock_stat`
/// splits them (each version takes some of them on every op).
pub(super) const LOCK_CLASSES: [&str; 5] = [
    "pidmap_lock",
    "tasklist_lock",
    "css_set_lock",
    "input_pool.lock",
    "siglock",
];

/// One lock class's numbers over a sample, both modes together.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct LockDelta {
    pub(super) acquisitions: u64,
    pub(super) contended: u64,
    pub(super) wait_cycles: u64,
    pub(super) hold_cycles: u64,
}

/// What a sample runs.
#[derive(Clone, Copy)]
pub(super) struct SampleSpec<'a> {
    pub(super) ns: &'a Arc<PidNamespace>,
    pub(super) workers: usize,
    pub(super) strategy: &'static StrategyPair,
    pub(super) sample_ms: u32,
    pub(super) placement: Placement,
}

/// Runs one sample and drains it; an error if its releases do not finish.
pub(super) fn run_sample(spec: SampleSpec<'_>) -> Result<Measured, String> {
    let workers = spec.workers;
    let s = Sample {
        workers,
        online: smp::online(),
        placement: spec.placement,
        strategy: spec.strategy,
        sample_cycles: time::ns_to_cycles(spec.sample_ms as u64 * 1_000_000),
        arrived: AtomicUsize::new(0),
        start: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        ops_per_sec: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        elapsed: AtomicU64::new(0),
        stolen: AtomicU64::new(0),
        line: ProbeLine(AtomicU64::new(0)),
        line_cycles: [AtomicU64::new(0), AtomicU64::new(0)],
    };
    let pid_before = pid_stats_total();
    let css_before = css_set_lock_acquisitions();
    let procs_before = proc_stats();
    let tasks_before = nr_tasks();
    if lockstat::enabled() {
        lockstat::reset();
    }
    for cpu in 0..workers {
        let mut args = CloneArgs::new("worker", worker, &s as *const Sample as usize);
        args.cpu = Some(cpu);
        args.pid_ns = Some(spec.ns);
        // The worker's own pid comes from its strategy too (the lock-free
        // one's namespaces take no other).
        args.strategy = spec.strategy;
        if let Err(e) = copy_process(&args) {
            panic!("threadspawn: cannot start worker {cpu}: {e:?}");
        }
    }
    for _ in 0..workers {
        wait_child(None).expect("threadspawn: a worker to reap");
    }
    drain(&procs_before, tasks_before)?;
    let pid_after = pid_stats_total().since(&pid_before);
    let mut m = Measured {
        ops_per_sec: s.ops_per_sec.load(Ordering::Relaxed),
        ops: s.ops.load(Ordering::Relaxed),
        failures: s.failures.load(Ordering::Relaxed),
        steal_x100: steal_x100(
            s.stolen.load(Ordering::Relaxed),
            s.elapsed.load(Ordering::Relaxed),
        ),
        // The lower of the two: a probe that waited for a descheduled
        // vCPU reads microseconds.
        line_ns: (workers >= 2).then(|| {
            let [a, b] = [0, 1].map(|i| s.line_cycles[i].load(Ordering::Relaxed));
            time::cycles_to_ns(a.min(b))
        }),
        ..Measured::default()
    };
    // Includes each worker's own spawn and reap (one per worker per
    // sample, next to thousands of ops).
    m.pidmap_acq = pid_after.alloc_locks + pid_after.free_locks;
    m.css_acq = css_set_lock_acquisitions() - css_before;
    if lockstat::enabled() {
        for (i, name) in LOCK_CLASSES.iter().enumerate() {
            if let Some(st) = lockstat::read(name) {
                let d = &mut m.locks[i];
                for c in [st.exclusive, st.shared] {
                    d.acquisitions += c.acquisitions;
                    d.contended += c.contended;
                    d.wait_cycles += c.wait_cycles_total;
                    d.hold_cycles += c.hold_cycles_total;
                }
            }
        }
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
/// every task since freed. The workers' leaders are reaped only after
/// each thread's pids were detached; the rest of `release_task` (the
/// deferred frees among it) and the freeing of the task by its CPU's next
/// switch may still be running.
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
