//! The SMP pid soak: every CPU allocates and frees pids at once, through
//! every kernel version's `alloc_pid` and `free_pid`, in a root namespace
//! and three levels down, and the soak checks what must hold on any number
//! of CPUs.
//!
//! It is the stress check of the pid paths' concurrency: unique numbers,
//! lookups that find what was allocated, and IDRs, counts and preload
//! pools back to where they started, with or without injected allocation
//! failures and random `set_tid`s. With [`SoakConfig::lockfree`] it soaks
//! the lock-free strategy instead, in a lock-free tree. [`pid_soak_with`]
//! describes the setup and the checks.

use crate::pid::namespace::Reaper;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::klib::errno::Errno;
use crate::klib::fault_inject::{FaultMode, FaultSite, fault_inject};
use crate::klib::idr::{IDR_PRELOAD_SIZE, idr_preload_count};
use crate::pid::namespace::{PidNamespace, PidNsStats, create_pid_namespace};
use crate::pid::{PidRef, alloc_pid, find_pid_ns, free_pid};
use crate::platform::{self, Parallel};
use crate::strategy::{LOCKLESS, PAIRS, StrategyPair};
use crate::sync::{SpinLock, named_spin_lock};
use crate::task::Task;

/// Deepest namespace the soak allocates in.
pub(crate) const SOAK_DEPTH: usize = 3;

/// What a soak did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SoakReport {
    /// CPUs that ran.
    pub(crate) cpus: usize,
    /// Operations (allocations attempted plus frees).
    pub(crate) ops: u64,
    /// Successful allocations per alloc strategy (Stock, SingleLock,
    /// Lockless).
    pub(crate) allocs: [u64; 3],
    /// Successful allocations at depth 0 and at depth 3.
    pub(crate) allocs_by_depth: [u64; 2],
    /// Frees.
    pub(crate) frees: u64,
    /// Allocations that failed with ENOMEM.
    pub(crate) enomem: u64,
    /// Allocations with a `set_tid`, and those that found it taken.
    pub(crate) set_tid: u64,
    pub(crate) eexist: u64,
    /// Most pids live at once on one CPU.
    pub(crate) max_live_per_cpu: usize,
    /// Largest preload pool seen at the end of a CPU's run.
    pub(crate) max_pool: usize,
    /// Cycles the parallel phase took.
    pub(crate) cycles: u64,
}

impl core::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "pid_soak: {} ops on {} CPUs: {} allocs (stock {}, pidmap-once {}, lockless {}; depth 0 {}, depth {} {}), {} with set_tid ({} EEXIST), {} frees, {} ENOMEM, max {} live per CPU, pools <= {}/{}, {} cycles",
            self.ops,
            self.cpus,
            self.allocs.iter().sum::<u64>(),
            self.allocs[0],
            self.allocs[1],
            self.allocs[2],
            self.allocs_by_depth[0],
            SOAK_DEPTH,
            self.allocs_by_depth[1],
            self.set_tid,
            self.eexist,
            self.frees,
            self.enomem,
            self.max_live_per_cpu,
            self.max_pool,
            IDR_PRELOAD_SIZE,
            self.cycles
        )
    }
}

/// What the soak's CPUs share: the namespaces, the owner tables, the
/// first error and the counters.
///
/// Checked while running: no two live pids share a number in any
/// namespace (an owner table per namespace, claimed with a swap after each
/// allocation and released before each free); `find_pid_ns` finds what was
/// allocated.
struct Shared {
    nss: Vec<Arc<PidNamespace>>,
    /// Per namespace level, per number: 0 or the owning CPU + 1.
    owners: Vec<Vec<AtomicU32>>,
    stop: AtomicBool,
    error: SpinLock<Option<String>>,
    /// Allocate through the lock-free strategy only (a lock-free tree).
    lockfree: bool,
    /// Ask for a random `set_tid` on one allocation in eight.
    set_tid: bool,
    allocs: [AtomicU64; 3],
    set_tids: AtomicU64,
    eexist: AtomicU64,
    allocs_by_depth: [AtomicU64; 2],
    frees: AtomicU64,
    enomem: AtomicU64,
    ops: AtomicU64,
    max_live: AtomicUsize,
    max_pool: AtomicUsize,
}

impl Shared {
    /// The strategy of the pids the soak allocates outside its operations.
    fn setup(&self) -> &'static StrategyPair {
        if self.lockfree {
            &LOCKLESS
        } else {
            StrategyPair::stock()
        }
    }

    fn fail(&self, msg: String) {
        let mut e = self.error.lock();
        if e.is_none() {
            *e = Some(msg);
        }
        self.stop.store(true, Ordering::Relaxed);
    }

    fn claim(&self, cpu: usize, pid: &PidRef) -> Result<(), String> {
        for (level, u) in pid.numbers().iter().enumerate() {
            let slot = self.owners[level]
                .get(u.nr as usize)
                .ok_or_else(|| format!("pid {} beyond pid_max at level {level}", u.nr))?;
            let prev = slot.swap(cpu as u32 + 1, Ordering::AcqRel);
            if prev != 0 {
                return Err(format!(
                    "CPU {cpu} got pid {} at level {level}, still live on CPU {}",
                    u.nr,
                    prev - 1
                ));
            }
        }
        Ok(())
    }

    fn release(&self, pid: &PidRef) {
        for (level, u) in pid.numbers().iter().enumerate() {
            self.owners[level][u.nr as usize].store(0, Ordering::Release);
        }
    }
}

/// xorshift64*: cheap per-CPU randomness for op choice.
fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// One CPU's share of the soak, `ops` operations: allocate (version and
/// depth 0 or 3 chosen by a per-CPU xorshift) while it holds fewer than
/// `max_live` pids and a coin says so, else free one of its own.
fn worker(sh: &Shared, cpu: usize, ops: u64, max_live: usize) {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ ((cpu as u64 + 1) << 32);
    let mut live: Vec<PidRef> = Vec::with_capacity(max_live);
    let mut most = 0;
    let mut done = 0;
    let result = (|| -> Result<(), String> {
        while done < ops {
            if done % 1024 == 0 {
                if sh.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                platform::cond_resched();
            }
            done += 1;
            let r = next_rand(&mut rng);
            if live.len() < max_live && (live.is_empty() || r & 1 == 0) {
                let version = if sh.lockfree {
                    &LOCKLESS
                } else {
                    &PAIRS[(r >> 12) as usize % PAIRS.len()]
                };
                let deep = (r >> 2) & 1 == 1;
                let ns = &sh.nss[if deep { SOAK_DEPTH } else { 0 }];
                // Now and then a set_tid: small numbers, where the cyclic
                // allocations of the other CPUs are, for one level or all.
                let mut tids = [0i32; SOAK_DEPTH + 1];
                let mut n = 0;
                if sh.set_tid && (r >> 20) & 7 == 0 {
                    let r2 = next_rand(&mut rng);
                    n = if (r2 & 1 == 0) || !deep {
                        1
                    } else {
                        SOAK_DEPTH + 1
                    };
                    for (i, t) in tids[..n].iter_mut().enumerate() {
                        *t = 2 + ((r2 >> (8 + 12 * i)) % 1000) as i32;
                    }
                    sh.set_tids.fetch_add(1, Ordering::Relaxed);
                }
                match alloc_pid(ns, &tids[..n], version, true) {
                    Err(Errno::EEXIST) if n > 0 => {
                        sh.eexist.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(pid) => {
                        sh.claim(cpu, &pid)?;
                        sh.allocs[version.alloc as usize].fetch_add(1, Ordering::Relaxed);
                        sh.allocs_by_depth[usize::from(deep)].fetch_add(1, Ordering::Relaxed);
                        live.push(pid);
                        most = most.max(live.len());
                    }
                    Err(Errno::ENOMEM) => {
                        sh.enomem.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(format!("CPU {cpu}: alloc_pid failed with {e}")),
                }
            } else {
                let pid = live.swap_remove((r >> 8) as usize % live.len());
                if (r >> 3) & 15 == 0 {
                    let u = &pid.numbers()[0];
                    match find_pid_ns(u.nr, u.ns()) {
                        Some(found) if PidRef::ptr_eq(&found, &pid) => {}
                        _ => {
                            return Err(format!(
                                "CPU {cpu}: find_pid_ns({}) lost a live pid",
                                u.nr
                            ));
                        }
                    }
                }
                sh.release(&pid);
                let version = if sh.lockfree {
                    &LOCKLESS
                } else {
                    &PAIRS[(r >> 12) as usize % PAIRS.len()]
                };
                free_pid(pid, version);
                sh.frees.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    })();
    for pid in live.drain(..) {
        sh.release(&pid);
        free_pid(pid, sh.setup());
        sh.frees.fetch_add(1, Ordering::Relaxed);
    }
    if let Err(msg) = result {
        sh.fail(msg);
    }
    let pool = idr_preload_count();
    if pool > IDR_PRELOAD_SIZE {
        sh.fail(format!(
            "CPU {cpu}: preload pool holds {pool} > {IDR_PRELOAD_SIZE} nodes"
        ));
    }
    sh.ops.fetch_add(done, Ordering::Relaxed);
    sh.max_live.fetch_max(most, Ordering::Relaxed);
    sh.max_pool.fetch_max(pool, Ordering::Relaxed);
}

/// How to soak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SoakConfig {
    /// Operations in all, split evenly over the CPUs.
    pub(crate) total_ops: u64,
    /// CPUs to run on (at most the `Parallel`'s).
    pub(crate) cpus: usize,
    /// Most pids one CPU holds at once.
    pub(crate) max_live_per_cpu: usize,
    /// If not 0, each CPU makes every `fail_every`-th pid struct
    /// allocation, IDR node cache allocation and preload pool take of its
    /// own fail (fault injection, armed for the parallel phase only); the
    /// soak must ride the ENOMEMs out.
    pub(crate) fail_every: u32,
    /// Soak the lock-free strategy in a lock-free tree instead of the
    /// Linux versions.
    pub(crate) lockfree: bool,
    /// One allocation in eight asks for a random `set_tid` (EEXIST when
    /// taken is counted, not an error).
    pub(crate) set_tid: bool,
}

impl SoakConfig {
    /// `total_ops` on `cpus` CPUs, 64 live pids per CPU, no injection.
    pub(crate) fn new(total_ops: u64, cpus: usize) -> Self {
        SoakConfig {
            total_ops,
            cpus,
            max_live_per_cpu: 64,
            fail_every: 0,
            lockfree: false,
            set_tid: false,
        }
    }
}

/// Runs the soak on `cpus` CPUs of `par` (at most `par.cpus()`), about
/// `total_ops` operations in all, each CPU holding at most 64 pids.
pub(crate) fn pid_soak(
    par: &dyn Parallel,
    total_ops: u64,
    cpus: usize,
) -> Result<SoakReport, String> {
    pid_soak_with(par, &SoakConfig::new(total_ops, cpus))
}

/// [`pid_soak`] with every knob.
///
/// Setup: a private root (so it shares nothing with `init_pid_ns` but
/// `pidmap_lock`; lock-free if [`SoakConfig::lockfree`]) and a chain of
/// three children, each with an init (pid 1) and a reaper. Each CPU then runs its share of `total_ops` ([`worker`]).
///
/// Checked while running: see [`Shared`]. Checked after: every IDR holds
/// just the inits again with the nodes it started with, every
/// `pid_allocated` is back to its start, every participating CPU's preload
/// pool is within its bound; and once the inits are freed, every IDR is
/// empty with no nodes and every namespace is dead (`pid_allocated` 0).
/// A lock-free map keeps its inner nodes until it is dropped, and its
/// cursor's leaf: there, both times, the node counter must match the
/// nodes linked and no other leaf may be linked empty
/// ([`lockfree_nodes_problem`]).
/// ENOMEM (a real or injected allocation failure) is counted, not an
/// error; any other error fails the soak with a message. With
/// [`SoakConfig::fail_every`] the CPUs inject such failures themselves,
/// which exercises every rollback path under contention.
pub(crate) fn pid_soak_with(par: &dyn Parallel, cfg: &SoakConfig) -> Result<SoakReport, String> {
    let SoakConfig {
        total_ops,
        cpus,
        max_live_per_cpu,
        fail_every,
        lockfree,
        set_tid,
    } = *cfg;
    if cpus == 0 || cpus > par.cpus() {
        return Err(format!("pid_soak: asked for {cpus} CPUs of {}", par.cpus()));
    }
    // Each level's reaper; declared first so it outlives the namespaces.
    let reaper = Task::adopt("soak-reaper", platform::cpu_id())
        .map_err(|_| String::from("pid_soak: no memory for the reaper"))?;
    let (root, setup) = if lockfree {
        (PidNamespace::new_root_lockless(), &LOCKLESS)
    } else {
        (PidNamespace::new_root(), StrategyPair::stock())
    };
    let mut nss = alloc::vec![root];
    let mut inits = Vec::new();
    for level in 0..=SOAK_DEPTH {
        let ns = nss[level].clone();
        let init = alloc_pid(&ns, &[], setup, false)
            .map_err(|e| format!("pid_soak: init of level {level}: {e}"))?;
        ns.set_child_reaper(Some(Reaper::of(&reaper)));
        inits.push(init);
        if level < SOAK_DEPTH {
            nss.push(create_pid_namespace(&ns).map_err(|e| format!("pid_soak: namespace: {e}"))?);
        }
    }
    let owners = nss
        .iter()
        .map(|ns| (0..ns.pid_max()).map(|_| AtomicU32::new(0)).collect())
        .collect();
    let start: Vec<PidNsStats> = nss.iter().map(|ns| ns.stats()).collect();
    let sh = Shared {
        nss,
        owners,
        stop: AtomicBool::new(false),
        error: named_spin_lock("pid_soak", None),
        lockfree,
        set_tid,
        allocs: [const { AtomicU64::new(0) }; 3],
        set_tids: AtomicU64::new(0),
        eexist: AtomicU64::new(0),
        allocs_by_depth: [AtomicU64::new(0), AtomicU64::new(0)],
        frees: AtomicU64::new(0),
        enomem: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        max_live: AtomicUsize::new(0),
        max_pool: AtomicUsize::new(0),
    };
    for (pid, level) in inits.iter().zip(0..) {
        sh.claim(usize::MAX - 1, pid)
            .map_err(|e| format!("pid_soak: init of level {level}: {e}"))?;
    }
    let per_cpu = total_ops / cpus as u64;
    let extra = total_ops % cpus as u64;
    let t0 = platform::cycles();
    par.run(cpus, &|cpu| {
        let ops = per_cpu + u64::from((cpu as u64) < extra);
        let me = Some(platform::cpu_id());
        if fail_every > 0 {
            fault_inject(FaultSite::PidAlloc, FaultMode::FailEvery(fail_every), me);
            fault_inject(FaultSite::NodeAlloc, FaultMode::FailEvery(fail_every), me);
            fault_inject(FaultSite::PreloadTake, FaultMode::FailEvery(fail_every), me);
        }
        worker(&sh, cpu, ops, max_live_per_cpu.max(1));
        if fail_every > 0 {
            fault_inject(FaultSite::PidAlloc, FaultMode::Off, me);
            fault_inject(FaultSite::NodeAlloc, FaultMode::Off, me);
            fault_inject(FaultSite::PreloadTake, FaultMode::Off, me);
        }
    });
    let cycles = platform::cycles() - t0;
    if let Some(msg) = sh.error.lock().take() {
        return Err(format!("pid_soak: {msg}"));
    }
    let mut problems = Vec::new();
    for (level, (ns, before)) in sh.nss.iter().zip(&start).enumerate() {
        problems.extend(lockfree_nodes_problem(ns).map(|p| format!("level {level}: {p}")));
        let now = ns.stats();
        let nodes = |st: &PidNsStats| if lockfree { 0 } else { st.nodes };
        if (now.ids, nodes(&now), now.pid_allocated)
            != (before.ids, nodes(before), before.pid_allocated)
        {
            problems.push(format!(
                "level {level}: ids/nodes/pid_allocated {}/{}/{:#x}, started {}/{}/{:#x}",
                now.ids,
                now.nodes,
                now.pid_allocated,
                before.ids,
                before.nodes,
                before.pid_allocated
            ));
        }
    }
    for pid in inits.into_iter().rev() {
        free_pid(pid, setup);
    }
    for (level, ns) in sh.nss.iter().enumerate() {
        problems.extend(
            lockfree_nodes_problem(ns).map(|p| format!("level {level} after its init: {p}")),
        );
        let now = ns.stats();
        let nodes = if lockfree { 0 } else { now.nodes };
        if (now.ids, nodes, now.pid_allocated) != (0, 0, 0) {
            problems.push(format!(
                "level {level} after its init: ids/nodes/pid_allocated {}/{}/{:#x}, want 0/0/0",
                now.ids, now.nodes, now.pid_allocated
            ));
        }
    }
    let pool = idr_preload_count();
    if pool > IDR_PRELOAD_SIZE {
        problems.push(format!("this CPU's preload pool holds {pool} nodes"));
    }
    if !problems.is_empty() {
        return Err(format!("pid_soak: {}", problems.join("; ")));
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Ok(SoakReport {
        cpus,
        ops: load(&sh.ops),
        allocs: sh.allocs.each_ref().map(load),
        set_tid: load(&sh.set_tids),
        eexist: load(&sh.eexist),
        allocs_by_depth: [load(&sh.allocs_by_depth[0]), load(&sh.allocs_by_depth[1])],
        frees: load(&sh.frees),
        enomem: load(&sh.enomem),
        max_live_per_cpu: sh.max_live.load(Ordering::Relaxed),
        max_pool: sh.max_pool.load(Ordering::Relaxed).max(pool),
        cycles,
    })
}

/// What is wrong with a quiet lock-free map's nodes, if `ns` has one: its
/// node counter must match the nodes linked, and no leaf but the cursor's
/// may be linked empty (every emptied leaf is reclaimed).
fn lockfree_nodes_problem(ns: &PidNamespace) -> Option<String> {
    let lf = ns.lockfree()?;
    let census = lf.idr.census();
    let counted = lf.idr.nr_nodes();
    (census.nodes() != counted || census.idle_leaves != 0).then(|| {
        format!(
            "{counted} nodes counted, {} inner and {} leaves linked, {} of them empty outside the cursor's",
            census.inner, census.leaves, census.idle_leaves
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::HostThreads;

    #[test]
    fn soak_on_host_threads() {
        let report = pid_soak(&HostThreads(4), 40_000, 4).unwrap();
        assert_eq!(report.ops, 40_000);
        assert!(report.allocs[..2].iter().all(|&n| n > 1000), "{report}");
        assert_eq!(report.allocs[2], 0, "{report}");
        assert!(report.allocs_by_depth.iter().all(|&n| n > 1000), "{report}");
        assert_eq!(report.enomem, 0);
        assert!(report.max_pool <= IDR_PRELOAD_SIZE);
        assert!(
            report
                .to_string()
                .starts_with("pid_soak: 40000 ops on 4 CPUs")
        );
    }

    #[test]
    fn soak_rides_out_injected_enomem() {
        let cfg = SoakConfig {
            max_live_per_cpu: 200,
            fail_every: 4,
            ..SoakConfig::new(20_000, 2)
        };
        let report = pid_soak_with(&HostThreads(2), &cfg).unwrap();
        assert!(report.enomem > 100, "{report}");
    }

    /// A longer soak by hand:
    /// `cargo test --release -p pidlab-kernel soak_long -- --ignored --nocapture`
    #[test]
    #[ignore = "takes seconds; run by hand with --release"]
    fn soak_long() {
        for fail_every in [0, 7] {
            let cfg = SoakConfig {
                fail_every,
                ..SoakConfig::new(2_000_000, 8)
            };
            let report = pid_soak_with(&HostThreads(8), &cfg).unwrap();
            std::println!("{report}");
        }
    }

    #[test]
    fn lockfree_soak_with_set_tid_and_injected_failures() {
        let cfg = SoakConfig {
            max_live_per_cpu: 200,
            fail_every: 5,
            lockfree: true,
            set_tid: true,
            ..SoakConfig::new(40_000, 4)
        };
        let report = pid_soak_with(&HostThreads(4), &cfg).unwrap();
        assert_eq!(report.allocs[..2], [0, 0], "{report}");
        assert!(report.allocs[2] > 1000, "{report}");
        assert!(report.enomem > 100, "{report}");
        assert!(report.set_tid > 100 && report.eexist > 0, "{report}");
    }

    #[test]
    fn too_many_cpus_is_an_error() {
        assert!(pid_soak(&HostThreads(2), 10, 3).is_err());
    }
}
