//! In-kernel test cases, selected at run time with `test=a,b,...`.
//!
//! One kernel image serves every in-QEMU test: the host side boots it with
//! the cases it wants and judges the run by exit status and serial output.
//! Cases that are meant to fail the run (a panic, a fault, a hang) prove that
//! the harness notices those failures. Each case prints `selftest NAME: start`
//! and, if it returns, `selftest NAME: ok`.

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::arch::smp;
use crate::arch::{percpu, pit, time};
use crate::mm::heap::HEAP;
use crate::platform::{self, Parallel};
use crate::task::sched;
use crate::task::sched::Cpus;
use crate::task::{stack_cache, task_cache};

type Case = fn();

const CASES: &[(&str, Case)] = &[
    ("heap", heap_round_trip),
    ("panic", deliberate_panic),
    ("pagefault", page_fault),
    ("stackoverflow", stack_overflow),
    ("oom", out_of_memory),
    ("hang", hang),
    ("deadlock", deadlock),
    ("smp", smp_ticks_and_indices),
    ("appanic", ap_panic),
    ("tsc", tsc_agrees_with_pit),
    ("sched", sched_spawn_join),
    ("spinlock", locks::spinlock_exact_nested_and_fair),
    ("fork", procs::fork_smoke),
    ("forkstress", procs::fork_stress),
    ("threads", procs::threads),
    ("pidns", procs::pid_namespaces),
    ("badargs", procs::bad_args),
    ("pidsoak", procs::pid_soak),
    ("tasklist", locks::tasklist_irq_readers_and_writers),
    ("lockctx", procs::lock_contexts),
    ("rcu", rcu::readers_and_updater),
    ("rcu-stall", rcu::reader_that_never_ends),
];

use super::{locks, procs, rcu};

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

/// Takes a spinlock twice on one CPU: the second wait can never end, so the
/// lock watchdog fails the run naming the lock (with `lockdebug`, the
/// recursion check does first).
fn deadlock() {
    let lock = crate::sync::named_spin_lock("selftest_deadlock", ());
    let _held = lock.lock();
    println!("selftest deadlock: taking selftest_deadlock again");
    drop(lock.lock());
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
