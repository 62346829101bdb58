//! Running threadspawn: samples, re-runs over `max_steal`, the report.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::ThreadspawnParams;
use super::report::{Attempt, Cell, RunInfo, fixed2, host_bound, print_report};
use super::worker::{Measured, SampleSpec, run_sample};
use crate::arch::smp;
use crate::bench::accel_name;
use crate::klib::idr::lockfree::lf_stats_total;
use crate::perf;
use crate::pid::namespace::PidNamespace;
use crate::selftest::invariants::{Baseline, heap_fallthroughs};
use crate::strategy::{LOCKLESS, StrategyPair};
use crate::sync::choice::{LockAlgo, lock_algo};
use crate::sync::{lockstat, pvticket};
use crate::task::exit::request_exit;
use crate::task::fork::{current_ns, ns_chain};
use crate::task::stats::{proc_stats, proc_stats_cpu};
use crate::task::wait::wait_child;
use pidlab_abi::Accel;

/// How many times a sample over `max_steal` is run again.
const MAX_RERUNS: u32 = 2;

/// The untimed run of each version after its code's translation is
/// dropped (`retranslate`), in which QEMU translates it again.
const RETRANSLATE_WARM_MS: u32 = 5;

/// The lengths of a round's two halves: `sample_ms` split in two, each at
/// least 1 ms.
fn halves_ms(sample_ms: u32) -> [u32; 2] {
    let first = sample_ms.div_ceil(2);
    [first, (sample_ms - first).max(1)]
}

/// Prints where the guest placed what every op touches first: the pid
/// namespace, the next task and kernel stack the driver's CPU would get,
/// and the heap's bytes in use. The kernel and the command fix them, so
/// they read the same in every boot (`--boots` compares them, a test
/// holds it): what differs between boots is then not where the benchmark
/// starts with the guest's objects.
fn print_layout(ns: &alloc::sync::Arc<PidNamespace>) {
    let slot = |cache: &crate::mm::cache::ObjCache| {
        let obj = cache.alloc();
        if let Some(obj) = obj {
            // SAFETY: `obj` came from this cache's `alloc` just now and is
            // neither written nor used again.
            unsafe { cache.free(obj) };
        }
        obj.map_or(0, |p| p.as_ptr() as usize)
    };
    let task = slot(crate::task::task_cache());
    let stack = slot(crate::task::stack_cache());
    println!(
        "threadspawn: layout ns {:#x}, task {task:#x}, stack {stack:#x}, heap used {} (the same in every boot of this kernel and command)",
        alloc::sync::Arc::as_ptr(ns) as usize,
        crate::mm::heap::HEAP.stats().used,
    );
}

/// Runs the benchmark as configured and prints its report; an error for a
/// configuration the machine cannot run or a failed invariant check.
pub(crate) fn run(
    p: &ThreadspawnParams,
    accel: Option<Accel>,
    host_cpus: Option<u32>,
) -> Result<(), String> {
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
    // A fresh random order of the versions every round (no version always
    // runs first, right after the previous one's drain), replayable; the
    // round then runs it backwards (see the loop below).
    let seed = p
        .seed
        .unwrap_or_else(|| crate::platform::cycles().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 1);
    let mut rng = crate::bench::rng_state(seed);
    let retranslate = p.retranslate.unwrap_or(accel != Some(Accel::Kvm));
    println!(
        "threadspawn: {online} cpus online, workers {}, strategies {}, {} samples x {} ms after 1 warm-up round (each round mirrored: the versions in a random order, then reversed, each for half of a sample), ns_depth {}, placement {}, max_steal {}%, accel {}, lock {}, lockstat {}, nohz {}, seed {seed} (rounds in random order; seed= replays them), retranslate {} (each round, QEMU translates the kernel's code again, in the round's order), softtlb {}",
        wl.join(","),
        names.join(","),
        p.samples,
        p.sample_ms,
        p.ns_depth,
        p.placement.name(),
        p.max_steal,
        accel_name(accel),
        lock_algo().name(),
        if p.lockstat { "on" } else { "off" },
        if crate::task::nohz::enabled() {
            "on"
        } else {
            "off"
        },
        if retranslate { "on" } else { "off" },
        match crate::bench::softtlb::grown() {
            Some(n) => format!("{n} (QEMU's software TLB on every CPU)"),
            None => String::from("off"),
        }
    );
    println!(
        "threadspawn: each op = copy_process(CLONE_THREAD) on the CPU the placement picks + join at the thread's mm_release (its exit_notify and release_task overlap the next op)"
    );
    let versions: Vec<String> = strategies
        .iter()
        .map(|v| format!("{} = Linux {}", v.name, v.kernel))
        .collect();
    println!("threadspawn: versions: {}", versions.join(", "));

    let base = Baseline::take();
    let heap_before = heap_fallthroughs();
    let lf_before = lf_stats_total();
    let forks_before = proc_stats().forks;
    let ran_before: Vec<u64> = (0..online).map(|c| proc_stats_cpu(c).ran).collect();
    // The namespace chain, each level with a parked init (pid 1 there);
    // the lock-free strategy's in a lock-free tree of its own, whose root
    // has a parked init too.
    let (mut chain, ns) = ns_chain(current_ns(), p.ns_depth, false, StrategyPair::stock())
        .map_err(|e| format!("ns_depth: {e:?}"))?;
    let lf = if strategies.iter().any(|s| s.lockless()) {
        let root = PidNamespace::new_root_lockless();
        Some(
            ns_chain(root, p.ns_depth, true, &LOCKLESS)
                .map_err(|e| format!("ns_depth (lock-free tree): {e:?}"))?,
        )
    } else {
        None
    };
    print_layout(&ns);
    let was = lockstat::set_enabled(p.lockstat);

    let mut cells: Vec<Cell> = Vec::new();
    for &w in &workers {
        let first = cells.len();
        for &s in strategies {
            cells.push(Cell {
                workers: w,
                strategy: s,
                samples: Vec::new(),
                attempts: Vec::new(),
            });
        }
        let spec = |strategy: &'static StrategyPair, sample_ms| SampleSpec {
            ns: match &lf {
                Some((_, lf_ns)) if strategy.lockless() => lf_ns,
                _ => &ns,
            },
            workers: w,
            strategy,
            sample_ms,
            placement: p.placement,
        };
        // Warm-up: one short round of every strategy.
        for &s in strategies {
            run_sample(spec(s, p.sample_ms.min(200)))?;
        }
        // Each round is mirrored: the versions in a fresh random order, then
        // the same order reversed, each run for half of `sample_ms`. Every
        // version's mean position in the round is then the same, so a host
        // drift that is linear over the round cancels out of its ratios.
        let halves = halves_ms(p.sample_ms);
        let mut dropped_pages = 0;
        for round in 0..p.samples {
            let order = crate::bench::shuffled(strategies.len(), &mut rng);
            if retranslate {
                // QEMU translates the code again as the versions first run
                // it, in this round's order: where each version's code lands
                // in the host's code buffer is redrawn every round. The
                // translating is done in short untimed runs.
                dropped_pages = crate::arch::retranslate::drop_translations();
                for &i in &order {
                    run_sample(spec(strategies[i], RETRANSLATE_WARM_MS))?;
                }
            }
            let slots = order.len() * 2;
            let mut kept: Vec<Option<(Measured, u32)>> = alloc::vec![None; strategies.len()];
            let sequence = order.iter().chain(order.iter().rev());
            for (position, &i) in sequence.enumerate() {
                let half = position / order.len();
                let ms = halves[half];
                let s = strategies[i];
                let cell = &mut cells[first + i];
                // The attempt with the least steal is kept.
                let mut best: Option<(usize, Measured)> = None;
                // A host-bound worker count's steal is the host's by
                // construction: running it again cannot help.
                let reruns = if host_bound(p.placement, online, host_cpus, w) {
                    0
                } else {
                    MAX_RERUNS
                };
                for attempt in 0..=reruns {
                    // The profiler's samples meanwhile are this version's.
                    let tag = perf::active().then(|| perf::tag(s.name, w as u32));
                    perf::set_tag(tag);
                    let m = run_sample(spec(s, ms));
                    perf::set_tag(None);
                    let m = m?;
                    if let Some(tag) = tag {
                        perf::add_ops(tag, m.ops);
                    }
                    let over = m.steal_x100 > p.max_steal as u64 * 100;
                    let again = over && attempt < reruns;
                    println!(
                        "threadspawn: workers {w} sample {}/{} {}: {} ops/s, steal {}%{}{}{} [position {} of {slots}, half {} of 2]",
                        round + 1,
                        p.samples,
                        s.name,
                        m.ops_per_sec,
                        fixed2(m.steal_x100),
                        match (over, again) {
                            (true, true) => format!(
                                " (over max_steal {}%: run again, {} of {reruns})",
                                p.max_steal,
                                attempt + 1
                            ),
                            (true, false) if reruns == 0 => String::from(
                                " (host-bound: the steal is the host's, not run again)",
                            ),
                            (true, false) => format!(
                                " (over max_steal {}%: keeping the attempt with the least steal)",
                                p.max_steal
                            ),
                            _ => String::new(),
                        },
                        if m.failures > 0 {
                            format!(" ({} failed spawns)", m.failures)
                        } else {
                            String::new()
                        },
                        match m.line_ns {
                            Some(ns) => format!(", line {ns} ns"),
                            None => String::new(),
                        },
                        position + 1,
                        half + 1
                    );
                    cell.attempts.push(Attempt {
                        round: round + 1,
                        position: position as u32 + 1,
                        half: half as u32 + 1,
                        ms,
                        attempt: attempt + 1,
                        ops_per_sec: m.ops_per_sec,
                        steal_x100: m.steal_x100,
                        line_ns: m.line_ns,
                        kept: false,
                    });
                    if best.is_none_or(|(_, b)| m.steal_x100 < b.steal_x100) {
                        best = Some((cell.attempts.len() - 1, m));
                    }
                    if !again {
                        break;
                    }
                }
                let (at, m) = best.expect("at least one attempt");
                cell.attempts[at].kept = true;
                // The round's sample is its two halves together.
                kept[i] = Some(match kept[i].take() {
                    None => (m, ms),
                    Some((a, ms_a)) => (a.joined(ms_a, &m, ms), ms_a + ms),
                });
            }
            for (i, k) in kept.into_iter().enumerate() {
                let (m, _) = k.expect("both halves of every version ran");
                cells[first + i].samples.push(m);
            }
        }
        if retranslate {
            println!(
                "threadspawn: workers {w}: QEMU's translation of the kernel's code dropped before each of {} rounds ({dropped_pages} pages of text)",
                p.samples
            );
        }
    }
    lockstat::set_enabled(was);
    let lf_ns = lf.map(|(lf_chain, lf_ns)| {
        chain.extend(lf_chain);
        lf_ns
    });
    while let Some(init) = chain.pop() {
        request_exit(&init, 0);
        wait_child(Some(&init)).map_err(|e| format!("reaping ns init: {e:?}"))?;
    }
    drop(ns);
    drop(lf_ns);
    if let Some(n) = crate::bench::softtlb::grown() {
        // The CPUs the rounds ran a task on (the others' tables are not the
        // benchmark's, and probing them would run a task there).
        let cpus: Vec<usize> = (0..online)
            .filter(|&c| proc_stats_cpu(c).ran > ran_before[c])
            .collect();
        println!(
            "threadspawn: after the rounds, {}",
            crate::bench::softtlb::check(&cpus, n)?
        );
    }
    print_report(
        &cells,
        &RunInfo {
            ns_depth: p.ns_depth,
            rounds: p.samples,
            sample_ms: p.sample_ms,
            placement: p.placement,
            max_steal: p.max_steal,
            lockstat: p.lockstat,
            online,
            accel,
            host_cpus,
        },
    );
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
    if strategies.iter().any(|s| s.lockless()) {
        let (a, b) = (lf_stats_total(), lf_before);
        println!(
            "lockless: the lock-free maps' slow paths in this run: {} claims lost a race for their bit, {} cursor updates raced, {} nodes installed ({} lost the install race), {} node allocations failed, {} emptied leaves reclaimed ({} reclaims called off), {} claims met a dying leaf, {} full hints taken back",
            a.claim_races - b.claim_races,
            a.cursor_races - b.cursor_races,
            a.node_installs - b.node_installs,
            a.install_races - b.install_races,
            a.node_alloc_failures - b.node_alloc_failures,
            a.reclaims - b.reclaims,
            a.reclaims_aborted - b.reclaims_aborted,
            a.dead_leaves - b.dead_leaves,
            a.hint_retracts - b.hint_retracts
        );
    }
    if lock_algo() == LockAlgo::PvTicket {
        let [halts, kicks, sweeps] = pvticket::stats();
        println!(
            "locks: pv-ticket since boot: {halts} halts, {kicks} kicks by unlocks, {sweeps} by the timer sweep"
        );
    }
    base.check().map_err(|e| format!("invariants: {e}"))?;
    println!("invariants: ok");
    Ok(())
}
