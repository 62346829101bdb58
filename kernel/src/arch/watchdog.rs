//! Lockup detectors: the catch-all behind the spin-wait watchdog
//! (`sync::debug::Watchdog`, which bounds every spin loop that waits for a
//! lock, the heap, the console or RCU), for code that is stuck some other
//! way. Both run from the timer interrupt ([`on_tick`]), in the manner of
//! Linux's kernel/watchdog.c.
//!
//! The soft-lockup detector catches a CPU that passes no scheduling point
//! ([`touch`]) for too long; the hard-lockup detector a CPU that takes no
//! timer tick, stuck with interrupts off (see [`on_tick`] and [`on_nmi`]).
//! The detectors are off until [`start`] (boot, once the scheduler runs)
//! and stay quiet while a panic is in progress (its stop NMIs freeze
//! every other CPU's ticks on purpose).
//!
//! An idle CPU may stop its tick (`nohz`). It is not stuck: the
//! hard-lockup check passes over a buddy whose tick is stopped for idle,
//! and counts an idle stretch since its last look as progress, as it does
//! a tick; a CPU stuck with interrupts off anywhere else takes neither
//! ticks nor idle stops and is still reported. An idle CPU is at a
//! scheduling point: the end of its idle touches the soft-lockup stamp.
//! And a CPU still watches its buddy while it idles: its tick then wakes
//! it every [`idle_check_us`] (Linux's watchdog hrtimer keeps running on a
//! NO_HZ idle CPU).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::apic::{self, Ipi};
use super::percpu::{self, MAX_CPUS, PerCpu};
use super::{cpu, hooks, panic, smp};

/// How long a watcher waits for its stuck buddy to answer the NMI.
const NMI_ANSWER_MS: u64 = 1_000;

static ENABLED: AtomicBool = AtomicBool::new(false);
static SOFT_MS: AtomicU64 = AtomicU64::new(0);
static HARD_MS: AtomicU64 = AtomicU64::new(0);

const NOBODY: u32 = u32::MAX;
/// The CPU a hard-lockup NMI was sent to, and when, and for how long its
/// ticks had been frozen.
static HARD_TARGET: AtomicU32 = AtomicU32::new(NOBODY);
static NMI_SENT_AT: AtomicU64 = AtomicU64::new(0);
static FROZEN_MS: AtomicU64 = AtomicU64::new(0);

/// One CPU's watchdog state; written by that CPU only.
#[repr(align(64))]
struct CpuWatch {
    /// TSC at this CPU's last scheduling point.
    touched: AtomicU64,
    /// The CPU this one watches, its progress (ticks plus idle stops) when
    /// last seen moving, and the TSC then.
    buddy: AtomicU32,
    buddy_progress: AtomicU64,
    buddy_seen: AtomicU64,
}

static WATCH: [CpuWatch; MAX_CPUS] = [const {
    CpuWatch {
        touched: AtomicU64::new(0),
        buddy: AtomicU32::new(NOBODY),
        buddy_progress: AtomicU64::new(0),
        buddy_seen: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// Turns the detectors on with these bounds (0: that detector off; the
/// defaults and their reasons are in `cmdline`).
pub(crate) fn start(soft_ms: u32, hard_ms: u32) {
    let now = cpu::rdtsc();
    for w in &WATCH {
        w.touched.store(now, Ordering::Relaxed);
        w.buddy.store(NOBODY, Ordering::Relaxed);
    }
    SOFT_MS.store(soft_ms.into(), Ordering::Relaxed);
    HARD_MS.store(hard_ms.into(), Ordering::Relaxed);
    ENABLED.store(true, Ordering::Release);
}

/// Turns both detectors off (the `hang` test, which must stay a hang).
pub(crate) fn stop() {
    ENABLED.store(false, Ordering::Release);
}

/// The hard-lockup bound in ms (0: off).
pub(crate) fn hard_ms() -> u64 {
    HARD_MS.load(Ordering::Relaxed)
}

/// How often a CPU that idles with its tick stopped wakes to check its
/// buddy: 2/5 of the hard-lockup bound, as Linux samples at 2/5 of
/// `watchdog_thresh`; `None` (no wake-ups) while the detector is off.
pub(crate) fn idle_check_us() -> Option<u64> {
    let hard = hard_ms();
    (ENABLED.load(Ordering::Acquire) && hard != 0 && smp::online() >= 2)
        .then(|| hard * 1000 * 2 / 5)
}

/// This CPU passed a scheduling point (`schedule()`, an idle-loop round,
/// `cond_resched()`): it stamps the time the soft-lockup check looks at.
#[inline]
pub(crate) fn touch() {
    WATCH[percpu::cpu_index() as usize]
        .touched
        .store(cpu::rdtsc(), Ordering::Relaxed);
}

fn ms_of(cycles: u64, cps: u64) -> u64 {
    cycles / (cps / 1000).max(1)
}

/// The timer's part: this CPU's soft-lockup check and its buddy's
/// hard-lockup check. `rip` is where the tick interrupted.
///
/// - **Soft lockup.** Every CPU stamps the time whenever it passes a
///   scheduling point ([`touch`]). A CPU whose own tick finds the stamp
///   older than the bound panics, naming the task and where it was.
/// - **Hard lockup.** A CPU with interrupts off takes no ticks, so it cannot
///   check itself: each CPU watches the next one's tick count (Linux's buddy
///   detector), plus its idle stops: a buddy that idled with its tick
///   stopped since the last look, or idles so now, is not stuck. A count
///   that has not moved for the bound means the buddy is stuck with
///   interrupts off; the watcher sends it an NMI, and the NMI
///   handler there ([`on_nmi`]) panics with its RIP and the lock (or other
///   wait) its spin-wait watchdog last recorded. A buddy that does not
///   answer the NMI within [`NMI_ANSWER_MS`] is reported by the watcher
///   instead.
pub(crate) fn on_tick(me: &PerCpu, rip: u64) {
    if !ENABLED.load(Ordering::Acquire) || panic::in_progress() {
        return;
    }
    let cps = cpu::tsc_hz();
    if cps == 0 {
        return;
    }
    let now = cpu::rdtsc();
    let index = me.index() as usize;
    let w = &WATCH[index];
    let soft = SOFT_MS.load(Ordering::Relaxed);
    let idle_for = now.saturating_sub(w.touched.load(Ordering::Relaxed));
    if soft != 0 && idle_for > soft * (cps / 1000) {
        panic!(
            "soft lockup on CPU {index}: no scheduling point for {} ms in task {}, at RIP {rip:#x}",
            ms_of(idle_for, cps),
            hooks::task_name(index).unwrap_or("?")
        );
    }
    let hard = HARD_MS.load(Ordering::Relaxed);
    let online = smp::online();
    if hard == 0 || online < 2 {
        return;
    }
    let buddy = (index + 1) % online;
    let b = percpu::cpu(buddy);
    let progress = b.ticks().wrapping_add(b.idle_stops());
    if b.tick_stopped()
        || w.buddy.load(Ordering::Relaxed) != buddy as u32
        || w.buddy_progress.load(Ordering::Relaxed) != progress
    {
        w.buddy.store(buddy as u32, Ordering::Relaxed);
        w.buddy_progress.store(progress, Ordering::Relaxed);
        w.buddy_seen.store(now, Ordering::Relaxed);
        return;
    }
    let frozen = now.saturating_sub(w.buddy_seen.load(Ordering::Relaxed));
    if frozen > hard * (cps / 1000) {
        hard_lockup(buddy, ms_of(frozen, cps), now, cps);
    }
}

/// `buddy` has taken no tick for `frozen_ms`: NMI it once, and report it
/// from here if it does not answer.
#[cold]
fn hard_lockup(buddy: usize, frozen_ms: u64, now: u64, cps: u64) {
    match HARD_TARGET.compare_exchange(NOBODY, buddy as u32, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => {
            FROZEN_MS.store(frozen_ms, Ordering::SeqCst);
            NMI_SENT_AT.store(now, Ordering::SeqCst);
            if apic::send_ipi(smp::apic_id_of(buddy), Ipi::Nmi).is_err() {
                report_unanswered(buddy, frozen_ms);
            }
        }
        Err(target) if target == buddy as u32 => {
            let sent = NMI_SENT_AT.load(Ordering::SeqCst);
            if now.saturating_sub(sent) > NMI_ANSWER_MS * (cps / 1000) {
                report_unanswered(buddy, frozen_ms);
            }
        }
        Err(_) => {}
    }
}

fn report_unanswered(buddy: usize, frozen_ms: u64) -> ! {
    panic!(
        "hard lockup on CPU {buddy}: no timer tick for {frozen_ms} ms, and no answer to an NMI; \
         {}",
        waiting_text(buddy)
    );
}

fn waiting_text(cpu: usize) -> alloc::string::String {
    match hooks::waiting_for(cpu) {
        Some(("lock", name)) => alloc::format!("waiting for lock {name}"),
        Some((kind, name)) => alloc::format!("spinning in {kind} {name}"),
        None => "not waiting for a lock".into(),
    }
}

/// The NMI handler's part: if this CPU is the one a hard lockup was
/// detected on, report it from here (with the RIP the NMI interrupted).
/// Returns only if this NMI was something else.
pub(crate) fn on_nmi(rip: u64) {
    let me = percpu::cpu_index();
    if HARD_TARGET.load(Ordering::SeqCst) != me {
        return;
    }
    panic!(
        "hard lockup on CPU {me}: no timer tick for {} ms (interrupts off), at RIP {rip:#x} in \
         task {}; {}",
        FROZEN_MS.load(Ordering::SeqCst),
        hooks::task_name(me as usize).unwrap_or("?"),
        waiting_text(me as usize)
    );
}
