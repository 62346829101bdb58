//! In-QEMU cases of NO_HZ_IDLE (`task::nohz`): an idle CPU takes (almost)
//! no timer interrupts while a busy one keeps ticking; a grace period and
//! a callback complete while most CPUs idle tickless, which they stay; an
//! idle CPU is no hard lockup, and a CPU stuck with interrupts off is
//! still reported when the CPU watching it idles.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::irq::{IrqKind, irq_count};
use crate::arch::{percpu, smp, time, watchdog};
use crate::platform::{self, Parallel};
use crate::rcu::{RcuHead, call_rcu, completed_gps, synchronize_rcu};
use crate::task::nohz;
use crate::task::sched::{self, Cpus};

fn now_ms() -> u64 {
    time::now_ns() / 1_000_000
}

/// Waits (at most `bound_ms`) until every CPU in `cpus` idles with its
/// tick stopped.
fn wait_until_tickless(case: &str, cpus: Range<usize>, bound_ms: u64) {
    let deadline = now_ms() + bound_ms;
    loop {
        let ticking: Vec<usize> = cpus
            .clone()
            .filter(|&c| !percpu::cpu(c).tick_stopped())
            .collect();
        if ticking.is_empty() {
            return;
        }
        assert!(
            now_ms() < deadline,
            "{case}: cpus {ticking:?} still tick after {bound_ms} ms with nothing to run"
        );
        platform::cpu_relax();
    }
}

/// `nohz-idle`: this task keeps CPU 0 busy while CPU 1 idles, for a second
/// of guest time and on until CPU 0 has taken 100 ticks (a host that runs
/// this vCPU little stretches the window, not the bounds). CPU 1 must take
/// fewer than 50 timer interrupts a second (the periodic tick is 1000;
/// the watchdog's one-shot wakes it every 2 s at the default bounds).
pub(super) fn idle_cpu_takes_no_ticks() {
    const IDLE: usize = 1;
    assert!(smp::online() >= 2, "nohz-idle needs at least two CPUs");
    if nohz::enabled() {
        wait_until_tickless("nohz-idle", IDLE..IDLE + 1, 5_000);
    }
    let start = now_ms();
    let (busy0, idle0) = (
        irq_count(0, IrqKind::Timer),
        irq_count(IDLE, IrqKind::Timer),
    );
    let stops0 = percpu::cpu(IDLE).idle_stops();
    let window_ms = loop {
        let ms = now_ms() - start;
        let busy = irq_count(0, IrqKind::Timer) - busy0;
        if (ms >= 1_000 && busy >= 100) || ms >= 30_000 {
            break ms;
        }
        platform::cpu_relax();
    };
    let busy = irq_count(0, IrqKind::Timer) - busy0;
    let idle = irq_count(IDLE, IrqKind::Timer) - idle0;
    let stops = percpu::cpu(IDLE).idle_stops() - stops0;
    println!(
        "selftest nohz-idle: in {window_ms} ms cpu 0 (busy) took {busy} timer interrupts, \
         cpu {IDLE} (idle) {idle}, stopping its tick {stops} times (nohz {})",
        if nohz::enabled() { "on" } else { "off" }
    );
    assert!(
        busy >= 100,
        "cpu 0 took only {busy} timer interrupts in {window_ms} ms while busy"
    );
    assert!(
        idle * 1000 < 50 * window_ms,
        "cpu {IDLE} took {idle} timer interrupts in {window_ms} ms while idle (fewer than 50 a \
         second expected)"
    );
}

/// `nohz-no-lockup`: CPU 1 idles with its tick stopped for three
/// hard-lockup bounds while CPU 0, which watches it, spins and ticks: no
/// hard lockup may be reported (run with a short `hardlockup_ms`).
pub(super) fn idle_cpu_is_no_hard_lockup() {
    const IDLE: usize = 1;
    assert_eq!(smp::online(), 2, "nohz-no-lockup needs two CPUs");
    let bound_ms = watchdog::hard_ms();
    assert!(
        nohz::enabled() && bound_ms != 0,
        "nohz-no-lockup needs nohz=on and the hard-lockup detector"
    );
    wait_until_tickless("nohz-no-lockup", IDLE..IDLE + 1, 5_000);
    let (ticks0, stops0) = (
        irq_count(IDLE, IrqKind::Timer),
        percpu::cpu(IDLE).idle_stops(),
    );
    time::delay_us(3 * bound_ms * 1000);
    println!(
        "selftest nohz-no-lockup: cpu {IDLE} idled {} ms (3 hard-lockup bounds) taking {} timer \
         interrupts, stopping its tick {} times",
        3 * bound_ms,
        irq_count(IDLE, IrqKind::Timer) - ticks0,
        percpu::cpu(IDLE).idle_stops() - stops0
    );
}

static SPIN: AtomicBool = AtomicBool::new(false);
static CALLBACK_RAN: AtomicBool = AtomicBool::new(false);

/// Spins with interrupts on until told to stop: a CPU that ticks and so
/// reports its own quiescent states.
fn spinner(_: usize) {
    while SPIN.load(Ordering::Relaxed) {
        platform::cpu_relax();
    }
}

/// Frees the head `call_rcu` got and says so.
///
/// # Safety
/// `head` came from `Box::into_raw` and nothing else holds it.
unsafe fn free_head(head: *mut RcuHead) {
    // SAFETY: per the contract.
    drop(unsafe { Box::from_raw(head) });
    CALLBACK_RAN.store(true, Ordering::Release);
}

/// `nohz-rcu`: CPU 1 spins, CPUs 2.. idle with their ticks stopped, and
/// CPU 0 runs `synchronize_rcu` and then waits (at most 10 s) for a
/// `call_rcu` callback. Both complete, and the idle CPUs take no timer
/// interrupt meanwhile but the watchdog's one-shots (none with
/// `hardlockup_ms=0`): no grace period waited for their ticks.
/// (`synchronize_rcu`'s own wait is bounded: a stall report at 10 s.)
pub(super) fn grace_period_with_idle_cpus() {
    let n = smp::online();
    assert!(n >= 3, "nohz-rcu needs at least three CPUs");
    assert!(nohz::enabled(), "nohz-rcu needs nohz=on");
    SPIN.store(true, Ordering::Relaxed);
    let spin = sched::spawn_on("spinner", 1, spinner, 0).expect("spawn the spinner");
    wait_until_tickless("nohz-rcu", 2..n, 10_000);
    let before: Vec<u64> = (2..n).map(|c| irq_count(c, IrqKind::Timer)).collect();
    let stops: Vec<u64> = (2..n).map(|c| percpu::cpu(c).idle_stops()).collect();
    let (start, gps) = (time::now_ns(), completed_gps());
    synchronize_rcu();
    let gp_us = (time::now_ns() - start) / 1000;
    let untouched = (2..n)
        .filter(|&c| irq_count(c, IrqKind::Timer) == before[c - 2])
        .count();
    let head = Box::into_raw(Box::new(RcuHead::new()));
    // SAFETY: a fresh, unqueued head, which the callback frees.
    unsafe { call_rcu(head, free_head) };
    let deadline = now_ms() + 10_000;
    while !CALLBACK_RAN.load(Ordering::Acquire) {
        assert!(
            now_ms() < deadline,
            "nohz-rcu: the callback did not run in 10 s"
        );
        platform::cpu_relax();
    }
    let elapsed_us = (time::now_ns() - start) / 1000;
    let ticks: Vec<u64> = (2..n)
        .map(|c| irq_count(c, IrqKind::Timer) - before[c - 2])
        .collect();
    SPIN.store(false, Ordering::Relaxed);
    sched::join(&spin);
    let allowed = watchdog::idle_check_us().map_or(0, |every| elapsed_us / every + 1);
    println!(
        "selftest nohz-rcu: synchronize_rcu took {gp_us} us, the callback ran {elapsed_us} us \
         after the start ({} grace periods) with cpus 2-{} idle; their timer interrupts \
         meanwhile {ticks:?} (the watchdog's allow {allowed} each)",
        completed_gps() - gps,
        n - 1
    );
    // Without idle CPUs counted quiescent, each would need a tick (a
    // watchdog one-shot) before the grace period could end.
    assert!(
        untouched > 0,
        "every idle cpu took a tick before synchronize_rcu returned ({gp_us} us)"
    );
    for (i, &t) in ticks.iter().enumerate() {
        assert!(
            t <= allowed,
            "cpu {}: {t} timer interrupts while idle during the grace period (it stopped its \
             tick {} times meanwhile)",
            i + 2,
            percpu::cpu(i + 2).idle_stops() - stops[i]
        );
    }
}

static LOCKUP_LOCK: crate::sync::SpinLock<()> =
    crate::sync::named_spin_lock("lockup_idle_buddy", ());

/// `lockup-idle-watcher`: CPU 2 spins forever with interrupts off for a
/// lock CPU 0 holds for good (the lock watchdog is off), while CPU 1, which
/// watches CPU 2 for hard lockups, idles with its tick stopped. Its
/// watchdog one-shots must still find CPU 2's ticks frozen and NMI it.
/// Three CPUs exactly: CPU n watches CPU (n + 1) mod 3.
pub(super) fn lockup_seen_by_an_idle_watcher() {
    assert_eq!(smp::online(), 3, "lockup-idle-watcher needs three CPUs");
    crate::sync::debug::set_wait_bound_ms(0);
    let held = LOCKUP_LOCK.lock();
    println!(
        "selftest lockup-idle-watcher: cpu 2 spins for lockup_idle_buddy with IRQs off, cpu 1 \
         idles"
    );
    Cpus.run(3, &|w| match w {
        1 => {}
        2 => {
            platform::local_irq_disable();
            let _never = LOCKUP_LOCK.lock();
        }
        _ => loop {
            platform::cpu_relax();
        },
    });
    drop(held);
}
