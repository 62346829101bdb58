//! In-kernel test cases, selected at run time with `test=a,b,...`.
//!
//! One kernel image serves every in-QEMU test: the host side boots it with
//! the cases it wants and judges the run by exit status and serial output.
//! Cases that are meant to fail the run (a panic, a fault, a hang) prove that
//! the harness notices those failures. Each case prints `selftest NAME: start`
//! and, if it returns, `selftest NAME: ok`.

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::arch::smp;
use crate::arch::{irq, percpu, pit, time};
use crate::mm::heap::HEAP;
use crate::platform::{self, Parallel};
use crate::task::sched;
use crate::task::sched::Cpus;
use crate::task::{read_lock_tasklist, tasklist_writer_waiting, write_lock_irq_tasklist};
use crate::task::{stack_cache, task_cache};

type Case = fn();

const CASES: &[(&str, Case)] = &[
    ("heap", heap_round_trip),
    ("panic", deliberate_panic),
    ("pagefault", page_fault),
    ("stackoverflow", stack_overflow),
    ("oom", out_of_memory),
    ("hang", hang),
    ("smp", smp_ticks_and_indices),
    ("appanic", ap_panic),
    ("tsc", tsc_agrees_with_pit),
    ("sched", sched_spawn_join),
    ("ticket", ticket_lock_exact_and_fair),
    ("fork", procs::fork_smoke),
    ("forkstress", procs::fork_stress),
    ("threads", procs::threads),
    ("pidns", procs::pid_namespaces),
    ("badargs", procs::bad_args),
    ("pidsoak", procs::pid_soak),
    ("tasklist", tasklist_irq_readers_and_writers),
    ("lockctx", procs::lock_contexts),
    ("rcu", rcu::readers_and_updater),
    ("rcu-stall", rcu::reader_that_never_ends),
];

use super::{procs, rcu};

/// A `test=` list naming a case the kernel does not have.
pub struct UnknownCase<'a>(&'a str);

impl fmt::Display for UnknownCase<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown test case `{}` (known:", self.0)?;
        for (name, _) in CASES {
            write!(f, " {name}")?;
        }
        write!(f, ")")
    }
}

/// Checks every name in `list` before anything runs.
pub fn validate(list: &str) -> Result<(), UnknownCase<'_>> {
    for name in list.split(',').filter(|n| !n.is_empty()) {
        if !CASES.iter().any(|(n, _)| *n == name) {
            return Err(UnknownCase(name));
        }
    }
    Ok(())
}

/// Runs the cases in `list`, in order.
pub fn run(list: &str) {
    for name in list.split(',').filter(|n| !n.is_empty()) {
        let (_, case) = CASES.iter().find(|(n, _)| *n == name).expect("validated");
        println!("selftest {name}: start");
        case();
        println!("selftest {name}: ok");
    }
}

/// Allocations of many sizes come back, and the heap returns to where it was.
fn heap_round_trip() {
    let before = HEAP.stats().used;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for i in 0..2000usize {
        let size = 1 + (i * 7919) % 9000;
        let mut v = Vec::with_capacity(size);
        v.resize(size, i as u8);
        blocks.push(v);
    }
    for (i, b) in blocks.iter().enumerate() {
        assert!(b.iter().all(|&x| x == i as u8), "block {i} corrupted");
    }
    let during = HEAP.stats().used;
    assert!(
        during > before,
        "heap use did not grow: {before} -> {during}"
    );
    drop(blocks);
    let after = HEAP.stats().used;
    assert_eq!(before, after, "heap bytes in use before and after differ");
    println!("selftest heap: {before} bytes in use before, {during} during, {after} after");
}

fn deliberate_panic() {
    panic!("selftest: deliberate panic");
}

fn page_fault() {
    let addr = core::ptr::dangling::<u64>();
    // SAFETY: deliberately unsound: reads the unmapped null page to check
    // that the page-fault handler reports the fault and fails the run.
    let value = unsafe { core::ptr::read_volatile(addr) };
    println!("selftest pagefault: read {value:#x} from {addr:p} without a fault");
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let pad = [depth; 64];
    core::hint::black_box(&pad);
    recurse(depth + 1) + core::hint::black_box(pad[3])
}

fn stack_overflow() {
    let n = recurse(0);
    println!("selftest stackoverflow: returned {n}");
}

fn out_of_memory() {
    let huge = HEAP.stats().size * 2;
    let v: Vec<u8> = Vec::with_capacity(huge);
    println!("selftest oom: got {} bytes", v.capacity());
}

fn hang() {
    println!("selftest hang: spinning forever");
    loop {
        core::hint::spin_loop();
    }
}

/// Every online CPU takes timer ticks, and each runs work under its own
/// distinct index.
fn smp_ticks_and_indices() {
    let n = smp::online();
    let before: Vec<u64> = (0..n).map(|i| percpu::cpu(i).ticks()).collect();
    time::delay_us(200_000);
    let after: Vec<u64> = (0..n).map(|i| percpu::cpu(i).ticks()).collect();
    for i in 0..n {
        println!(
            "selftest smp: cpu {i} apic {} ticks +{} in 200 ms",
            smp::apic_id_of(i),
            after[i] - before[i]
        );
        assert!(after[i] > before[i], "cpu {i} took no timer tick in 200 ms");
    }
    let seen: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(u32::MAX)).collect();
    Cpus.run(n, &|worker| {
        seen[worker].store(percpu::cpu_index(), Ordering::Relaxed);
    });
    for (worker, s) in seen.iter().enumerate() {
        let index = s.load(Ordering::Relaxed);
        assert_eq!(index as usize, worker, "worker {worker} ran on cpu {index}");
    }
    println!("selftest smp: {n} cpus, indices distinct, every cpu ticking");
}

fn ap_panic() {
    let n = smp::online();
    assert!(n >= 2, "appanic needs at least two CPUs");
    println!("selftest appanic: cpu {} will panic", n - 1);
    Cpus.run(n, &|worker| {
        if worker == n - 1 {
            panic!("selftest: deliberate panic on an AP");
        }
    });
}

/// 100 ms by the PIT measured with the TSC clock: within 10%.
fn tsc_agrees_with_pit() {
    let cycles = pit::measure_tsc_over_ms(100);
    let us = time::cycles_to_ns(cycles) / 1000;
    println!("selftest tsc: 100 ms by the PIT = {us} us by the TSC clock ({cycles} cycles)");
    assert!(
        (90_000..=110_000).contains(&us),
        "TSC and PIT disagree: 100 ms by the PIT took {us} us by the TSC"
    );
}

fn noop(_: usize) {}

fn exit_with_arg(code: usize) {
    sched::exit_current(code as i32);
}

/// Every CPU spawns and joins kernel tasks (no pids yet); a cross-CPU join
/// works; tasks and stacks go back to the caches.
fn sched_spawn_join() {
    const PER_CPU: u64 = 2000;
    let n = smp::online();
    let heap_before = HEAP.stats().used;
    let cycles: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    Cpus.run(n, &|w| {
        let start = platform::cycles();
        for _ in 0..PER_CPU {
            let t = sched::spawn_on("child", w, noop, 0).expect("spawn");
            assert_eq!(sched::join(&t), 0);
        }
        cycles[w].store(platform::cycles() - start, Ordering::Relaxed);
    });
    for (cpu, c) in cycles.iter().enumerate() {
        println!(
            "selftest sched: cpu {cpu}: {} cycles per spawn+join of a kernel task",
            c.load(Ordering::Relaxed) / PER_CPU
        );
    }
    if n > 1 {
        let t = sched::spawn_on("remote", n - 1, exit_with_arg, 42).expect("spawn");
        assert_eq!(sched::join(&t), 42, "cross-CPU join lost the exit code");
    }
    let (tc, sc) = (task_cache().stats(), stack_cache().stats());
    println!(
        "selftest sched: task cache {} hits / {} heap allocs, stack cache {} hits / {} heap allocs",
        tc.hits, tc.heap_allocs, sc.hits, sc.heap_allocs
    );
    let bound = task_cache().max_cached_bytes() + stack_cache().max_cached_bytes();
    let heap_after = HEAP.stats().used;
    assert!(
        heap_after <= heap_before + bound,
        "heap grew by {} bytes, more than the caches can hold ({bound})",
        heap_after - heap_before
    );
}

/// Every CPU adds 1 to a plain (non-atomic) counter 100,000 times under the
/// ticket lock: the total is exact. Then every CPU takes the lock for a
/// fixed time: FIFO hand-off keeps each CPU's share of acquisitions within
/// a factor of 2 of the fair share.
fn ticket_lock_exact_and_fair() {
    use crate::sync::ticket::{named_spin_lock, named_spin_lock_irq};
    const PER_CPU: u64 = 100_000;
    let n = smp::online();
    let t0 = time::now_ns();
    let counter = named_spin_lock("selftest_counter", 0u64);
    Cpus.run(n, &|_| {
        for _ in 0..PER_CPU {
            let mut g = counter.lock();
            // A read-modify-write that is only correct under mutual exclusion.
            let v = core::hint::black_box(*g);
            *g = v + 1;
        }
    });
    let total = *counter.lock();
    println!(
        "selftest ticket: {n} cpus x {PER_CPU} increments = {total} in {} ms",
        (time::now_ns() - t0) / 1_000_000
    );
    assert_eq!(
        total,
        n as u64 * PER_CPU,
        "lost updates under the ticket lock"
    );

    let lock = named_spin_lock_irq("selftest_fair", ());
    let counts: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let stop = time::now_ns() + 500_000_000;
    Cpus.run(n, &|w| {
        let mut mine = 0u64;
        while time::now_ns() < stop {
            let g = lock.lock();
            assert!(
                !platform::irqs_enabled(),
                "IF=1 inside a spin_lock_irq section"
            );
            drop(g);
            mine += 1;
        }
        counts[w].store(mine, Ordering::Relaxed);
    });
    let all: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let sum: u64 = all.iter().sum();
    println!("selftest ticket: acquisitions per cpu in 500 ms: {all:?}");
    if n > 1 {
        let fair = sum / n as u64;
        for (cpu, &c) in all.iter().enumerate() {
            assert!(
                c * 2 >= fair && c <= fair * 2,
                "cpu {cpu} got {c} acquisitions, fair share {fair}: FIFO hand-off broken?"
            );
        }
    }
}

/// What the `tasklist` case's timer hook saw on one CPU.
struct TasklistIrqCounts {
    /// Read holds taken by the timer interrupt.
    reads: AtomicU64,
    /// ... of which interrupted this CPU's own task-context read hold: the
    /// case where queueing behind a waiting writer would deadlock.
    nested: AtomicU64,
    /// ... of which began while a writer was waiting (and so went past it).
    writer_waiting: AtomicU64,
}

static TASKLIST_IRQ: [TasklistIrqCounts; percpu::MAX_CPUS] = [const {
    TasklistIrqCounts {
        reads: AtomicU64::new(0),
        nested: AtomicU64::new(0),
        writer_waiting: AtomicU64::new(0),
    }
}; percpu::MAX_CPUS];
/// Whether this CPU's task holds `tasklist_lock` for reading.
static TASKLIST_TASK_READING: [AtomicBool; percpu::MAX_CPUS] =
    [const { AtomicBool::new(false) }; percpu::MAX_CPUS];
/// Writers inside `tasklist_lock` (must be 0 or 1, and 0 under a read hold).
static TASKLIST_WRITERS: AtomicU32 = AtomicU32::new(0);

/// The `tasklist` case's timer hook: `read_lock(&tasklist_lock)` in
/// interrupt context, on every CPU, on every tick.
fn tasklist_irq_reader() {
    let cpu = platform::cpu_id();
    let waiting = tasklist_writer_waiting();
    let guard = read_lock_tasklist();
    assert_eq!(
        TASKLIST_WRITERS.load(Ordering::Relaxed),
        0,
        "an interrupt reader of tasklist_lock got in beside a writer"
    );
    let counts = &TASKLIST_IRQ[cpu];
    counts.reads.fetch_add(1, Ordering::Relaxed);
    if TASKLIST_TASK_READING[cpu].load(Ordering::Relaxed) {
        counts.nested.fetch_add(1, Ordering::Relaxed);
    }
    if waiting {
        counts.writer_waiting.fetch_add(1, Ordering::Relaxed);
    }
    drop(guard);
}

/// Spins with `pause` (IRQs as they are) for about `ns` nanoseconds.
fn spin_ns(ns: u64) {
    let end = time::now_ns() + ns;
    while time::now_ns() < end {
        platform::cpu_relax();
    }
}

/// For 2 s every CPU write-locks `tasklist_lock` with `write_lock_irq`
/// (asserting IF=0 inside) and then holds it for reading with IRQs on, while
/// every CPU's timer interrupt takes it for reading. No deadlock: each CPU
/// keeps taking ticks, the interrupt readers get in many times, also on top
/// of their own CPU's read hold while a writer elsewhere waits (a reader
/// that queued behind that writer would never get in).
fn tasklist_irq_readers_and_writers() {
    const RUN_NS: u64 = 2_000_000_000;
    let n = smp::online();
    assert!(n >= 2, "tasklist needs at least two CPUs");
    let writes: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let ticks_before: Vec<u64> = (0..n).map(|i| percpu::cpu(i).ticks()).collect();
    irq::set_timer_hook(Some(tasklist_irq_reader));
    let stop = time::now_ns() + RUN_NS;
    Cpus.run(n, &|w| {
        let cpu = platform::cpu_id();
        let mut mine = 0u64;
        while time::now_ns() < stop {
            {
                let _w = write_lock_irq_tasklist();
                assert!(
                    !platform::irqs_enabled(),
                    "IF=1 inside write_lock_irq(&tasklist_lock)"
                );
                let inside = TASKLIST_WRITERS.fetch_add(1, Ordering::Relaxed);
                assert_eq!(inside, 0, "two writers inside tasklist_lock");
                spin_ns(2_000);
                TASKLIST_WRITERS.fetch_sub(1, Ordering::Relaxed);
            }
            mine += 1;
            let _r = read_lock_tasklist();
            assert!(platform::irqs_enabled(), "IF=0 after write_unlock_irq");
            assert_eq!(TASKLIST_WRITERS.load(Ordering::Relaxed), 0);
            TASKLIST_TASK_READING[cpu].store(true, Ordering::Relaxed);
            spin_ns(20_000);
            TASKLIST_TASK_READING[cpu].store(false, Ordering::Relaxed);
        }
        writes[w].store(mine, Ordering::Relaxed);
    });
    irq::set_timer_hook(None);
    let ticks_after: Vec<u64> = (0..n).map(|i| percpu::cpu(i).ticks()).collect();

    let mut total = [0u64; 3];
    for cpu in 0..n {
        let c = &TASKLIST_IRQ[cpu];
        let (reads, nested, waiting) = (
            c.reads.load(Ordering::Relaxed),
            c.nested.load(Ordering::Relaxed),
            c.writer_waiting.load(Ordering::Relaxed),
        );
        let ticks = ticks_after[cpu] - ticks_before[cpu];
        let w = writes[cpu].load(Ordering::Relaxed);
        println!(
            "selftest tasklist: cpu {cpu}: ticks +{ticks}, write_lock_irq {w}, \
             irq read_lock {reads} ({nested} over its own task's read hold, \
             {waiting} past a waiting writer)"
        );
        assert!(ticks > 0, "cpu {cpu} took no timer tick in 2 s");
        assert!(w > 0, "cpu {cpu} never got the write lock");
        assert!(
            reads >= 10,
            "cpu {cpu}: only {reads} interrupt read holds in 2 s"
        );
        total[0] += reads;
        total[1] += nested;
        total[2] += waiting;
    }
    println!(
        "selftest tasklist: {n} cpus, 2 s: {} irq read holds, {} over a task read hold, \
         {} past a waiting writer",
        total[0], total[1], total[2]
    );
    assert!(
        total[1] > 0,
        "no timer interrupt hit a task-context read hold: the nested case went untested"
    );
    // With the hook gone and every worker done, every CPU still ticks: none
    // was left with IRQs off or stuck in the lock.
    let again: Vec<u64> = (0..n).map(|i| percpu::cpu(i).ticks()).collect();
    time::delay_us(50_000);
    for (cpu, &t) in again.iter().enumerate() {
        assert!(
            percpu::cpu(cpu).ticks() > t,
            "cpu {cpu} stopped ticking after the tasklist run"
        );
    }
}
