//! RCU for a non-preemptive kernel (the shape of Linux's Tree RCU without
//! preemptible readers): `rcu_read_lock`/`rcu_read_unlock`, `call_rcu`,
//! `synchronize_rcu`, `rcu_barrier`.
//!
//! The grace-period machine and the callback lists are written once over
//! an environment ([`tree`], [`env`]); this module is the kernel's
//! instance of them, one static [`Rcu`] on `core` atomics and the kernel's
//! spinlocks, and its entry points, each run on the calling CPU. Callbacks
//! run from the tick, the idle loop, `cond_resched()` or `rcu_barrier`. A
//! GP that waits too long is reported as an RCU stall, and the waits of
//! `synchronize_rcu` and `rcu_barrier` are bounded by the spin-wait
//! watchdog at twice that.
//!
//! A CPU that idles with its tick stopped (`task::nohz`) is in an extended
//! quiescent state from [`rcu_idle_enter`] to [`rcu_idle_exit`]: no GP
//! waits for it (see [`tree`]). It keeps its tick while it has callbacks
//! queued ([`rcu_needs_cpu`]).
//!
//! The host build has no ticks: there, waiters observe other CPUs' nesting
//! counts directly (a CPU seen outside a read-side section is quiescent),
//! which needs sequentially consistent reader updates.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::platform::{self, MAX_CPUS, cpu_id};
use crate::sync::debug::{Holder, Watchdog};

mod cblist;
mod env;
mod tree;

#[cfg(all(test, loom))]
mod loom_env;
#[cfg(all(test, loom))]
mod loom_models;
#[cfg(test)]
mod tests;

pub(crate) use cblist::RcuHead;
use env::KernelEnv;
use tree::{Rcu, RcuWait, Waiting};

/// The kernel's RCU state.
static RCU: Rcu<KernelEnv, MAX_CPUS> = KernelEnv::new_rcu();

/// How long a GP may take before it is reported as a stall (0: never).
static STALL_MS: AtomicU64 = AtomicU64::new(DEFAULT_STALL_MS);

/// The GP last reported as a stall (each is reported once).
static STALL_REPORTED: AtomicU64 = AtomicU64::new(0);

/// Default RCU stall bound in milliseconds (Linux's is 21 s; vCPUs here may
/// be descheduled by the host for long stretches, so keep a margin).
pub(crate) const DEFAULT_STALL_MS: u64 = 10_000;

/// Most callbacks one timer tick runs (Linux's `blimit`): the tick runs
/// with interrupts off, and a long batch would look like a CPU stuck with
/// interrupts off to the hard-lockup detector. The rest wait for the next
/// tick, a `cond_resched()` or the idle loop.
const TICK_BATCH: u64 = 1000;

/// The stall bound in ms (0: no check).
pub(crate) fn stall_ms() -> u64 {
    STALL_MS.load(Ordering::Relaxed)
}

/// Sets the stall bound (0 disables the check); returns the previous one.
pub(crate) fn set_stall_ms(ms: u64) -> u64 {
    STALL_MS.swap(ms, Ordering::Relaxed)
}

/// A held `rcu_read_lock()`; dropping it is `rcu_read_unlock()`. Readers
/// must not block or switch tasks while holding it.
#[must_use = "the read-side section ends when the guard drops"]
pub(crate) struct RcuReadGuard {
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Port of `rcu_read_lock()`: objects reached from RCU-protected pointers
/// stay valid until the guard drops.
#[inline]
pub(crate) fn rcu_read_lock() -> RcuReadGuard {
    RCU.read_lock(cpu_id());
    RcuReadGuard {
        _not_send: core::marker::PhantomData,
    }
}

impl Drop for RcuReadGuard {
    /// Port of `rcu_read_unlock()`.
    #[inline]
    fn drop(&mut self) {
        RCU.read_unlock(cpu_id());
    }
}

/// Whether this CPU is inside a read-side section.
#[cfg(test)]
pub(crate) fn rcu_read_lock_held() -> bool {
    RCU.nesting(cpu_id()) != 0
}

/// Port of `call_rcu()`: runs `func(head)` after a grace period, on some
/// CPU, in interrupt or task context, with no lock held. `func` must not
/// take a lock that is ever held with interrupts on.
///
/// # Safety
/// `head` is valid and unqueued, and stays valid (with whatever `func`
/// needs) until `func` runs; `func` may free it.
pub(crate) unsafe fn call_rcu(head: *mut RcuHead, func: unsafe fn(*mut RcuHead)) {
    // SAFETY: per the contract.
    unsafe { RCU.call_rcu(cpu_id(), head, func) };
}

/// Port of `rcu_all_qs()` (what `cond_resched()` reports): a long kernel
/// loop that neither switches tasks nor idles calls this between read-side
/// sections, since a tick may never land in the instants between them.
pub(crate) fn rcu_all_qs() {
    let cpu = cpu_id();
    RCU.quiescent_state(cpu);
    // Task context with no lock held: run what is ready here, as Linux's
    // RCU softirq would on this CPU, rather than only in batches per tick.
    RCU.invoke_ready(cpu, u64::MAX);
}

/// Port of `rcu_note_context_switch()`: called by `schedule()`.
#[inline]
pub(crate) fn rcu_note_context_switch() {
    RCU.quiescent_state(cpu_id());
}

/// The idle loop's part: a quiescent state, then this CPU's ready
/// callbacks.
pub(crate) fn rcu_idle() {
    let cpu = cpu_id();
    RCU.quiescent_state(cpu);
    RCU.invoke_ready(cpu, u64::MAX);
}

/// Port of `rcu_needs_cpu()`: whether this CPU has callbacks queued, so
/// its tick must go on while it idles.
pub(crate) fn rcu_needs_cpu() -> bool {
    RCU.needs_cpu(cpu_id())
}

/// Port of `ct_idle_enter()`'s RCU part: this CPU, interrupts off and
/// outside any read-side section, is about to halt with its tick stopped;
/// no GP waits for it until [`rcu_idle_exit`].
pub(crate) fn rcu_idle_enter() {
    RCU.eqs_enter(cpu_id());
}

/// Port of `ct_idle_exit()`'s RCU part: this CPU leaves idle, before
/// anything on it may read (interrupts off).
pub(crate) fn rcu_idle_exit() {
    RCU.eqs_exit(cpu_id());
}

/// Port of `rcu_sched_clock_irq()`, from the timer interrupt: a quiescent
/// state if the interrupted code was outside any read-side section, this
/// CPU's ready callbacks (a batch at most), and the stall check.
pub(crate) fn rcu_sched_clock_irq() {
    RCU.tick(cpu_id(), TICK_BATCH);
    check_stall();
}

/// Panics, naming the CPUs a GP still waits for, once it is older than the
/// stall bound.
fn check_stall() {
    let bound_ms = STALL_MS.load(Ordering::Relaxed);
    let gp = &RCU.gp;
    let started = gp.started.load(Ordering::SeqCst);
    if bound_ms == 0 || started == gp.completed.load(Ordering::SeqCst) {
        return;
    }
    let cps = platform::cycles_per_sec();
    let age = platform::cycles().saturating_sub(gp.started_at.load(Ordering::Relaxed));
    if cps == 0 || age < bound_ms.saturating_mul(cps / 1000) {
        return;
    }
    if STALL_REPORTED.swap(started, Ordering::Relaxed) == started {
        return;
    }
    let pending = gp.pending.load(Ordering::SeqCst);
    let mut who = alloc::string::String::new();
    for c in (0..MAX_CPUS).filter(|c| pending & (1 << c) != 0) {
        use core::fmt::Write;
        let _ = write!(who, " cpu {c} (read-side nesting {})", RCU.nesting(c));
    }
    panic!(
        "rcu: stall: grace period {started} has waited {} ms for{who}",
        age / (cps / 1000).max(1)
    );
}

/// The spin-wait watchdog over a wait on RCU: twice the stall bound, so
/// the stall report (which names the CPUs holding the grace period up)
/// comes first; restarted when the wait turns from the GP to callbacks.
struct KernelWait {
    dog: Watchdog,
    waiting: Waiting,
}

impl KernelWait {
    fn start() -> Self {
        KernelWait {
            dog: Self::bounded(),
            waiting: Waiting::GracePeriod,
        }
    }

    fn bounded() -> Watchdog {
        Watchdog::start_bounded(
            "wait for",
            STALL_MS.load(Ordering::Relaxed).saturating_mul(2),
        )
    }
}

impl RcuWait for KernelWait {
    fn round(&mut self, waiting: Waiting) {
        if waiting != self.waiting {
            self.waiting = waiting;
            self.dog = Self::bounded();
        }
        match waiting {
            Waiting::GracePeriod => self.dog.tick("rcu_grace_period", || {
                Holder::Text("CPUs that have not passed a quiescent state")
            }),
            Waiting::Callbacks => self
                .dog
                .tick("rcu_barrier", || Holder::Text("callbacks not yet run")),
        }
    }
}

/// Port of `synchronize_rcu()`: returns once every read-side section that
/// began before the call has ended. Must be called with interrupts on
/// (other CPUs' ticks end the GP) and outside any read-side section.
pub(crate) fn synchronize_rcu() {
    RCU.synchronize(cpu_id(), &mut KernelWait::start());
}

/// Port of `rcu_barrier()`: returns once every callback queued before the
/// call, on any CPU, has run.
pub(crate) fn rcu_barrier() {
    RCU.barrier(cpu_id(), &mut KernelWait::start());
}

/// Callbacks queued and not yet run, over all CPUs.
pub(crate) fn pending_callbacks() -> u64 {
    RCU.pending_callbacks()
}

/// Grace periods completed since boot.
pub(crate) fn completed_gps() -> u64 {
    RCU.completed()
}
