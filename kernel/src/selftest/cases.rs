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
    ("threads", threads::threads),
    ("wait", wait::group_wait),
    ("pidns", pidns::pid_namespaces),
    ("badargs", procs::bad_args),
    ("fork-recheck", pidns::init_dies_mid_fork),
    ("invariants-negative", procs::invariant_check_catches_leaks),
    ("pidsoak", procs::pid_soak),
    ("lfsoak", procs::lockless_soak),
    ("tasklist", locks::tasklist_irq_readers_and_writers),
    ("lockctx", lockctx::lock_contexts),
    ("profile", profile::profile_lands_in_the_spinning_function),
    ("rcu", rcu::readers_and_updater),
    ("rcu-stall", rcu::reader_that_never_ends),
    ("task-freed-with-pids", task_freed_with_pids),
    ("irqs", irq_entry_on_every_handler),
    ("task-stack-overflow", task_stack_overflow),
    ("ap-late", ap_late),
    ("lockup-irqoff", lockup_irqoff),
    ("lockup-soft", lockup_soft),
    ("lockup-idle-watcher", nohz::lockup_seen_by_an_idle_watcher),
    ("nohz-idle", nohz::idle_cpu_takes_no_ticks),
    ("nohz-no-lockup", nohz::idle_cpu_is_no_hard_lockup),
    ("nohz-rcu", nohz::grace_period_with_idle_cpus),
    ("join-blocked", join_waits_for_death),
    ("stack-zeroed", fresh_stacks_are_zeroed),
];

use super::{lockctx, locks, nohz, pidns, procs, profile, rcu, threads, wait};

/// A `test=` list naming a case the kernel does not have.
pub(crate) struct UnknownCase<'a>(&'a str);

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
pub(crate) fn validate(list: &str) -> Result<(), UnknownCase<'_>> {
    for name in list.split(',').filter(|n| !n.is_empty()) {
        if !CASES.iter().any(|(n, _)| *n == name) {
            return Err(UnknownCase(name));
        }
    }
    Ok(())
}

/// Runs the cases in `list`, in order.
pub(crate) fn run(list: &str) {
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

/// Drops the last reference to a task that still has a pid attached: the
/// check in `free_task` guards a use after free (the pid's task list would
/// still reach the task), so it must fail the run in the kernel's own
/// build, where `debug_assert!`s are compiled out.
fn task_freed_with_pids() {
    use crate::pid::namespace::init_pid_ns;
    use crate::pid::{PidType, alloc_pid};
    use crate::strategy::StrategyPair;
    let t = crate::task::Task::create("leaky", 0, noop, 0).expect("task");
    let pid = alloc_pid(init_pid_ns(), &[], StrategyPair::stock(), true).expect("pid");
    let mut g = crate::task::write_lock_irq_tasklist();
    t.set_pid_link(&mut g, PidType::Pid, Some(pid));
    drop(g);
    println!("selftest task-freed-with-pids: dropping the last reference");
    drop(t);
    println!("selftest task-freed-with-pids: freed without a word");
}

fn overflow_entry(_: usize) {
    let n = recurse(0);
    println!("selftest task-stack-overflow: returned {n}");
}

/// A spawned task recurses without end: its stack's guard page stops it,
/// and the report names the CPU and the task.
fn task_stack_overflow() {
    let t = sched::spawn_on("overflow", 0, overflow_entry, 0).expect("spawn");
    sched::join(&t);
    println!("selftest task-stack-overflow: the task came back");
}

fn out_of_memory() {
    let huge = HEAP.stats().size * 2;
    let v: Vec<u8> = Vec::with_capacity(huge);
    println!("selftest oom: got {} bytes", v.capacity());
}

fn hang() {
    // A hang the kernel cannot see: the runner's timeout must end it.
    crate::arch::watchdog::stop();
    println!("selftest hang: lockup detectors off");
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

static HOOK_CALLS: AtomicU64 = AtomicU64::new(0);
static HOOK_IN_IRQ: AtomicU64 = AtomicU64::new(0);

fn count_hook_context() {
    HOOK_CALLS.fetch_add(1, Ordering::Relaxed);
    if platform::in_interrupt() {
        HOOK_IN_IRQ.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every interrupt handler enters through `irq_entry`: the timer's hook
/// runs in interrupt context, a wake-up IPI to each CPU (this one too) is
/// counted as one, and this CPU is outside interrupt context afterwards.
fn irq_entry_on_every_handler() {
    use crate::arch::apic;
    use crate::arch::irq::{IrqKind, irq_count};
    irq::set_timer_hook(Some(count_hook_context));
    time::delay_us(50_000);
    irq::set_timer_hook(None);
    let (calls, in_irq) = (
        HOOK_CALLS.load(Ordering::Relaxed),
        HOOK_IN_IRQ.load(Ordering::Relaxed),
    );
    assert!(calls > 0, "the timer hook never ran");
    assert_eq!(in_irq, calls, "the timer ran outside irq_enter/irq_exit");
    for cpu in 0..smp::online() {
        let before = irq_count(cpu, IrqKind::Wake);
        apic::send_ipi(smp::apic_id_of(cpu), apic::Ipi::Fixed(apic::WAKE_VECTOR))
            .expect("wake-up IPI");
        let deadline = time::now_ns() + 1_000_000_000;
        while irq_count(cpu, IrqKind::Wake) == before {
            assert!(
                time::now_ns() < deadline,
                "cpu {cpu}: the wake-up IPI was not counted by irq_entry"
            );
            platform::cpu_relax();
        }
        println!(
            "selftest irqs: cpu {cpu}: timer {}, wake {}, spurious {}",
            irq_count(cpu, IrqKind::Timer),
            irq_count(cpu, IrqKind::Wake),
            irq_count(cpu, IrqKind::Spurious)
        );
    }
    assert!(!platform::in_interrupt(), "irq depth left raised");
}

/// Boot saw `ap-late` in the test list and abandoned the first AP right
/// after its start-up IPIs, without parking it: it woke while the next APs
/// were being offered. The claim handshake must have turned it away (in
/// the trampoline or, if it claimed its own offer first, in Rust), and
/// every CPU that did come up must tick under its own dense index.
fn ap_late() {
    let Some(late) = smp::abandoned_on_purpose() else {
        panic!("ap-late needs at least two CPUs");
    };
    let deadline = time::now_ns() + 2_000_000_000;
    let refused = || {
        let (trampoline, rust) = smp::refused_aps();
        trampoline + rust
    };
    while refused() == 0 {
        assert!(
            time::now_ns() < deadline,
            "the late AP (APIC id {late}) was never turned away"
        );
        platform::cpu_relax();
    }
    // It halted with no IDT: park it before anything sends it an NMI.
    smp::park_cpu(late);
    let (trampoline, rust) = smp::refused_aps();
    assert_eq!(
        trampoline + rust,
        1,
        "{trampoline} + {rust} APs turned away, one was late"
    );
    for i in 0..smp::online() {
        assert_ne!(smp::apic_id_of(i), late, "the late AP got index {i}");
    }
    println!(
        "selftest ap-late: APIC id {late} turned away ({}), {} cpus online",
        if trampoline == 1 {
            "no offer for it in the trampoline"
        } else {
            "its own start abandoned"
        },
        smp::online()
    );
    smp_ticks_and_indices();
}

static LOCKUP_LOCK: crate::sync::SpinLock<()> = crate::sync::named_spin_lock("lockup_irqoff", ());

/// CPU 1 spins forever with interrupts off, waiting for a lock CPU 0 holds
/// for good; the lock watchdog is off, so only the hard-lockup detector can
/// see it: CPU 0 (its buddy) finds its tick count frozen and NMIs it, and
/// the report names the RIP and the lock.
fn lockup_irqoff() {
    assert!(smp::online() >= 2, "lockup-irqoff needs at least two CPUs");
    crate::sync::debug::set_wait_bound_ms(0);
    let held = LOCKUP_LOCK.lock();
    println!("selftest lockup-irqoff: cpu 1 spins for lockup_irqoff with IRQs off");
    Cpus.run(2, &|w| {
        if w == 1 {
            platform::local_irq_disable();
            let _never = LOCKUP_LOCK.lock();
        }
        // CPU 0 keeps ticking (and so checking its buddy) without ever
        // scheduling while it holds the lock.
        loop {
            platform::cpu_relax();
        }
    });
    drop(held);
}

/// CPU 1 spins with interrupts on and never passes a scheduling point:
/// the soft-lockup check on its own tick names it (run with a short
/// `softlockup_ms`).
fn lockup_soft() {
    assert!(smp::online() >= 2, "lockup-soft needs at least two CPUs");
    println!("selftest lockup-soft: cpu 1 spins with IRQs on");
    Cpus.run(2, &|w| {
        if w == 1 {
            loop {
                platform::cpu_relax();
            }
        }
    });
}

/// CPU `cpu`'s timer ticks plus the times it stopped its tick to idle
/// (`nohz`): what moves on a live CPU, busy or idle, and never on one stuck
/// with interrupts off.
pub(super) fn tick_progress(cpu: usize) -> u64 {
    let c = percpu::cpu(cpu);
    c.ticks() + c.idle_stops()
}

/// Waits until every online CPU has made [`tick_progress`] since `before`
/// (each CPU's progress then), for at most `bound_ms` of guest time;
/// returns each CPU's progress since `before` and the milliseconds waited.
/// The bound is hundreds of ticks: a vCPU the host leaves unscheduled for
/// a while (TCG, a loaded host) ticks late, a CPU with interrupts stuck off
/// never.
pub(super) fn wait_for_ticks_everywhere(before: &[u64], bound_ms: u64) -> (Vec<u64>, u64) {
    let start = time::now_ns();
    let since = || -> Vec<u64> {
        before
            .iter()
            .enumerate()
            .map(|(i, &b)| tick_progress(i) - b)
            .collect()
    };
    loop {
        let ticks = since();
        let waited_ms = (time::now_ns() - start) / 1_000_000;
        if ticks.iter().all(|&t| t > 0) || waited_ms >= bound_ms {
            return (ticks, waited_ms);
        }
        platform::cpu_relax();
    }
}

/// Every online CPU takes timer ticks while busy (an idle one may stop
/// its tick, see `nohz`), and each runs work under its own distinct index.
fn smp_ticks_and_indices() {
    let n = smp::online();
    let ticks: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let took_ms: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    // 200 ms is 200 ticks at the default rate; spinning on (up to 5 s)
    // for stragglers keeps a host that deschedules a vCPU from failing
    // the check.
    Cpus.run(n, &|w| {
        let (start, before) = (time::now_ns(), percpu::this_cpu().ticks());
        let ms = || (time::now_ns() - start) / 1_000_000;
        while ms() < 200 || (percpu::this_cpu().ticks() == before && ms() < 5_000) {
            platform::cpu_relax();
        }
        ticks[w].store(percpu::this_cpu().ticks() - before, Ordering::Relaxed);
        took_ms[w].store(ms(), Ordering::Relaxed);
    });
    for i in 0..n {
        let (t, ms) = (
            ticks[i].load(Ordering::Relaxed),
            took_ms[i].load(Ordering::Relaxed),
        );
        println!(
            "selftest smp: cpu {i} apic {} ticks +{t} in {ms} ms busy",
            smp::apic_id_of(i)
        );
        assert!(t > 0, "cpu {i} took no timer tick in {ms} ms busy");
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

/// 100 ms by the PIT measured with the TSC clock: within 80..125 ms.
/// Under TCG a vCPU descheduled by the host between the PIT's start or end
/// and the TSC reads beside them makes a TSC count too long, never too
/// short, so the shortest of three is compared here, as at calibration.
/// What is left of host preemption is tens of ms at worst on a loaded
/// host; a clock off by a wrong PIT rate or a unit slip reads far outside.
fn tsc_agrees_with_pit() {
    let tries: Vec<u64> = (0..3).map(|_| pit::measure_tsc_over_ms(100)).collect();
    let cycles = *tries.iter().min().expect("three tries");
    let us = time::cycles_to_ns(cycles) / 1000;
    println!(
        "selftest tsc: 100 ms by the PIT = {us} us by the TSC clock ({cycles} cycles; the shortest of {tries:?})"
    );
    assert!(
        (80_000..=125_000).contains(&us),
        "TSC and PIT disagree: 100 ms by the PIT took {us} us by the TSC"
    );
}

/// `stack-zeroed`: every frame a new stack slot maps reads zero. Beside
/// hygiene this is what keeps tasks fast under TCG: the frames the
/// bootloader ran code in keep QEMU's stale translations until written
/// whole (see `mm::stack::alloc_stack`). Stacks of a size no task uses,
/// so each one is a new slot; they are kept, as AP stacks are.
fn fresh_stacks_are_zeroed() {
    const SIZE: u64 = 2 * crate::mm::frame::FRAME_SIZE;
    const STACKS: usize = 64;
    for i in 0..STACKS {
        let s = crate::mm::stack::alloc_stack(SIZE).expect("a stack slot");
        // SAFETY: a new, mapped stack of SIZE bytes nobody else uses.
        let bytes = unsafe { core::slice::from_raw_parts(s.as_ptr(), SIZE as usize) };
        if let Some(at) = bytes.iter().position(|&b| b != 0) {
            panic!("stack {i}: byte {at} of a fresh stack is {:#x}", bytes[at]);
        }
    }
    println!("selftest stack-zeroed: {STACKS} new stacks of {SIZE} bytes read zero");
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

/// Set by the `join-blocked` releaser; the blocker waits for it.
static BLOCKER_RELEASED: AtomicBool = AtomicBool::new(false);

fn blocker(_: usize) {
    sched::block_until(|| BLOCKER_RELEASED.load(Ordering::SeqCst));
    sched::exit_current(5);
}

fn releaser(arg: usize) {
    // SAFETY: `arg` is the blocker's TaskRef on the joiner's stack, which
    // joins this task before it returns.
    let t = unsafe { &*(arg as *const crate::task::TaskRef) };
    let deadline = time::now_ns() + 5_000_000_000;
    while t.state() != crate::task::TaskState::Blocked {
        assert!(time::now_ns() < deadline, "the blocker never blocked");
        sched::yield_now();
    }
    // Blocked for a while before it may go on: a join that returns
    // because its task stopped running returns in this window.
    time::delay_us(50_000);
    BLOCKER_RELEASED.store(true, Ordering::SeqCst);
    sched::wake_up_process(t);
}

/// `join` returns only once its task is dead: the task blocks first (it
/// has stopped running, but it is not dead), and only a third task lets it
/// go on and exit.
fn join_waits_for_death() {
    let cpu = smp::online() - 1;
    let t = sched::spawn_on("blocker", cpu, blocker, 0).expect("spawn");
    let r = sched::spawn_on("releaser", 0, releaser, &t as *const _ as usize).expect("spawn");
    let code = sched::join(&t);
    assert!(
        BLOCKER_RELEASED.load(Ordering::SeqCst),
        "join returned while its task was blocked, not dead"
    );
    assert_eq!(t.state(), crate::task::TaskState::Dead);
    assert_eq!(code, 5);
    sched::join(&r);
    println!("selftest join-blocked: join returned after the blocked task was let go and died");
}
