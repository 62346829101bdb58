//! Running the soak: the workers, their operations and fault checks, the
//! report.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::SoakParams;
use crate::arch::{smp, time};
use crate::bench::{accel_name, next_rand};
use crate::klib::errno::Errno;
use crate::klib::fault_inject::{FaultMode, FaultSite, fault_fired_on, fault_inject};
use crate::pid::PidType;
use crate::pid::namespace::{PID_MAX_LIMIT, PID_MAX_MIN, PidNamespace, create_pid_namespace};
use crate::platform::{self, MAX_CPUS};
use crate::selftest::invariants::Baseline;
use crate::strategy::PAIRS;
use crate::sync::{SpinLock, named_spin_lock};
use crate::task::exit::{park, request_exit};
use crate::task::fork::{CloneArgs, copy_process, current_ns};
use crate::task::sched;
use crate::task::wait::{Reaped, wait_child};
use crate::task::{TaskRef, task_pid};
use pidlab_abi::Accel;

/// Namespace levels below the root each worker keeps.
const DEPTH: usize = 4;
const SITES: usize = FaultSite::ALL.len();
const ERRNOS: usize = Errno::ALL.len();
/// Problems kept word for word (the rest are only counted).
const KEEP_PROBLEMS: usize = 8;

/// What one operation was.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Process,
    Thread,
    PidMax,
    Namespace,
}

const OPS: [(Op, &str); 4] = [
    (Op::Process, "process"),
    (Op::Thread, "thread"),
    (Op::PidMax, "pid_max"),
    (Op::Namespace, "namespace"),
];

#[repr(align(64))]
struct Padded(AtomicU64);

struct Shared {
    params: SoakParams,
    per_cpu: u64,
    extra: u64,
    started: u64,
    /// Operations done, per CPU.
    done: [Padded; MAX_CPUS],
    by_op: [AtomicU64; OPS.len()],
    set_tid: AtomicU64,
    errnos: [AtomicU64; ERRNOS],
    fired: [AtomicU64; SITES],
    /// Faults whose operation failed with ENOMEM / still succeeded (or
    /// failed with something the fault did not cause).
    surfaced: [AtomicU64; SITES],
    absorbed: [AtomicU64; SITES],
    problems: SpinLock<Vec<String>>,
    nr_problems: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn problem(&self, msg: String) {
        if self.nr_problems.fetch_add(1, Ordering::Relaxed) < KEEP_PROBLEMS as u64 {
            self.problems.lock().push(msg);
        }
    }

    fn total(&self) -> u64 {
        self.done.iter().map(|d| d.0.load(Ordering::Relaxed)).sum()
    }
}

/// The errnos worth naming in a progress line, with their counts.
fn errno_summary(sh: &Shared, out: &mut String) {
    for (i, e) in Errno::ALL.iter().enumerate() {
        let n = sh.errnos[i].load(Ordering::Relaxed);
        if n > 0 {
            let _ = write!(out, " {} {n}", e.name());
        }
    }
}

fn exit_with(code: usize) {
    sched::exit_current(code as i32)
}

fn thread_body(_: usize) {}

/// What one operation was and how it ended.
#[derive(Clone, Copy)]
struct Done {
    op: Op,
    /// It asked for a `set_tid`.
    set_tid: bool,
    /// It allocated in one of the worker's child namespaces.
    nested: bool,
    res: Result<(), Errno>,
}

/// One level of a worker's namespace chain: the namespace and its init.
struct Level {
    ns: Arc<PidNamespace>,
    init: TaskRef,
}

/// A new namespace under `parent` with a parked init.
fn make_level(parent: &Arc<PidNamespace>) -> Result<Level, Errno> {
    let ns = create_pid_namespace(parent)?;
    let mut args = CloneArgs::new("soak-init", park, 0);
    args.pid_ns = Some(&ns);
    let init = copy_process(&args)?;
    Ok(Level { ns, init })
}

/// Kills a level's init and reaps it (its namespace then dies).
fn end_level(level: Level) -> Result<(), String> {
    request_exit(&level.init, 0);
    match wait_child(Some(&level.init)) {
        Ok(Reaped { code: 0, .. }) => Ok(()),
        other => Err(format!("reaping a namespace init: {other:?}")),
    }
}

fn fired_here(cpu: usize) -> [u64; SITES] {
    FaultSite::ALL.map(|s| fault_fired_on(s, cpu))
}

struct Worker<'a> {
    sh: &'a Shared,
    cpu: usize,
    rng: u64,
    chain: [Option<Level>; DEPTH],
}

impl Worker<'_> {
    /// Runs one operation.
    fn op(&mut self) -> Done {
        let r = next_rand(&mut self.rng);
        let done = |op, res| Done {
            op,
            set_tid: false,
            nested: false,
            res,
        };
        match r % 64 {
            0..=39 => self.process(r >> 8),
            40..=59 => done(Op::Thread, self.thread(r >> 8)),
            60..=62 => done(Op::PidMax, self.pid_max(r >> 8)),
            _ if (r >> 8) % 64 == 0 => Done {
                nested: true,
                ..done(Op::Namespace, self.renew_deepest())
            },
            _ => done(Op::Thread, self.thread(r >> 8)),
        }
    }

    /// The namespace at `level` (0: the root, the worker's own), if alive.
    fn ns_at(&self, level: usize) -> Option<&Arc<PidNamespace>> {
        match level {
            0 => None,
            l => self.chain[l - 1].as_ref().map(|lv| &lv.ns),
        }
    }

    fn process(&mut self, r: u64) -> Done {
        let level = (r % (DEPTH as u64 + 1)) as usize;
        let level = if level > 0 && self.chain[level - 1].is_none() {
            0
        } else {
            level
        };
        let code = (r >> 4) as usize % 200;
        let mut args = CloneArgs::new("soak", exit_with, code);
        args.strategy = &PAIRS[(r >> 12) as usize % PAIRS.len()];
        args.pid_ns = self.ns_at(level);
        let tid;
        let asks = (r >> 16) % 8 == 0;
        if asks {
            let pid_max = self.ns_at(level).map_or_else(
                || crate::pid::namespace::init_pid_ns().pid_max(),
                |n| n.pid_max(),
            );
            tid = match (r >> 20) % 8 {
                // Taken by the level's init: EEXIST.
                0 => 1,
                // Out of range: EINVAL.
                1 => pid_max,
                _ => 2 + ((r >> 24) % 998) as i32,
            };
            args.set_tid = core::slice::from_ref(&tid);
        }
        let done = |res| Done {
            op: Op::Process,
            set_tid: asks,
            nested: level > 0,
            res,
        };
        let child = match copy_process(&args) {
            Ok(c) => c,
            Err(e) => return done(Err(e)),
        };
        match wait_child(Some(&child)) {
            Ok(Reaped { nr, code: got, .. }) if got == code as i32 && nr > 0 => {}
            other => {
                self.sh.problem(format!(
                    "cpu {}: reaping a child: {other:?}, expected code {code}",
                    self.cpu
                ));
            }
        }
        done(Ok(()))
    }

    fn thread(&mut self, r: u64) -> Result<(), Errno> {
        let mut args = CloneArgs::new("soak-thread", thread_body, 0);
        args.thread = true;
        args.strategy = &PAIRS[r as usize % PAIRS.len()];
        let t = copy_process(&args)?;
        sched::join(&t);
        if task_pid(&t, PidType::Pid).is_some() {
            self.sh.problem(format!(
                "cpu {}: a joined thread still has its pid",
                self.cpu
            ));
        }
        Ok(())
    }

    fn pid_max(&mut self, r: u64) -> Result<(), Errno> {
        let level = 1 + (r % DEPTH as u64) as usize;
        let Some(ns) = self.ns_at(level) else {
            return Ok(());
        };
        // Low values half the time, so set_tid and the cursor meet them.
        let v = if (r >> 8) & 1 == 0 {
            PID_MAX_MIN + ((r >> 9) % 2000) as i32
        } else {
            PID_MAX_MIN + ((r >> 9) % (PID_MAX_LIMIT - PID_MAX_MIN + 1) as u64) as i32
        };
        ns.set_pid_max(v)
    }

    /// Kills the deepest namespace's init and makes the namespace again
    /// (or, if that failed before, just tries to make it).
    fn renew_deepest(&mut self) -> Result<(), Errno> {
        if let Some(level) = self.chain[DEPTH - 1].take()
            && let Err(e) = end_level(level)
        {
            self.sh.problem(format!("cpu {}: {e}", self.cpu));
        }
        let Some(parent) = self.chain[DEPTH - 2].as_ref().map(|l| l.ns.clone()) else {
            return Ok(());
        };
        self.chain[DEPTH - 1] = Some(make_level(&parent)?);
        Ok(())
    }

    /// Checks one operation's result against the faults it drew.
    fn judge(&self, done: &Done, fired: [u64; SITES]) {
        let Done {
            op,
            set_tid,
            nested,
            res,
        } = *done;
        let sh = self.sh;
        let hard = [
            FaultSite::PidAlloc,
            FaultSite::TaskAlloc,
            FaultSite::StackAlloc,
        ];
        let hard_fired = hard
            .iter()
            .find(|&&s| fired[FaultSite::ALL.iter().position(|&x| x == s).unwrap()] > 0);
        let any_fired = fired.iter().any(|&n| n > 0);
        let enomem = res == Err(Errno::ENOMEM);
        for (i, &n) in fired.iter().enumerate() {
            sh.fired[i].fetch_add(n, Ordering::Relaxed);
            if enomem {
                sh.surfaced[i].fetch_add(n, Ordering::Relaxed);
            } else {
                sh.absorbed[i].fetch_add(n, Ordering::Relaxed);
            }
        }
        let Err(e) = res else {
            if let Some(site) = hard_fired {
                sh.problem(format!(
                    "cpu {}: a {} fault fired and the {} operation succeeded",
                    self.cpu,
                    site.name(),
                    OPS.iter().find(|(o, _)| *o == op).unwrap().1
                ));
            }
            return;
        };
        if let Some(i) = Errno::ALL.iter().position(|&x| x == e) {
            sh.errnos[i].fetch_add(1, Ordering::Relaxed);
        }
        let expected = match e {
            Errno::ENOMEM => {
                if !any_fired {
                    sh.problem(format!(
                        "cpu {}: ENOMEM without an injected fault",
                        self.cpu
                    ));
                }
                true
            }
            // set_tid on a used pid, or at or beyond pid_max.
            Errno::EEXIST | Errno::EINVAL => set_tid,
            // A level whose pid_max was lowered ran out of numbers (a pid
            // in a child namespace takes one at every level above too).
            Errno::EAGAIN => nested,
            _ => false,
        };
        if !expected {
            sh.problem(format!(
                "cpu {}: {} operation failed with {e}",
                self.cpu,
                OPS.iter().find(|(o, _)| *o == op).unwrap().1
            ));
        } else if let Some(site) = hard_fired
            && !enomem
        {
            sh.problem(format!(
                "cpu {}: a {} fault surfaced as {e}, not ENOMEM",
                self.cpu,
                site.name()
            ));
        }
    }

    fn progress(&self, last: &mut u64) {
        let now = time::now_ns();
        if now < *last + 1_000_000_000 {
            return;
        }
        *last = now;
        let sh = self.sh;
        let secs = (now - sh.started) / 1_000_000_000;
        let total = sh.total();
        let faults: u64 = sh.fired.iter().map(|f| f.load(Ordering::Relaxed)).sum();
        let mut line = format!(
            "soak: {secs} s: {total} ops ({} /s), {faults} faults injected, errnos:",
            total / secs.max(1)
        );
        errno_summary(sh, &mut line);
        println!("{line}");
    }
}

fn soak_worker(arg: usize) {
    // SAFETY: `arg` is the `Shared` on the driver's stack, which reaps
    // every worker before it returns.
    let sh = unsafe { &*(arg as *const Shared) };
    let cpu = platform::cpu_id();
    let ops = sh.per_cpu + u64::from((cpu as u64) < sh.extra);
    let seed = sh.params.seed ^ (cpu as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut w = Worker {
        sh,
        cpu,
        rng: seed | 1,
        chain: [const { None }; DEPTH],
    };
    let mut parent = current_ns();
    for (level, slot) in w.chain.iter_mut().enumerate() {
        match make_level(&parent) {
            Ok(l) => {
                parent = l.ns.clone();
                *slot = Some(l);
            }
            Err(e) => {
                sh.problem(format!("cpu {cpu}: namespace level {}: {e}", level + 1));
                sh.stop.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
    drop(parent);
    if let Some(one_in) = sh.params.faults {
        for (i, site) in FaultSite::ALL.into_iter().enumerate() {
            let seed = next_rand(&mut (seed ^ (i as u64 + 1) << 56 | 1));
            fault_inject(site, FaultMode::Random { one_in, seed }, Some(cpu));
        }
    }
    let mut last_progress = sh.started;
    let mut done = 0;
    while done < ops {
        if done % 256 == 0 && sh.stop.load(Ordering::Relaxed) {
            break;
        }
        let before = fired_here(cpu);
        let d = w.op();
        let after = fired_here(cpu);
        let fired = core::array::from_fn(|i| after[i] - before[i]);
        w.judge(&d, fired);
        let kind = OPS.iter().position(|(o, _)| *o == d.op).unwrap();
        sh.by_op[kind].fetch_add(1, Ordering::Relaxed);
        if d.set_tid {
            sh.set_tid.fetch_add(1, Ordering::Relaxed);
        }
        done += 1;
        sh.done[cpu].0.store(done, Ordering::Relaxed);
        if cpu == 0 {
            w.progress(&mut last_progress);
        }
    }
    for site in FaultSite::ALL {
        fault_inject(site, FaultMode::Off, Some(cpu));
    }
    for level in w.chain.iter_mut().rev() {
        if let Some(l) = level.take()
            && let Err(e) = end_level(l)
        {
            sh.problem(format!("cpu {cpu}: {e}"));
        }
    }
}

/// Runs the soak on every online CPU and prints its report. An error says
/// what went wrong (problems found, or leaks).
pub(crate) fn run(params: &SoakParams, accel: Option<Accel>) -> Result<(), String> {
    let cpus = smp::online();
    let faults = match params.faults {
        Some(n) => format!("1/{n}"),
        None => "off".into(),
    };
    println!(
        "soak: {} ops on {cpus} cpus (accel {}), seed {}, faults {faults} at every site \
         ({}), namespaces {DEPTH} deep per cpu",
        params.ops,
        accel_name(accel),
        params.seed,
        FaultSite::ALL.map(FaultSite::name).join(", ")
    );
    let base = Baseline::take();
    let sh = Shared {
        params: *params,
        per_cpu: params.ops / cpus as u64,
        extra: params.ops % cpus as u64,
        started: time::now_ns(),
        done: [const { Padded(AtomicU64::new(0)) }; MAX_CPUS],
        by_op: [const { AtomicU64::new(0) }; OPS.len()],
        set_tid: AtomicU64::new(0),
        errnos: [const { AtomicU64::new(0) }; ERRNOS],
        fired: [const { AtomicU64::new(0) }; SITES],
        surfaced: [const { AtomicU64::new(0) }; SITES],
        absorbed: [const { AtomicU64::new(0) }; SITES],
        problems: named_spin_lock("soak_problems", Vec::new()),
        nr_problems: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    };
    let mut spawn_error = None;
    let mut workers = Vec::new();
    for cpu in 0..cpus {
        let mut args = CloneArgs::new("soak-worker", soak_worker, &sh as *const Shared as usize);
        args.cpu = Some(cpu);
        match copy_process(&args) {
            Ok(w) => workers.push(w),
            Err(e) => {
                spawn_error = Some(format!("soak: worker on cpu {cpu}: {e}"));
                sh.stop.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
    // Every worker reaches `sh` on this stack: reap them all before
    // anything returns (by name: the root namespace's parked tasks are
    // children too, and never exit).
    for w in workers {
        let _ = wait_child(Some(&w));
    }
    if let Some(e) = spawn_error {
        return Err(e);
    }
    let ms = ((time::now_ns() - sh.started) / 1_000_000).max(1);
    report(&sh, ms);
    let problems = sh.nr_problems.load(Ordering::Relaxed);
    for p in sh.problems.lock().iter() {
        println!("soak: problem: {p}");
    }
    let leaks = base.check();
    match &leaks {
        Ok(()) => println!("invariants: ok"),
        Err(e) => println!("invariants: FAILED: {e}"),
    }
    if problems > 0 {
        return Err(format!("{problems} problems (the first are above)"));
    }
    leaks.map_err(|e| format!("invariants: {e}"))
}

fn report(sh: &Shared, ms: u64) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let total = sh.total();
    println!(
        "soak: {total} ops in {}.{:03} s ({} ops/s)",
        ms / 1000,
        ms % 1000,
        total * 1000 / ms
    );
    let mut line = String::from("soak: ops by kind:");
    for (i, (_, name)) in OPS.iter().enumerate() {
        let _ = write!(line, " {name} {}", load(&sh.by_op[i]));
    }
    let _ = write!(line, " (set_tid requests {})", load(&sh.set_tid));
    println!("{line}");
    let mut line = String::from("soak: injected faults by site:");
    for (i, site) in FaultSite::ALL.into_iter().enumerate() {
        let (fired, surfaced, absorbed) = (
            load(&sh.fired[i]),
            load(&sh.surfaced[i]),
            load(&sh.absorbed[i]),
        );
        let _ = write!(
            line,
            " {} {fired} (ENOMEM {surfaced}, absorbed {absorbed});",
            site.name()
        );
    }
    println!("{line}");
    println!(
        "soak: errno per site: pid, task, stack -> ENOMEM always; idr-node -> absorbed by the \
         preload pool, ENOMEM when it is dry too (preload-take); preload-fill -> absorbed \
         (idr_preload fails silently), ENOMEM if the insertion then finds no node"
    );
    let mut line = String::from("soak: errnos:");
    errno_summary(sh, &mut line);
    let _ = write!(
        line,
        " (ENOMEM: injected faults; EEXIST, EINVAL: set_tid on a used pid or at or beyond \
         pid_max; EAGAIN: a lowered pid_max ran out)"
    );
    println!("{line}");
}
